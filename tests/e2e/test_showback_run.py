"""The showback DAG under dag.test() on a filled temp state root; the budget alert reaches a real
webhook on loopback (an Airflow connection given as an environment variable)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from showback_support import fill_pilot_evidence, write_specs

pytestmark = pytest.mark.e2e


def test_daily_showback_writes_report_and_alerts_over_budget(
    tmp_path: Path, project_root: Path, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_waves.airflow.runner import run_wave
    from migration_waves.airflow.showback_dag import SHOWBACK_DAG_ID

    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    specs = write_specs(project_root, tmp_path, pilot_budget=5)
    fill_pilot_evidence(specs)
    monkeypatch.setenv("MIGRATION_WAVES_SPECS", str(specs))
    monkeypatch.setenv(
        "AIRFLOW_CONN_MIGRATION_WAVES_WEBHOOK", f"http://127.0.0.1:{server.server_address[1]}/hook"
    )
    try:
        result = run_wave(SHOWBACK_DAG_ID)
    finally:
        server.shutdown()
        server.server_close()
    assert result.task_states == {"showback": "success", "budget": "failed"}
    assert result.state == "failed"
    (folder,) = (tmp_path / "state" / "showback").iterdir()
    data = json.loads((folder / "showback.json").read_text())
    assert [w["wave"] for w in data["waves"]] == ["pilot", "early-adopters"]
    assert (folder / "waves-to-date.png").stat().st_size > 1000 and (folder / "showback.html").exists()
    (alert,) = [r for r in received if r.get("event") == "budget_exceeded"]
    assert (
        alert["alerts"][0]["wave"] == "pilot" and "exceeds the budget $5.00" in alert["alerts"][0]["message"]
    )
