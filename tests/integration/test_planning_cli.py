"""`migration-waves plan` end to end: real inventory in, drafts that pass `migration-waves lint` out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "migration_waves.cli"]


def test_plan_writes_drafts_that_pass_lint(tmp_path: Path, project_root: Path) -> None:
    out = tmp_path / "plan"
    inventory = project_root / "include" / "inventory" / "workloads.yaml"
    run = subprocess.run(
        [*CLI, "plan", "--inventory", str(inventory), "--out", str(out), "--max-per-wave", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    plan = json.loads((out / "plan.json").read_text())
    drafts = sorted((out / "waves").glob("*.yaml"))
    assert [d.stem for d in drafts] == sorted(w["name"] for w in plan["waves"])
    assert all(len(w["workloads"]) <= 3 for w in plan["waves"])
    lint = subprocess.run([*CLI, "lint", str(out / "waves")], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stderr + lint.stdout

    pilot = yaml.safe_load((out / "waves" / "pilot.yaml").read_text())
    assert {w["name"] for w in pilot["workloads"]} == {"digits-classifier", "digits-trainer"}
    second = yaml.safe_load((out / "waves" / "wave-2.yaml").read_text())
    assert second["after"] == ["pilot"] and second["order"] == 2
    # the draft budget is the egress forecast of the wave's bytes times the margin (1.25), in dollars
    gb = sum(w["data_bytes"] for w in plan["waves"] if w["name"] == "wave-2") / 10**9
    assert plan["budgets_usd"]["wave-2"] == max(1, -(-round(gb * 0.02 * 1.25, 6) // 1))
    assert "dev-notebooks" in plan["x_todo"] or "ci-gpu-runners" in plan["x_todo"]

    png = (out / "heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "<svg" in (out / "heatmap.html").read_text()


def test_plan_bad_inventory_names_row_and_field(tmp_path: Path, project_root: Path) -> None:
    sheet = tmp_path / "workloads.csv"
    head = project_root / "include" / "inventory" / "workloads.yaml"
    (tmp_path / "workloads.yaml").write_text(head.read_text().split("import:")[0])
    sheet.write_text(
        "name,kind,owner,gpu_need,data_size,latency_sensitivity,compliance_scope,change_tolerance,data_gravity\n"
        "etl-a,ingestion,team-x,0,3 TB,low,internal,high,low\n"
        "etl-b,ingestion,team-x,0,3 TBs,low,internal,high,\n"
    )
    run = subprocess.run(
        [*CLI, "plan", "--inventory", str(sheet), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "row 3 (etl-b).data_size: unknown unit 'TBs'" in run.stderr
    assert "row 3 (etl-b).data_gravity: required field is missing" in run.stderr
    assert not (tmp_path / "out").exists()  # nothing written from a bad inventory
