"""The scheduled dataset_sync DAGs render from every wave spec with mutable datasets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.dags


@pytest.fixture(scope="module")
def dagbag(project_root: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(project_root / "dags" / "dataset_sync.py"))


def test_one_sync_dag_per_wave_with_mutable_datasets_every_half_rpo(dagbag: Any, project_root: Path) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    from migration_waves.airflow.sync_dag import (
        ScheduledSyncOperator,
        ScheduledVerifyOperator,
        SyncGateOperator,
        mutable_datasets,
        sync_dag_id,
    )
    from migration_waves.spec.loader import load_wave, spec_files

    assert dagbag.import_errors == {}
    specs = [load_wave(f) for f in spec_files([project_root / "include" / "waves"])]
    with_mutable = [s for s in specs if mutable_datasets(s)]
    assert with_mutable, "the shipped waves have mutable datasets"
    assert sorted(dagbag.dag_ids) == sorted(sync_dag_id(s.wave) for s in with_mutable)
    for spec in with_mutable:
        dag = dagbag.dags[sync_dag_id(spec.wave)]
        assert dag.schedule == timedelta(minutes=spec.targets.rpo_minutes / 2)
        # the scheduler's (deserialized) timetable is what backfill asks: periodic
        assert DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable.periodic
        assert not dag.catchup and dag.max_active_runs == 1
        gate = dag.get_task("gate")
        assert isinstance(gate, SyncGateOperator) and not gate.upstream_task_ids
        for name in mutable_datasets(spec):
            sync, verify = dag.get_task(f"{name}.sync"), dag.get_task(f"{name}.verify")
            assert isinstance(sync, ScheduledSyncOperator) and sync.upstream_task_ids == {"gate"}
            assert isinstance(verify, ScheduledVerifyOperator)
            assert verify.upstream_task_ids == {f"{name}.sync"} and verify.trigger_rule == "all_success"
        assert len(dag.tasks) == 1 + 2 * len(mutable_datasets(spec))
    pilot = dagbag.dags[sync_dag_id("pilot")]
    assert pilot.schedule == timedelta(minutes=7.5)  # pilot's RPO is 15 minutes
    assert [t.task_id for t in pilot.tasks if t.task_id != "gate"] == ["features.sync", "features.verify"]


def test_wave_without_mutable_datasets_gets_no_sync_dag(tmp_path: Path, project_root: Path) -> None:
    import yaml

    from migration_waves.airflow.sync_dag import build_sync_dag

    spec = yaml.safe_load((project_root / "include" / "waves" / "pilot.yaml").read_text())
    spec["datasets"] = [d for d in spec["datasets"] if d["class"] != "mutable"]
    for key in ("state", "golden_images"):
        spec[key] = str((project_root / "include" / "waves" / spec[key]).resolve())
    spec["budget"]["pricing"] = str(project_root / "include" / "pricing" / "default.yaml")
    for wl in spec.get("workloads", []):
        if wl["kind"] == "inference":
            wl["payloads"] = str(project_root / "include" / "demo" / "payloads.jsonl")
    path = tmp_path / "pilot.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert build_sync_dag(path) is None
