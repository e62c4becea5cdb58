"""The daily showback DAG parses from dags/ with its schedule, tasks and budget notifier."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.dags


def test_showback_dag_is_daily_with_a_budget_alert(project_root: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from migration_waves.airflow.showback_dag import SHOWBACK_DAG_ID, BudgetAlertNotifier

    bag = DagBag(dag_folder=str(project_root / "dags" / "showback.py"))
    assert bag.import_errors == {}
    dag = bag.dags[SHOWBACK_DAG_ID]
    assert dag.schedule == "@daily" and not dag.catchup and dag.max_active_runs == 1
    assert set(dag.task_ids) == {"showback", "budget"}
    budget = dag.get_task("budget")
    assert budget.upstream_task_ids == {"showback"}
    callbacks = budget.on_failure_callback
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    assert any(isinstance(c, BudgetAlertNotifier) for c in callbacks)
