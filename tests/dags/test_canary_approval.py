"""Human approval before 100%: Airflow's HITL ApprovalOperator, and rollback it cannot block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.dags

WL = "canary.digits-classifier"


@pytest.fixture(scope="module")
def pilot(project_root: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(project_root / "dags"))
    assert bag.import_errors == {}
    return bag.dags["wave_pilot"]


def _downstream_closure(dag: Any, task_id: str) -> set[str]:
    seen, todo = set(), [task_id]
    while todo:
        for d in dag.get_task(todo.pop()).downstream_task_ids:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_approval_sits_between_the_last_gate_and_100(pilot: Any) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    need = pilot.get_task(f"{WL}.need-approval-100")
    approve = pilot.get_task(f"{WL}.approve-100")
    step = pilot.get_task(f"{WL}.step-100")
    gate50 = pilot.get_task(f"{WL}.gate-050")
    assert isinstance(approve, ApprovalOperator)
    assert approve.defaults == ["Reject"]  # no answer in time = Reject: traffic goes back
    assert approve.response_timeout is not None
    assert gate50.on_pass == need.task_id and need.task_id in gate50.downstream_task_ids
    assert {need.ask, need.skip_to} == {approve.task_id, step.task_id}
    assert need.downstream_task_ids == {approve.task_id, step.task_id} | {
        "rollback.restore",
        "acceptance.cost",
        "report",
        "outcome",
    }
    # Reject skips every direct downstream task: the approval must feed only its step.
    assert approve.downstream_task_ids == {step.task_id}
    assert step.trigger_rule == "none_failed_min_one_success"
    assert pilot.params["approve_before_full"] is False  # pilot.yaml does not ask


def test_rollback_reachable_from_every_gate_approval_and_step(pilot: Any) -> None:
    restore = pilot.get_task("rollback.restore")
    assert restore.trigger_rule == "all_done"
    moved = [t for t in pilot.task_ids if t.startswith((f"{WL}.", "cutover."))]
    assert moved
    for task_id in moved:
        assert "rollback.restore" in _downstream_closure(pilot, task_id), task_id
        assert "outcome" in _downstream_closure(pilot, task_id), task_id
    for gate in (t for t in moved if ".gate-" in t):
        pct = gate.rsplit("-", 1)[1]
        assert pilot.get_task(gate).on_fail == f"{WL}.abort-{pct}"
        assert f"{WL}.abort-{pct}" in pilot.get_task(gate).downstream_task_ids


def test_spec_switch_turns_the_param_default_on(tmp_path: Path, project_root: Path) -> None:
    import yaml

    from migration_waves.airflow.dag_factory import build_wave_dag

    raw = yaml.safe_load((project_root / "include" / "waves" / "pilot.yaml").read_text())
    base = project_root / "include" / "waves"
    for key in ("state", "golden_images"):
        raw[key] = str((base / raw[key]).resolve())
    raw["budget"]["pricing"] = str((base / raw["budget"]["pricing"]).resolve())
    for site in raw["sites"].values():
        site["storage"] = str((base / site["storage"]).resolve())
    inference = next(w for w in raw["workloads"] if w["kind"] == "inference")
    inference["payloads"] = str((base / inference["payloads"]).resolve())
    inference["canary"] = {"steps": [10, 100], "approve_before_full": True}
    spec = tmp_path / "approve.yaml"
    spec.write_text(yaml.safe_dump(raw))
    dag = build_wave_dag(spec)
    assert dag.params["approve_before_full"] is True
    assert dag.get_task(f"{WL}.gate-010").on_pass == f"{WL}.need-approval-100"
    assert dag.get_task(f"{WL}.approve-100").downstream_task_ids == {f"{WL}.step-100"}
