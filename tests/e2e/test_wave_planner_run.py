"""The wave planner DAG under dag.test() on a temp state root: drafts that lint, a heatmap and a
`planning/latest/` copy the view finds; a bad inventory fails the task and leaves latest alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CSV_HEAD = (
    "name,kind,owner,gpu_need,data_size,latency_sensitivity,compliance_scope,change_tolerance,data_gravity\n"
)


def _bad_inventory(tmp_path: Path, project_root: Path) -> Path:
    """The project's sites and defaults, and a sheet whose row 3 has a bad unit and a missing cell."""
    head = (project_root / "include" / "inventory" / "workloads.yaml").read_text().split("import:")[0]
    (tmp_path / "workloads.yaml").write_text(head)
    sheet = tmp_path / "workloads.csv"
    sheet.write_text(
        CSV_HEAD
        + "etl-a,ingestion,team-x,0,3 TB,low,internal,high,low\n"
        + "etl-b,ingestion,team-x,0,3 TBs,low,internal,high,\n"
    )
    return sheet


def _xcom(run_id: str) -> dict[str, object]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id="wave_planner", run_id=run_id, task_id="plan", key="return_value")
            .one()
        )
        return XComModel.deserialize_value(row)  # type: ignore[no-any-return]


def test_planner_writes_plan_and_latest_and_fails_on_a_bad_inventory(
    tmp_path: Path, project_root: Path, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_waves.airflow.runner import run_wave
    from migration_waves.evidence.dashboard import latest_plan, load_specs
    from migration_waves.evidence.store import safe_run_id
    from migration_waves.spec.loader import lint_paths

    state = tmp_path / "state"
    monkeypatch.setenv("MIGRATION_WAVES_STATE_ROOT", str(state))
    result = run_wave("wave_planner", {"max_per_wave": 3})
    assert result.task_states == {"plan": "success"} and result.state == "success"

    run_dir = state / "planning" / safe_run_id(result.run_id)
    latest = state / "planning" / "latest"
    for folder in (run_dir, latest):
        assert (folder / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (folder / "heatmap.html").read_text()
        specs, problems = lint_paths([folder / "waves"])
        assert problems == [], [str(p) for p in problems]
        assert len(specs) >= 2
    plan = json.loads((latest / "plan.json").read_text())
    assert plan["run_id"] == result.run_id and plan["max_per_wave"] == 3
    assert all(len(w["workloads"]) <= 3 for w in plan["waves"])

    summary = _xcom(result.run_id)
    assert summary["waves_proposed"] == len(plan["waves"]) == len(specs)
    assert summary["workloads_per_wave"] == {w["name"]: w["workloads"] for w in plan["waves"]}
    assert summary["warnings"] == plan["warnings"]
    # The view's read model finds the newest plan under the same state root.
    view = latest_plan(load_specs(project_root / "include" / "waves"))
    assert view is not None and view.run_id == result.run_id
    assert view.heatmap_png == "planning/latest/heatmap.png" and set(view.waves) == set(
        summary["workloads_per_wave"]
    )

    # A bad inventory: the task fails naming the row and field, and latest keeps the good plan.
    sheet = _bad_inventory(tmp_path, project_root)
    before = (latest / "plan.json").read_bytes()
    failed = run_wave("wave_planner", {"inventory": str(sheet)})
    assert failed.task_states == {"plan": "failed"} and failed.state == "failed"
    assert (latest / "plan.json").read_bytes() == before
    assert not (state / "planning" / safe_run_id(failed.run_id)).exists()


def test_bad_inventory_error_names_row_and_field(
    tmp_path: Path, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from migration_waves.airflow.planner_dag import PlanWavesOperator

    monkeypatch.setenv("MIGRATION_WAVES_STATE_ROOT", str(tmp_path / "state"))
    sheet = _bad_inventory(tmp_path, project_root)
    op = PlanWavesOperator(task_id="plan", inventory=str(sheet), max_per_wave=2)
    with pytest.raises(AirflowFailException) as failure:
        op.execute({"run_id": "manual__bad"})
    message = str(failure.value)
    assert "row 3 (etl-b).data_size: unknown unit 'TBs'" in message
    assert "row 3 (etl-b).data_gravity: required field is missing" in message
    with pytest.raises(AirflowFailException, match="max_per_wave: 'x' is not a whole number"):
        PlanWavesOperator(task_id="plan", inventory=str(sheet), max_per_wave="x").execute({"run_id": "r"})
