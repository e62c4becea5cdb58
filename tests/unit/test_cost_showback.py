"""Showback core on a filled evidence store (two pilot runs, verified manifests, acceptance)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from showback_support import RUN_1, fill_pilot_evidence, write_specs

pytestmark = pytest.mark.unit

DAY = dt.date(2026, 12, 6)


def _showback(project_root: Path, tmp_path: Path, budget: float) -> object:
    from migration_waves.cost.showback import build_showback
    from migration_waves.spec.loader import load_wave

    specs = write_specs(project_root, tmp_path, pilot_budget=budget)
    fill_pilot_evidence(specs)
    waves = [load_wave(specs / "pilot.yaml"), load_wave(specs / "early-adopters.yaml")]
    return build_showback(waves, DAY)


def test_costs_per_wave_dataset_and_workload(project_root: Path, tmp_path: Path) -> None:
    sb = _showback(project_root, tmp_path, budget=50)
    pilot, early = sb.waves
    assert (pilot.wave, early.wave) == ("pilot", "early-adopters")
    # Egress: run 1 priced by its cost task (500 GB), run 2 from its copy records (50 GB), $0.02/GB.
    assert [r.egress_usd for r in pilot.runs] == [Decimal("10"), Decimal("1")]
    assert pilot.egress_bytes == 550 * 10**9 and pilot.egress_usd == Decimal("11")
    # Compute in the runs: 1 h of canary + 0.5 h of drill per run, on cpu-dev at $0.192/h.
    assert pilot.migration_compute_usd == Decimal("0.576") and pilot.to_date_usd == Decimal("11.576")
    ds = {d.dataset: d for d in sb.datasets if d.wave == "pilot"}
    assert (
        ds["digits-corpus"].storage_class == "cloud-standard"
        and ds["digits-corpus"].stored_bytes == 400 * 10**9
    )
    assert ds["digits-corpus"].storage_usd_month == Decimal("9.2")  # 400 GB x $0.023
    assert ds["checkpoints"].storage_class == "cloud-infrequent"
    assert ds["checkpoints"].storage_usd_month == Decimal("1")  # 80 GB x $0.0125
    assert ds["features"].egress_bytes == 150 * 10**9 and ds["features"].egress_usd == Decimal("3")
    assert ds["serving-logs"].stored_bytes is None and "not verified" in (ds["serving-logs"].note or "")
    assert abs(pilot.storage_usd_day - Decimal("13.65") / 31) < Decimal("1e-20")  # December
    wl = {w.workload: w for w in sb.workloads}
    clf, trainer = wl["digits-classifier"], wl["digits-trainer"]
    # $0.192/h over 500 req/s x 3600 s, per 1,000 requests
    assert clf.usd_per_1k_inferences == Decimal("0.000107") and clf.throughput_rps == 500.0
    assert "candidate at 100%" in (clf.throughput_source or "")
    assert trainer.usd_per_training_run == Decimal("0.096")  # 1800 s x $0.192/h
    assert clf.at_target and clf.compute_usd_day == Decimal("4.608")  # accepted: 24 h a day
    assert pilot.daily_usd == pilot.storage_usd_day + Decimal("9.216")
    assert not sb.alerts and not early.runs and early.egress_usd == 0


def test_wave_over_budget_raises_an_alert_and_files_are_written(project_root: Path, tmp_path: Path) -> None:
    from migration_waves.cost.showback import write_showback

    sb = _showback(project_root, tmp_path, budget=5)
    (alert,) = sb.alerts
    assert alert.wave == "pilot" and alert.spend_usd == Decimal("11") and alert.budget_usd == Decimal("5")
    assert "exceeds the budget $5.00 by $6.00" in alert.message
    write_showback(sb, str(tmp_path / "out"))
    folder = tmp_path / "out" / "showback" / "2026-12-06"
    data = json.loads((folder / "showback.json").read_text())
    assert data["alerts"][0]["wave"] == "pilot" and Decimal(data["waves"][0]["egress_usd"]) == 11
    page = (folder / "showback.html").read_text()
    assert "exceeds the budget" in page and "waves-to-date.png" in page and "$0.0001" in page
    for png in ("waves-to-date.png", "waves-daily.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_instance_is_named_not_guessed(project_root: Path, tmp_path: Path) -> None:
    import yaml

    from migration_waves.cost.showback import build_showback
    from migration_waves.spec.loader import load_wave

    specs = write_specs(project_root, tmp_path)
    raw = yaml.safe_load((specs / "pilot.yaml").read_text())
    raw["workloads"][0]["instance"] = "m9.huge"
    del raw["workloads"][1]["instance"]
    (specs / "pilot.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    fill_pilot_evidence(specs)
    sb = build_showback([load_wave(specs / "pilot.yaml")], DAY)
    assert any("no instance price 'm9.huge'" in e and "digits-classifier" in e for e in sb.errors)
    assert any("workload digits-trainer: no instance; add instance:" in e for e in sb.errors)
    assert sb.waves[0].migration_compute_usd == 0 and sb.waves[0].egress_usd == Decimal("11")
    assert RUN_1.startswith("manual__")
