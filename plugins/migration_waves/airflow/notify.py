"""Notifications when a wave run ends, whatever the end: success, failure, rollback, setup failure.

`WaveWebhookNotifier` is an Airflow notifier (BaseNotifier) the DAG factory sets as the DAG's
on_success_callback and on_failure_callback. It POSTs one JSON document to a URL the user
configures, in this order:

1. the Airflow connection `migration_waves_webhook` (e.g. ``AIRFLOW_CONN_MIGRATION_WAVES_WEBHOOK=
   'https://hooks.example.com/T0/B1'``, or JSON ``{"conn_type": "http", "host": "https://..."}``;
   a password becomes ``Authorization: Bearer <password>``; extra ``{"headers": {...}}`` is sent too);
2. the Airflow Variable `migration_waves_webhook_url`.

With neither set it logs that no webhook is configured and does nothing. DAG callbacks run in the
dag-processor (dag.test() runs them in-process); a webhook that is down is logged by Airflow and
never changes the state of the run.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.sdk import BaseNotifier

WEBHOOK_CONN_ID = "migration_waves_webhook"
WEBHOOK_VARIABLE = "migration_waves_webhook_url"


def connection_url(conn: Any) -> str:
    """The webhook URL an Airflow connection describes (host may be a whole URL)."""
    host = str(conn.host or "")
    if "://" in host:
        return host
    if not host:
        return ""
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    scheme = conn.conn_type if conn.conn_type in ("http", "https") else str(extra.get("scheme") or "http")
    port = f":{conn.port}" if conn.port else ""
    path = str(conn.schema or "").strip("/")
    return f"{scheme}://{host}{port}/{path}"


class WaveWebhookNotifier(BaseNotifier):
    """POST the end of a wave run (state, outcome, reasons, report link) as JSON to a webhook."""

    # Nothing is templated: the connection and variable names are plain names.
    template_fields = ()

    def __init__(
        self,
        *,
        wave: str,
        wave_spec: str,
        state: str,
        conn_id: str = WEBHOOK_CONN_ID,
        variable: str = WEBHOOK_VARIABLE,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        if state not in ("success", "failed"):
            raise ValueError(f"wave {wave}: notifier state {state!r} must be 'success' or 'failed'")
        self.wave = wave
        self.wave_spec = wave_spec
        self.state = state
        self.conn_id = conn_id
        self.variable = variable
        self.timeout_s = timeout_s

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render. (BaseNotifier asks the DAG for a Jinja environment even then, which
        the serialized DAG that dag.test() passes to callbacks does not have.)"""

    def webhook(self) -> tuple[str, dict[str, str]] | None:
        """URL and headers from the connection, else the variable; None when neither is set."""
        from airflow.sdk import Connection, Variable

        try:
            conn = Connection.get(self.conn_id)
        except Exception:  # AirflowNotFoundException and friends: fall back to the variable
            conn = None
        if conn is not None and connection_url(conn):
            headers = {str(k): str(v) for k, v in (conn.extra_dejson.get("headers") or {}).items()}
            if conn.password:
                headers.setdefault("Authorization", f"Bearer {conn.password}")
            return connection_url(conn), headers
        url = Variable.get(self.variable, default=None)
        return (str(url), {}) if url else None

    def payload(self, context: Any) -> dict[str, Any]:
        """The JSON sent: who, which run, how it ended and where the evidence is."""
        from migration_waves.airflow.links import run_file_url

        dag = context.get("dag")
        run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", "") or "")
        ti = context.get("ti") or context.get("task_instance")
        body: dict[str, Any] = {
            "event": "wave_run_finished",
            "wave": self.wave,
            "dag_id": getattr(dag, "dag_id", None),
            "run_id": run_id,
            "state": self.state,
            "reason": str(context.get("reason") or ""),
            "last_task": getattr(ti, "task_id", None),
            "outcome": None,
            "reasons": [],
            "failed_tasks": [],
            "report_url": run_file_url(self.wave, run_id, "report.html") if run_id else None,
            "evidence": None,
        }
        try:
            # The outcome task (trigger rule ALL_DONE) wrote what happened, setup failures included.
            from migration_waves.airflow.context import STATE_ROOT_ENV
            from migration_waves.evidence.store import EvidenceStore
            from migration_waves.spec.loader import load_wave

            spec = load_wave(self.wave_spec)
            store = EvidenceStore(spec.state_root(os.environ.get(STATE_ROOT_ENV)), spec.wave, run_id)
            body["evidence"] = store.url()
            outcome = (store.read("outcome", "outcome") or {}).get("data") or {}
            body["outcome"] = outcome.get("status")
            body["reasons"] = [str(r) for r in outcome.get("reasons") or []][:10]
            body["failed_tasks"] = [str(t) for t in outcome.get("failed_tasks") or []]
        except Exception as exc:  # a broken spec or store must not stop the notification
            body["reasons"].append(f"evidence could not be read: {exc}")
        return body

    def notify(self, context: Any) -> None:
        import httpx

        target = self.webhook()
        if target is None:
            self.log.info(
                "wave %s: no webhook configured (connection %s or variable %s); not notifying",
                self.wave,
                self.conn_id,
                self.variable,
            )
            return
        url, headers = target
        body = self.payload(context)
        response = httpx.post(
            url,
            content=json.dumps(body, default=str),
            headers={"Content-Type": "application/json", **headers},
            timeout=self.timeout_s,
        )
        if response.status_code >= 300:
            raise RuntimeError(
                f"wave {self.wave}: webhook {url} answered {response.status_code}: {response.text[:200]}"
            )
        self.log.info("wave %s: run %s %s; notified %s", self.wave, body["run_id"], self.state, url)


def wave_notifiers(wave: str, wave_spec: str) -> dict[str, WaveWebhookNotifier]:
    """The DAG's on_success_callback / on_failure_callback."""
    return {
        "on_success_callback": WaveWebhookNotifier(wave=wave, wave_spec=wave_spec, state="success"),
        "on_failure_callback": WaveWebhookNotifier(wave=wave, wave_spec=wave_spec, state="failed"),
    }
