"""The wave planner DAG parses from dags/ as a triggered DAG with its Params, cheaply."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags


def test_planner_dag_is_triggered_with_inventory_and_cap_params(project_root: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamValidationError

    from migration_waves.airflow.planner_dag import PLANNER_DAG_ID, PlanWavesOperator

    bag = DagBag(dag_folder=str(project_root / "dags" / "wave_planner.py"))
    assert bag.import_errors == {}
    dag = bag.dags[PLANNER_DAG_ID]
    assert dag.schedule is None and dag.max_active_runs == 1
    assert dag.task_ids == ["plan"]
    task = dag.get_task("plan")
    assert isinstance(task, PlanWavesOperator)
    assert (task.inventory, task.max_per_wave) == ("{{ params.inventory }}", "{{ params.max_per_wave }}")
    params = dag.params.dump()
    assert Path(params["inventory"]) == project_root / "include" / "inventory" / "workloads.yaml"
    assert params["max_per_wave"] == 4
    # The trigger form refuses a cap below 1 and a non-integer cap.
    for bad in (0, "four"):
        with pytest.raises(ParamValidationError, match="max_per_wave"):
            copy.deepcopy(dag.params)["max_per_wave"] = bad


def test_planner_dag_parses_without_its_inputs_and_imports_no_planning_code(
    project_root: Path, tmp_path: Path
) -> None:
    # A missing inventory and an empty specs folder: parsing must not need (or import) either.
    code = (
        "import sys, runpy;"
        "from migration_waves.airflow.planner_dag import build_planner_dag;"
        f"d = build_planner_dag(inventory={str(tmp_path / 'missing.yaml')!r}, specs_dir={str(tmp_path)!r});"
        "runpy.run_path('dags/wave_planner.py');"
        "heavy = [m for m in ('matplotlib', 'pandas', 'scipy', 'great_expectations',"
        " 'migration_waves.planning', 'migration_waves.evidence.dashboard') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project_root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""
