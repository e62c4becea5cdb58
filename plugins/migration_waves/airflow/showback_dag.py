"""The daily showback DAG (``migration_waves_showback``): cost per wave, workload and dataset.

``showback`` builds the report (``migration_waves.cost.showback``) over every wave spec and writes
showback.json, showback.html and PNG charts to ``<state root>/showback/<day>/``. ``budget`` fails
when a wave's egress spend exceeds its budget; its on_failure_callback, `BudgetAlertNotifier`,
POSTs the alerts to the same webhook as the wave notifications (connection ``migration_waves_webhook``
or Variable ``migration_waves_webhook_url``). Nothing is read at parse time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, BaseOperator

from migration_waves.airflow.dag_factory import SPECS_ENV, _default_specs_dir
from migration_waves.airflow.notify import WaveWebhookNotifier
from migration_waves.airflow.operators import WaveGateFailed

SHOWBACK_DAG_ID = "migration_waves_showback"
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def _specs(folder: str | None) -> list[Any]:
    from migration_waves.spec.loader import load_wave, spec_files

    return [
        load_wave(f) for f in spec_files([Path(folder or os.environ.get(SPECS_ENV) or _default_specs_dir())])
    ]


def _out_root(specs: list[Any]) -> str:
    from migration_waves.airflow.context import STATE_ROOT_ENV

    override = os.environ.get(STATE_ROOT_ENV)
    if override or not specs:
        return override or str(_default_specs_dir().parents[1] / ".demo" / "state")
    return min(specs, key=lambda s: (s.order, s.wave)).state_root()


class ShowbackOperator(BaseOperator):
    """Build and write the day's showback; push the paths and the alerts (small) to XCom."""

    template_fields: Iterable[str] = ("specs_dir",)
    ui_color = "#eaf7ea"

    def __init__(self, *, specs_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs_dir = specs_dir

    def execute(self, context: Any) -> dict[str, Any]:
        from migration_waves.airflow.context import STATE_ROOT_ENV
        from migration_waves.cost.showback import build_showback, write_showback

        when = context.get("logical_date") or context.get("data_interval_end") or dt.datetime.now(dt.UTC)
        specs = _specs(self.specs_dir)
        sb = build_showback(specs, when.date(), state_root=os.environ.get(STATE_ROOT_ENV))
        write_showback(sb, _out_root(specs))
        for error in sb.errors:
            self.log.warning("showback: %s", error)
        self.log.info("Showback %s: %s", sb.day, sb.files.get("showback_html"))
        return {
            "day": sb.day.isoformat(),
            "files": sb.files,
            "alerts": [a.message for a in sb.alerts],
            "total_to_date_usd": str(sb.total_to_date_usd),
            "total_daily_usd": str(sb.total_daily_usd),
        }


class BudgetCheckOperator(BaseOperator):
    """Fail (and so alert through the notifier) when the showback found waves over budget."""

    ui_color = "#fff3cd"

    def execute(self, context: Any) -> dict[str, Any]:
        result = context["ti"].xcom_pull(task_ids="showback") or {}
        alerts = list(result.get("alerts") or [])
        if alerts:
            raise WaveGateFailed("; ".join(alerts), evidence=(result.get("files") or {}).get("showback_json"))
        return {"alerts": [], "showback": (result.get("files") or {}).get("showback_html")}


class BudgetAlertNotifier(WaveWebhookNotifier):
    """POST the budget alerts of a showback run to the wave webhook."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(wave="showback", wave_spec="", state="failed", **kwargs)

    def payload(self, context: Any) -> dict[str, Any]:
        exc = context.get("exception")
        path = getattr(exc, "evidence", None)
        alerts: list[dict[str, Any]] = []
        if path:
            import fsspec

            with fsspec.open(path, "r") as fh:
                alerts = json.load(fh).get("alerts") or []
        return {
            "event": "budget_exceeded",
            "dag_id": getattr(context.get("dag"), "dag_id", None),
            "run_id": str(context.get("run_id") or ""),
            "alerts": alerts,
            "reason": str(exc or ""),
            "showback": path,
        }


def build_showback_dag(specs_dir: str | None = None) -> DAG:
    """The daily showback DAG; no I/O at parse time."""
    with DAG(
        dag_id=SHOWBACK_DAG_ID,
        description="Daily showback: cost per wave, workload and dataset; budget alerts",
        schedule="@daily",
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["migration-wave", "cost", "showback"],
        default_args={"owner": "migration-waves", "retries": 0},
        doc_md=__doc__,
    ) as dag:
        showback = ShowbackOperator(task_id="showback", specs_dir=specs_dir)
        budget = BudgetCheckOperator(task_id="budget", on_failure_callback=BudgetAlertNotifier())
        showback >> budget
    return dag
