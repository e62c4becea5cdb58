"""The scheduled dataset_sync DAG under dag.test() on real files: skip, sync + lag, RPO breach, freeze.

The shipped pilot spec, rewritten only where a test must differ (stores in a temporary folder).
Its mutable dataset `features` is seeded the way the wave run leaves it (engine copy + verified
manifest); each scenario then changes the source and runs the DAG's tasks for real.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, project_root: Path, airflow_db: Path) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sync")
    specs = root / "specs"
    specs.mkdir()
    include = project_root / "include"
    spec = yaml.safe_load((include / "waves" / "pilot.yaml").read_text())
    spec["state"] = str(root / "state")
    spec["golden_images"] = str(include / "golden_images")
    spec["budget"]["pricing"] = str(include / "pricing" / "default.yaml")
    spec["sites"]["onprem"]["storage"] = str(root / "onprem")
    spec["sites"]["cloud"]["storage"] = str(root / "cloud")
    for wl in spec.get("workloads", []):
        if wl["kind"] == "inference":
            wl["payloads"] = str(include / "demo" / "payloads.jsonl")
    (specs / "pilot.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    mp = pytest.MonkeyPatch()
    mp.setenv("MIGRATION_WAVES_SPECS", str(specs))
    try:
        yield root
    finally:
        mp.undo()


def _run(root: Path) -> Any:
    from migration_waves.airflow.runner import run_wave
    from migration_waves.airflow.sync_dag import sync_dag_id

    return run_wave(sync_dag_id("pilot"))


def _write(path: Path, data: bytes, age_s: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _record(root: Path, run_id: str, name: str) -> dict[str, Any]:
    from migration_waves.airflow.sync_dag import SYNC_FOLDER
    from migration_waves.evidence.store import safe_run_id

    path = root / "state" / "waves" / "pilot" / SYNC_FOLDER / safe_run_id(run_id) / "data" / f"{name}.json"
    return json.loads(path.read_text())["data"]


def _seed(root: Path) -> None:
    """What the wave run's seed + verify leave behind: the target copy and the verified manifest."""
    from fsspec.implementations.local import LocalFileSystem

    from migration_waves.transfer.engine import copy_tree

    fs = LocalFileSystem()
    result = copy_tree(
        fs, str(root / "onprem" / "features"), fs, str(root / "cloud" / "features"), dataset="f"
    )
    assert result.passed and result.target_manifest is not None
    state = root / "state" / "waves" / "pilot" / "datasets" / "features"
    state.mkdir(parents=True, exist_ok=True)
    result.target_manifest.write_parquet(fs, str(state / "verified.parquet"))


def test_scheduled_sync_lifecycle(home: Path) -> None:
    from migration_waves.evidence.store import freeze_writes, mark_accepted, unfreeze_writes

    src, dst = home / "onprem" / "features", home / "cloud" / "features"
    state = str(home / "state")
    for name in ("a.parquet", "b.parquet", "part/c.parquet"):
        _write(src / name, name.encode() * 1000, age_s=3600)

    # not seeded: the gate short-circuits the run, nothing moves
    first = _run(home)
    assert first.state == "success"
    assert first.task_states == {"gate": "skipped", "features.sync": "skipped", "features.verify": "skipped"}
    assert not dst.exists()

    _seed(home)
    # a change 90 s old, a new file, a deletion: synced, verified, lag = oldest pending age + sync time
    _write(src / "b.parquet", b"changed" * 500, age_s=90)
    _write(src / "part/d.parquet", b"new" * 700, age_s=30)
    (src / "a.parquet").unlink()
    ok = _run(home)
    assert ok.state == "success", ok.task_states
    assert ok.task_states == {"gate": "success", "features.sync": "success", "features.verify": "success"}
    assert _tree(dst) == _tree(src)
    rec = _record(home, ok.run_id, "features-scheduled-sync")
    lag = rec["lag"]
    assert (lag["pending_files"], lag["pending_deletes"], rec["files_deleted"]) == (2, 1, 1)
    assert 90 <= lag["oldest_pending_age_s"] < 150 and 30 <= lag["newest_pending_age_s"] < 90
    assert lag["lag_s"] == pytest.approx(lag["oldest_pending_age_s"] + lag["sync_s"], abs=0.01)
    assert rec["lag_s"] == lag["lag_s"] <= lag["rpo_s"] == 900 and lag["passed"]
    assert _record(home, ok.run_id, "features-verify-scheduled-sync")["passed"] is True
    # its evidence stays out of the wave runs the report and the dashboard list
    assert not (home / "state" / "waves" / "pilot" / "runs").exists()

    # nothing changed: nothing pending, lag 0
    idle = _run(home)
    assert idle.state == "success"
    rec = _record(home, idle.run_id, "features-scheduled-sync")
    assert (rec["files_copied"], rec["lag"]["pending_files"], rec["lag_s"]) == (0, 0, 0.0)

    # a change 20 minutes old with a 15 minute RPO: the data arrives, the run fails loudly
    _write(src / "late.parquet", b"late" * 300, age_s=1200)
    late = _run(home)
    assert late.state == "failed"
    assert late.task_states["features.sync"] == "failed"
    assert late.task_states["features.verify"] == "upstream_failed"
    rec = _record(home, late.run_id, "features-scheduled-sync")
    assert rec["passed"] is False and rec["lag_s"] > 1200
    assert any("exceeds the RPO 900s" in r for r in rec["reasons"])
    assert (dst / "late.parquet").read_bytes() == (src / "late.parquet").read_bytes()
    # the next run finds it current (nothing re-sent, nothing pending) and verifies it
    after = _run(home)
    assert after.state == "success", after.task_states
    rec = _record(home, after.run_id, "features-scheduled-sync")
    assert (rec["files_copied"], rec["lag_s"]) == (0, 0.0)
    assert _record(home, after.run_id, "features-verify-scheduled-sync")["files_verified"] == 4

    # frozen for cutover: the scheduled sync must not race the final sync
    freeze_writes(state, "pilot", "manual__cutover")
    _write(src / "during-freeze.parquet", b"x" * 100)
    frozen = _run(home)
    assert frozen.state == "success"
    assert frozen.task_states["gate"] == "skipped" and frozen.task_states["features.sync"] == "skipped"
    assert not (dst / "during-freeze.parquet").exists()

    # accepted: nothing left to sync
    unfreeze_writes(state, "pilot")
    mark_accepted(state, "pilot", "manual__accept", {})
    done = _run(home)
    assert done.state == "success" and done.task_states["gate"] == "skipped"
    assert not (dst / "during-freeze.parquet").exists()
