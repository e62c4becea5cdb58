"""Governance in lint and preflight: secrets, required tags, zone CIDRs and overlaps, declarations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from migration_waves.gates.preflight import check_security
from migration_waves.spec.loader import lint_paths, load_wave

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def pilot_dict() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "include" / "waves" / "pilot.yaml").read_text())
    data["golden_images"] = str(REPO / "include" / "golden_images")
    data["budget"]["pricing"] = str(REPO / "include" / "pricing" / "default.yaml")
    data["workloads"][0]["payloads"] = str(REPO / "include" / "demo" / "payloads.jsonl")
    return data


def write(tmp_path: Path, data: dict[str, Any], extra: str = "") -> Path:
    path = tmp_path / "pilot.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False) + extra)
    return path


def test_shipped_pilot_declares_governance_and_passes() -> None:
    spec = load_wave(REPO / "include" / "waves" / "pilot.yaml")
    for site in spec.sites.values():
        assert site.encryption and site.encryption.at_rest == "required" and site.audit_logging
        assert set(site.zones) == {"training", "inference", "ingestion", "admin"}
    result = check_security(spec)
    assert result["passed"], result["reasons"]
    assert any(c["name"] == "zones" and c["passed"] for c in result["checks"])


def test_lint_rejects_secret_looking_strings_by_line(tmp_path: Path) -> None:
    key = "AKIA" + "ABCDEFGHIJKLMNOP"  # built here so the test file itself holds no key-shaped string
    path = write(tmp_path, pilot_dict(), f"# creds for the bucket: {key}\n")
    _, problems = lint_paths([path])
    [problem] = problems
    lines = path.read_text().splitlines()
    assert problem.field == f"line {len(lines)}" and "AWS access key id" in problem.message
    assert key not in str(problem)  # the report never repeats the secret


def test_lint_requires_tags_on_every_dataset_and_workload(tmp_path: Path) -> None:
    data = pilot_dict()
    data["tags"] = {"wave": "pilot"}
    data["datasets"][1]["tags"] = {"cost_center": "x", "owner": "y"}
    _, problems = lint_paths([write(tmp_path, data)])
    fields = {p.field for p in problems}
    assert "datasets[0].tags" in fields and "datasets[1].tags" not in fields
    assert "workloads[1].tags" in fields
    assert all("missing required tags ['cost_center', 'owner']" in p.message for p in problems)


def test_zone_cidr_must_be_a_network(tmp_path: Path) -> None:
    data = pilot_dict()
    data["sites"]["cloud"]["zones"]["training"] = "10.40.0.1/16"
    _, problems = lint_paths([write(tmp_path, data)])
    [problem] = problems
    assert problem.field == "sites.cloud.zones.training" and "not a CIDR network" in problem.message


def test_preflight_rejects_overlapping_zones_within_and_across_sites(tmp_path: Path) -> None:
    data = pilot_dict()
    data["sites"]["onprem"]["zones"]["admin"] = "10.10.128.0/24"  # inside onprem training
    data["sites"]["cloud"]["zones"]["inference"] = "10.11.0.0/20"  # inside onprem inference
    result = check_security(load_wave(write(tmp_path, data)))
    assert not result["passed"]
    assert "zone onprem.training (10.10.0.0/16) overlaps onprem.admin (10.10.128.0/24)" in " ".join(
        result["reasons"]
    )
    assert any("onprem.inference (10.11.0.0/16) overlaps cloud.inference" in r for r in result["reasons"])


def test_undeclared_is_a_warning_false_or_optional_fails(tmp_path: Path) -> None:
    data = pilot_dict()
    for site in data["sites"].values():
        for key in ("encryption", "audit_logging", "zones"):
            site.pop(key)
    legacy = check_security(load_wave(write(tmp_path, data)))
    assert legacy["passed"]  # specs written before governance still run, with warnings
    warns = {c["name"] for c in legacy["checks"] if c["severity"] == "warn" and not c["passed"]}
    assert {"encryption:site:cloud", "audit:site:onprem", "zones:site:cloud"} <= warns
    data["sites"]["cloud"]["audit_logging"] = False
    data["sites"]["cloud"]["encryption"] = {"at_rest": "optional"}
    result = check_security(load_wave(write(tmp_path, data)))
    assert not result["passed"]
    assert any("audit_logging is false" in r for r in result["reasons"])
    assert any("encryption is optional" in r for r in result["reasons"])
