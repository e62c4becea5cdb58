"""The runbook rendered from the pilot spec names every owner and every threshold the gates use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from migration_waves.evidence.runbook import render_runbook
from migration_waves.spec.loader import load_wave

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runbook() -> str:
    return render_runbook(load_wave(REPO / "include/waves/pilot.yaml"))


def section(text: str, title: str) -> str:
    match = re.search(rf"^## [^\n]*{re.escape(title)}[^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(0)


def test_every_owner_is_named(runbook: str) -> None:
    spec = load_wave(REPO / "include/waves/pilot.yaml")
    for role, owner in spec.owners.model_dump().items():
        assert f"| {role} | {owner} |" in runbook
    assert "## 1. Launch procedure (owner: team-ml-platform)" in runbook
    assert "## 2. Validation checklist (owner: team-ml-quality)" in runbook
    assert "## 3. Rollback criteria (owner: team-ml-platform)" in runbook


def test_cutover_steps_in_order_with_owners(runbook: str) -> None:
    cutover = section(runbook, "4. Cutover")
    rows = re.findall(r"^\| (\d) \| ([^|]+) \| ([^|]+) \|", cutover, re.M)
    assert [(n, step.strip(), owner.strip()) for n, step, owner in rows] == [
        ("1", "freeze writes", "team-sre"),
        ("2", "final sync", "team-sre"),
        ("3", "final verify", "team-ml-quality"),
        ("4", "switch traffic", "team-sre"),
        ("5", "post-cutover checks", "team-ml-quality"),
    ]
    assert "features" in cutover  # the mutable dataset whose writers are frozen


def test_thresholds_and_targets(runbook: str) -> None:
    rollback = section(runbook, "3. Rollback criteria")
    assert "candidate p95 exceeds 1.5x the baseline p95" in rollback  # pilot's p95_ratio_max
    assert "error rate exceeds 1%" in rollback
    assert "p95 above 250 ms or error rate above 1%" in rollback
    assert "any task failure after traffic moved" in rollback
    assert "time to recover exceeds RTO 10 min" in rollback
    assert "RTO: 10 minutes" in runbook and "RPO: 15 minutes" in runbook
    assert "Egress budget: $50" in runbook
    checklist = section(runbook, "2. Validation checklist")
    assert "canary steps 5%, 25%, 50%, 100%; 300 samples per step" in checklist
    assert "SIGKILL after 2 checkpoints" in checklist
    # golden image gate read from include/golden_images: baseline 5 GFLOP/s, tolerance 0.8
    assert "at least 19.5 GFLOP/s (baseline 130 GFLOP/s, tolerance 85%)" in checklist


def test_every_dataset_with_class_and_method(runbook: str) -> None:
    spec = load_wave(REPO / "include/waves/pilot.yaml")
    checklist = section(runbook, "2. Validation checklist")
    for ds in spec.datasets:
        assert re.search(rf"^\| {ds.name} \| {ds.class_.value} \| \w", checklist, re.M), ds.name
    assert "final sync after writes are frozen" in checklist  # mutable method
    assert "at most 10 per sync" in checklist  # features max_delete


def test_missing_golden_image_still_renders(tmp_path: Path) -> None:
    spec = load_wave(REPO / "include/waves/pilot.yaml").model_copy(deep=True)
    spec.golden_images = str(tmp_path)  # empty folder
    text = render_runbook(spec)
    assert "golden image `inference-cpu-dev`: spec not found" in text
