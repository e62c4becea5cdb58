"""Wave specs: the shipped ones load; bad input gets file, field, value and fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from migration_waves.spec.loader import SpecError, lint_paths, load_wave, load_waves_dir
from migration_waves.spec.models import DatasetClass

pytestmark = pytest.mark.unit


def test_shipped_waves_load_in_order(project_root: Path) -> None:
    specs = load_waves_dir(project_root / "include" / "waves")
    assert [s.wave for s in specs] == ["pilot", "early-adopters"]
    pilot = specs[0]
    assert {d.class_ for d in pilot.datasets} == set(DatasetClass)
    assert pilot.location("onprem:corpus/").url == str(project_root / ".demo" / "onprem" / "corpus")
    assert specs[1].after == ["pilot"]


def _write(tmp_path: Path, data: dict, name: str = "w.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _pilot(project_root: Path) -> dict:
    return yaml.safe_load((project_root / "include" / "waves" / "pilot.yaml").read_text())


def test_every_problem_is_reported_with_field_value_and_fix(tmp_path: Path, project_root: Path) -> None:
    data = _pilot(project_root)
    data["wave"] = "Pilot_1"
    data["window"] = "saturdays"
    data["sites"]["onprem"]["colour"] = "blue"
    data["datasets"][0]["class"] = "frozen"
    del data["owners"]["cutover"]
    with pytest.raises(SpecError) as err:
        load_wave(_write(tmp_path, data))
    fields = {p.field: p for p in err.value.problems}
    assert set(fields) >= {"wave", "window", "sites.onprem.colour", "datasets[0].class", "owners.cutover"}
    assert fields["wave"].value == "Pilot_1"
    assert "unknown key" in fields["sites.onprem.colour"].message
    assert "'immutable'" in fields["datasets[0].class"].message
    assert "0 2 * * 6" in fields["window"].message
    assert str(tmp_path / "w.yaml") in str(err.value)


def test_unknown_site_and_duplicate_names(tmp_path: Path, project_root: Path) -> None:
    data = _pilot(project_root)
    data["datasets"][1]["target"] = "clod:x/"
    data["datasets"][2]["name"] = data["datasets"][0]["name"]
    data["datasets"][3]["class"] = "frozen"  # a field error beside them must not hide them
    with pytest.raises(SpecError) as err:
        load_wave(_write(tmp_path, data))
    fields = {p.field: p for p in err.value.problems}
    assert "site 'clod'" in fields["datasets[1].target"].message
    assert "known: cloud, onprem" in fields["datasets[1].target"].message
    assert fields["datasets[1].target"].value == "clod:x/"
    assert "also used by datasets[0]" in fields["datasets[2].name"].message
    assert "datasets[3].class" in fields
    assert "<root>" not in str(err.value)


def test_lint_never_prints_a_secret_or_a_whole_spec(tmp_path: Path, project_root: Path) -> None:
    data = _pilot(project_root)
    data["sites"]["cloud"]["aws_secret_access_key"] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(SpecError) as err:
        load_wave(_write(tmp_path, data))
    assert "wJalrXUtnFEMI" not in str(err.value) and "<redacted>" in str(err.value)


def test_cron_window_is_validated(tmp_path: Path, project_root: Path) -> None:
    data = _pilot(project_root)
    data["window"] = "0 25 * * 8"
    with pytest.raises(SpecError, match="not a valid 5-field cron expression"):
        load_wave(_write(tmp_path, data))


def test_lint_an_empty_folder_fails(tmp_path: Path) -> None:
    _, problems = lint_paths([tmp_path])
    assert problems and "no wave specs" in problems[0].message


def test_canary_steps_must_reach_100(tmp_path: Path, project_root: Path) -> None:
    data = _pilot(project_root)
    data["workloads"][0]["canary"]["steps"] = [5, 25, 50]
    with pytest.raises(SpecError, match="must end at 100"):
        load_wave(_write(tmp_path, data))


def test_lint_cross_wave_problems(tmp_path: Path, project_root: Path) -> None:
    pilot = _pilot(project_root)
    pilot["golden_images"] = str(project_root / "include" / "golden_images")
    pilot["budget"]["pricing"] = str(project_root / "include" / "pricing" / "default.yaml")
    pilot["workloads"][0]["payloads"] = str(project_root / "include" / "demo" / "payloads.jsonl")
    pilot["workloads"][1]["golden_image"] = "no-such-image"
    _write(tmp_path, pilot, "pilot.yaml")
    second = dict(pilot, wave="second", order=0, after=["pilot", "ghost"])
    second["workloads"] = []
    _write(tmp_path, second, "second.yaml")
    _, problems = lint_paths([tmp_path])
    messages = [str(p) for p in problems]
    assert any("no golden image no-such-image.yaml" in m for m in messages)
    assert any("no wave named 'ghost'" in m for m in messages)
    assert any("has order 1, not below this wave's 0" in m for m in messages)


def test_lint_cli_exit_codes(tmp_path: Path, project_root: Path) -> None:
    cli = [sys.executable, "-m", "migration_waves.cli", "lint"]
    good = subprocess.run([*cli, str(project_root / "include" / "waves")], capture_output=True, text=True)
    payloads = project_root / "include" / "demo" / "payloads.jsonl"
    if payloads.exists():
        assert good.returncode == 0, good.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("wave: x\nnot: [valid")
    out = subprocess.run([*cli, "--json", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    problems = json.loads(out.stdout)["problems"]
    assert problems and "not valid YAML" in problems[0]["message"]
