"""The monthly DR drill DAGs render from every wave spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.dags


@pytest.fixture(scope="module")
def dagbag(project_root: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(project_root / "dags" / "dr_drill.py"))


def test_dr_dags_render_monthly_for_every_wave(dagbag: Any, project_root: Path) -> None:
    import yaml

    from migration_waves.airflow.dr_dag import DR_SCHEDULE, DrDrillOperator, dr_dag_id
    from migration_waves.spec.loader import spec_files

    assert dagbag.import_errors == {}
    waves = [yaml.safe_load(f.read_text())["wave"] for f in spec_files([project_root / "include" / "waves"])]
    assert waves
    for wave in waves:
        dag = dagbag.dags.get(dr_dag_id(wave))
        assert dag is not None, wave
        assert dag.schedule == DR_SCHEDULE == "0 4 1 * *"
        assert not dag.catchup and dag.max_active_runs == 1
        (task,) = dag.tasks
        assert isinstance(task, DrDrillOperator) and task.task_id == "restore_failover_measure"
        assert task.template_fields == ("wave_spec",) and task.wave_spec.endswith(".yaml")
    pilot = dagbag.dags[dr_dag_id("pilot")]
    assert pilot.tasks[0].queue == "default"  # the on-prem site's queue: the restore lands on-prem
    assert "dr-drill" in pilot.tags
