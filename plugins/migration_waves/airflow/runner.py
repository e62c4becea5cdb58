"""Run a wave DAG in-process with `dag.test()` (the demo and the e2e tests use this)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def get_wave_dag(dag_id: str, dags_folder: str | Path | None = None) -> Any:
    """The DAG as the dag-processor sees it: parsed from the configured dags folder."""
    from airflow.dag_processing.dagbag import DagBag

    folder = Path(dags_folder or os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or PROJECT_ROOT / "dags")
    bag = DagBag(dag_folder=str(folder))
    if bag.import_errors:
        raise RuntimeError(f"DAG files failed to import: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise KeyError(f"no DAG {dag_id!r} in {folder}; known: {sorted(bag.dag_ids)}")
    return dag


@dataclass(frozen=True)
class WaveRunResult:
    """How a wave run ended."""

    state: str
    run_id: str
    task_states: dict[str, str]


def run_wave(dag_id: str, conf: dict[str, Any] | None = None, **kwargs: Any) -> WaveRunResult:
    """Run a wave DAG to the end; return the run's state and each task's state."""
    dag = get_wave_dag(dag_id)
    dag_run = dag.test(run_conf=conf or {}, **kwargs)
    states = {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(
            getattr(ti.state, "value", ti.state)
        )
        for ti in dag_run.get_task_instances()
    }
    return WaveRunResult(
        state=str(getattr(dag_run.state, "value", dag_run.state)), run_id=dag_run.run_id, task_states=states
    )
