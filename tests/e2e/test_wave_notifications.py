"""Wave runs announce how they ended to a webhook: a real HTTP server on loopback receives them.

The wave DAGs come from dags/ (as the dag-processor builds them), run with dag.test(), which runs
the DAG's on_success_callback / on_failure_callback in-process. The webhook URL and its secret come
from an Airflow connection given as an environment variable, as a deployment would set it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"port": server.server_address[1], "received": received}
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, project_root: Path, airflow_db: Path) -> Iterator[Path]:
    """early-adopters on temp stores (a small real corpus at its source); webhook connection set."""
    root = tmp_path_factory.mktemp("notify")
    specs = root / "specs"
    specs.mkdir()
    include = project_root / "include"
    for name in ("pilot", "early-adopters"):  # early-adopters names pilot in `after`
        spec = yaml.safe_load((include / "waves" / f"{name}.yaml").read_text())
        spec["state"] = str(root / "state")
        spec["golden_images"] = str(include / "golden_images")
        spec["budget"]["pricing"] = str(include / "pricing" / "default.yaml")
        spec["sites"]["onprem"]["storage"] = str(root / "onprem")
        spec["sites"]["cloud"]["storage"] = str(root / "cloud")
        for wl in spec.get("workloads", []):
            if wl["kind"] == "inference":
                wl["payloads"] = str(include / "demo" / "payloads.jsonl")
        (specs / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    corpus = root / "onprem" / "corpus"
    corpus.mkdir(parents=True)
    for i in range(3):
        (corpus / f"part-{i}.txt").write_text(f"document {i}\n" * 50)
    mp = pytest.MonkeyPatch()
    mp.setenv("MIGRATION_WAVES_SPECS", str(specs))
    try:
        yield root
    finally:
        mp.undo()


def _run(conf: dict[str, Any]) -> Any:
    from migration_waves.airflow.runner import run_wave

    return run_wave("wave_early_adopters", conf=conf)


def test_setup_failure_is_announced(
    home: Path, webhook: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MIGRATION_WAVES_WEBHOOK",
        f"http://hook:s3cret@127.0.0.1:{webhook['port']}/hooks%2Fwaves",
    )
    webhook["received"].clear()
    result = _run({})  # pilot was never accepted here: preflight fails
    assert result.state == "failed"
    assert result.task_states["preflight.earlier-waves"] == "failed"
    (call,) = webhook["received"]
    assert call["path"] == "/hooks/waves"
    assert call["headers"]["Authorization"] == "Bearer s3cret"
    body = call["json"]
    assert (body["event"], body["wave"], body["dag_id"]) == (
        "wave_run_finished",
        "early-adopters",
        "wave_early_adopters",
    )
    assert (body["run_id"], body["state"], body["outcome"]) == (result.run_id, "failed", "failed")
    assert "preflight.earlier-waves" in body["failed_tasks"]
    assert any("runs after 'pilot', which is not accepted yet" in r for r in body["reasons"])
    assert (
        body["report_url"].endswith("/files/report.html")
        and "/migration-waves/runs/early-adopters/" in body["report_url"]
    )
    assert Path(body["evidence"], "report.html").exists()
    # Every wave task carries the same report link (Airflow stores extra links as XCom when a task ends).
    links = _links(result.run_id, "_link_WaveReportLink")
    assert links["report"] == links["preflight.earlier-waves"] == body["report_url"]


def _links(run_id: str, key: str) -> dict[str, str]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id="wave_early_adopters", run_id=run_id, key=key).all()
        return {row.task_id: XComModel.deserialize_value(row) for row in rows}


def test_success_is_announced_and_a_missing_webhook_is_harmless(
    home: Path, webhook: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_waves.evidence.store import mark_accepted

    mark_accepted(str(home / "state"), "pilot", "manual__earlier", {})
    # No connection, the variable instead (Airflow reads variables from AIRFLOW_VAR_* too).
    monkeypatch.delenv("AIRFLOW_CONN_MIGRATION_WAVES_WEBHOOK", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_VAR_MIGRATION_WAVES_WEBHOOK_URL", f"http://127.0.0.1:{webhook['port']}/by-variable"
    )
    webhook["received"].clear()
    result = _run({"dry_run": True})
    assert result.state == "success"
    (call,) = webhook["received"]
    assert call["path"] == "/by-variable" and "Authorization" not in call["headers"]
    body = call["json"]
    assert (body["state"], body["outcome"], body["failed_tasks"]) == ("success", "skipped", [])

    # Nothing configured: the run is unaffected and nothing is sent.
    monkeypatch.delenv("AIRFLOW_VAR_MIGRATION_WAVES_WEBHOOK_URL")
    webhook["received"].clear()
    assert _run({"dry_run": True}).state == "success"
    assert webhook["received"] == []
