"""Router state across canary tasks: what the run last set, since when the router is unreachable.

The step, abort and rollback tasks of a workload share one `canary/<workload>-router` record: a
WatchedRouter updates it on every answer or failure, so a later task that cannot read the router
still says where traffic was left. A restore that fails raises RouterUnreachable, which Airflow
retries (WaveGateFailed is never retried); the record written first carries the message into the
outcome.
"""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowException

from migration_waves.airflow.context import WaveRunContext
from migration_waves.canary.router_watch import WatchedRouter


class RouterUnreachable(AirflowException):
    """Traffic could not be restored because the router did not answer; retried by Airflow."""


def watched_router(ctx: WaveRunContext, workload: str, router: Any) -> WatchedRouter:
    """`router` wrapped to keep the workload's router state in the run's evidence."""
    name = f"{workload}-router"
    state = ((ctx.store.read("canary", name) or {}).get("data")) or {}
    state.pop("workload", None)

    def save(st: dict[str, Any]) -> None:
        ctx.store.write("canary", name, {"workload": workload, **st})

    return WatchedRouter(router, state=state, on_change=save)


def router_error_step(workload: str, step_pct: int, exc: Exception, router: WatchedRouter) -> dict[str, Any]:
    """The record of a step whose router failed mid-step: outcome error, so the gate aborts."""
    return {
        "workload": workload,
        "step_pct": step_pct,
        "outcome": "error",
        "action": "rollback",
        "router_weight": router.state.get("last_set_pct"),
        "verdict_passed": False,
        "passed": True,  # the step task records; the gate after it branches to the abort
        "reasons": [f"workload {workload}, step {step_pct}%: router error mid-step: {exc}"],
    }


def attempt_label(ctx: WaveRunContext) -> str:
    """'attempt n of m' of the running task instance, or '' outside Airflow."""
    ti = (ctx.airflow_context or {}).get("ti")
    if ti is None:
        return ""
    retries = getattr(getattr(ti, "task", None), "retries", None)
    return f"attempt {ti.try_number}" + (f" of {retries + 1}" if retries is not None else "")


def fail_retryable(ctx: WaveRunContext, stage: str, name: str, record: dict[str, Any]) -> None:
    """Write the failed record (its reasons reach the outcome), then raise a retryable error."""
    ctx.store.write(stage, name, record)
    raise RouterUnreachable(f"wave {ctx.spec.wave}: " + "; ".join(record.get("reasons") or []))
