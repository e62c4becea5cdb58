"""The open-loop load generator against a local HTTP server: rate kept, batches sent, queueing seen."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from migration_waves.canary.load import run_open_loop

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict], dict]]:
    bodies: list[dict] = []
    knobs = {"delay_s": 0.0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            time.sleep(knobs["delay_s"])
            raw = b"{}"
            self.send_response(200)
            self.send_header("content-length", str(len(raw)))
            self.send_header("x-backend", "onprem")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            return

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/predict", bodies, knobs
    finally:
        srv.shutdown()
        srv.server_close()


def test_rate_batches_and_backend(server: tuple[str, list[dict], dict]) -> None:
    url, bodies, _ = server
    payloads = [{"pixels": [float(i)] * 64} for i in range(5)]
    run = run_open_loop(url, payloads, rate_rps=100, duration_s=1.0, concurrency=4, batch_sizes=[1, 4])
    assert 95 <= len(run.samples) <= 100  # due times 0 .. 0.99 s
    assert 80 <= run.achieved_rps <= 105
    assert all(s.ok and s.backend == "onprem" for s in run.samples)
    assert {s.batch for s in run.samples} == {1, 4}
    singles = [b for b in bodies if "pixels" in b]
    batched = [b for b in bodies if "instances" in b]
    assert singles and batched and all(len(b["instances"]) == 4 for b in batched)


def test_open_loop_counts_queueing_as_latency(server: tuple[str, list[dict], dict]) -> None:
    """A backend slower than the arrival rate: requests queue for a slot and their latency shows it."""
    url, _, knobs = server
    knobs["delay_s"] = 0.05  # one slot serves 20 req/s; 40 req/s arrive
    run = run_open_loop(url, [{"x": 1}], rate_rps=40, n_requests=40, concurrency=1)
    lat = sorted(s.latency_ms for s in run.samples)
    assert len(lat) == 40
    assert lat[-1] > 800  # the last request waited ~1 s behind its due time
    assert run.max_lag_ms > 500
    closed = run_open_loop(url, [{"x": 1}], rate_rps=None, n_requests=10, concurrency=1)
    assert max(s.latency_ms for s in closed.samples) < 300  # closed loop hides that wait


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="rate_rps"):
        run_open_loop("http://127.0.0.1:9/", [{}], rate_rps=0, n_requests=1)
    with pytest.raises(ValueError, match="batch sizes"):
        run_open_loop("http://127.0.0.1:9/", [{}], rate_rps=1, n_requests=1, batch_sizes=[0])
