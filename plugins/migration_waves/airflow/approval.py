"""Human approval before a canary takes 100%: Airflow's own HITL ApprovalOperator behind a branch.

`need-approval-100` asks only when the workload's spec (`canary.approve_before_full`) or the run's
`approve_before_full` param says so; otherwise it goes straight to the 100% step. The approval
task's only downstream is that step: a "Reject" (or the response timeout, whose default is
Reject) skips it, the canary stops where it is, and `rollback.restore` (all_done, downstream of
every step) puts traffic back on-prem. The approval is never a direct upstream of the rollback,
report or outcome tasks, because ApprovalOperator skips every direct downstream task on Reject.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator

from migration_waves.airflow.context import WaveRunContext

APPROVAL_PARAM = "approve_before_full"
DEFAULT_RESPONSE_TIMEOUT = timedelta(hours=4)


class NeedApprovalOperator(BaseBranchOperator):
    """Branch: to the approval task when the spec or the run asks for one, else to the 100% step."""

    template_fields = ("wave_spec",)
    ui_color = "#fff3cd"

    def __init__(self, *, wave_spec: str, subject: str, ask: str, skip_to: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wave_spec, self.subject, self.ask, self.skip_to = wave_spec, subject, ask, skip_to

    def choose_branch(self, context: Any) -> str:
        ctx = WaveRunContext.from_airflow(self.wave_spec, context)
        wl = ctx.spec.workload(self.subject)
        by_spec = bool(wl.canary.approve_before_full)
        by_run = bool((context.get("params") or {}).get(APPROVAL_PARAM))
        needed = by_spec or by_run
        ctx.store.write(
            "canary",
            f"{self.subject}-approval-needed",
            {"workload": self.subject, "needed": needed, "by_spec": by_spec, "by_run_param": by_run},
        )
        return self.ask if needed else self.skip_to


class WaveApprovalOperator(ApprovalOperator):
    """ApprovalOperator that records the answer as evidence (`canary/<workload>-approval-100`).

    The record's `decided_at` is when the answer reached the task; on Reject, `rollback.restore`
    measures its time to rollback from it, as an abort does from its gate's decision.
    """

    def __init__(self, *, wave_spec: str | None = None, workload: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wave_spec, self.workload = wave_spec, workload

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        decided_at = time.time()
        if self.wave_spec and self.workload and "error" not in event:
            chosen = list(event.get("chosen_options") or [])
            responded = event.get("responded_at")
            ctx = WaveRunContext.from_airflow(self.wave_spec, context)
            ctx.store.write(
                "canary",
                f"{self.workload}-approval-100",
                {
                    "workload": self.workload,
                    "decision": "approve" if chosen == [self.APPROVE] else "reject",
                    "chosen_options": chosen,
                    "responded_at": responded.isoformat() if hasattr(responded, "isoformat") else responded,
                    "responded_by_user": event.get("responded_by_user"),
                    "decided_at": decided_at,
                },
            )
        return super().execute_complete(context=context, event=event)


def approval_task(
    *, task_id: str, wave: str, workload: str, owner: str, wave_spec: str | None = None
) -> ApprovalOperator:
    """Airflow's ApprovalOperator; no answer within the timeout counts as Reject (traffic goes back)."""
    return WaveApprovalOperator(
        wave_spec=wave_spec,
        workload=workload,
        task_id=task_id,
        subject=f"Wave {wave}: move {workload} to 100% on the cloud?",
        body=(
            f"Every canary gate of **{workload}** passed. Approve to send all of its traffic to the "
            f"cloud candidate; Reject (or no answer in {DEFAULT_RESPONSE_TIMEOUT}) stops the canary "
            f"and the wave's rollback puts traffic back on-prem. Rollback owner: {owner}."
        ),
        defaults="Reject",
        response_timeout=DEFAULT_RESPONSE_TIMEOUT,
    )
