"""The demo services as real processes: inference backends, weighted router, launcher."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from canary_demo_support import free_ports, running_services, train_tiny_model

from migration_waves.canary import run_load
from migration_waves.demo.services import (
    DemoServices,
    demo_status,
    main,
    start_demo_services,
    stop_demo_services,
)

pytestmark = pytest.mark.integration

ROTATE = 25


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoServices, Any, list[dict], Path]]:
    root = tmp_path_factory.mktemp("demo")
    model, payloads = train_tiny_model(root / "model")
    with running_services(root, root / "model", log_rotate_lines=ROTATE) as services:
        yield services, model, payloads, root


def test_predict_answers_with_the_models_label(demo: tuple[DemoServices, Any, list[dict], Path]) -> None:
    services, model, payloads, _ = demo
    for url, name in ((services.baseline_url, "onprem"), (services.candidate_url, "cloud")):
        assert httpx.get(f"{url}/health").json()["backend"] == name
        for p in payloads[:10]:
            resp = httpx.post(f"{url}/predict", json=p)
            assert resp.status_code == 200
            assert resp.headers["x-backend"] == name
            body = resp.json()
            assert body["label"] == int(model.predict(np.array([p["pixels"]]))[0])
            assert body["model_version"] == "test-1" and body["backend"] == name


def test_predict_rejects_bad_input_with_a_clear_message(
    demo: tuple[DemoServices, Any, list[dict], Path],
) -> None:
    services = demo[0]
    resp = httpx.post(f"{services.baseline_url}/predict", json={"pixels": [1.0, 2.0]})
    assert resp.status_code == 422
    assert "64 numbers" in resp.json()["detail"] and "got 2" in resp.json()["detail"]
    resp = httpx.post(f"{services.baseline_url}/predict", content=b"not json")
    assert resp.status_code == 422


def test_router_weights_route_the_exact_share(demo: tuple[DemoServices, Any, list[dict], Path]) -> None:
    services, _, payloads, _ = demo
    admin = f"{services.router_url}/admin/weights"
    try:
        assert httpx.put(admin, json={"candidate": 20}).json() == {"candidate": 20, "baseline": 80}
        samples = run_load(f"{services.router_url}/predict", payloads, n_requests=200, concurrency=4)
        backends = [s.backend for s in samples]
        assert all(s.ok for s in samples)
        assert (backends.count("cloud"), backends.count("onprem")) == (40, 160)
        # Out-of-range weights are refused and change nothing: the baseline never goes below 0.
        for bad in (101, -5, "50", 12.5):
            resp = httpx.put(admin, json={"candidate": bad})
            assert resp.status_code == 422, bad
            assert "candidate weight" in resp.json()["detail"]
        assert httpx.get(admin).json() == {"candidate": 20, "baseline": 80}
        assert httpx.put(admin, json={"candidate": 0}).json() == {"candidate": 0, "baseline": 100}
        samples = run_load(f"{services.router_url}/predict", payloads, n_requests=50, concurrency=4)
        assert {s.backend for s in samples} == {"onprem"}
    finally:
        httpx.put(admin, json={"candidate": 0})


def test_serving_logs_rotate_into_closed_files(demo: tuple[DemoServices, Any, list[dict], Path]) -> None:
    services, _, payloads, root = demo
    run_load(f"{services.baseline_url}/predict", payloads, n_requests=2 * ROTATE + 5, concurrency=2)
    files = sorted((root / "logs").glob("serving-onprem-*.jsonl"))
    assert len(files) >= 3
    # Every rotated (not the newest) file is exactly full; every line is a complete record.
    assert all(len(f.read_text().splitlines()) == ROTATE for f in files[:-1])
    rec = json.loads(files[0].read_text().splitlines()[0])
    assert set(rec) == {"ts", "backend", "label", "latency_ms", "status"} and rec["backend"] == "onprem"


def test_start_again_is_a_no_op(demo: tuple[DemoServices, Any, list[dict], Path]) -> None:
    services, _, _, root = demo
    again = start_demo_services(
        model_dir=root / "model",
        log_dir=root / "logs",
        state_dir=root / "state",
        run_dir=root / "run",
        ports=tuple(
            int(u.rsplit(":", 1)[1])
            for u in (services.router_url, services.baseline_url, services.candidate_url)
        ),
        log_rotate_lines=ROTATE,
    )
    assert again.started == []
    assert {n: s.pid for n, s in again.services.items()} == {n: s.pid for n, s in services.services.items()}
    assert all(s.healthy for s in demo_status(root / "run"))


def test_router_weights_survive_a_restart_and_stop_is_idempotent(tmp_path: Path) -> None:
    train_tiny_model(tmp_path / "model")
    ports = free_ports(3)
    with running_services(tmp_path, tmp_path / "model", ports=ports) as services:
        httpx.put(f"{services.router_url}/admin/weights", json={"candidate": 30}).raise_for_status()
    pids = [s.pid for s in services.services.values()]
    # stopped: processes gone, ports free, pidfiles removed; stopping again is harmless
    assert not any(_pid_alive(p) for p in pids)
    assert not list((tmp_path / "run").glob("*.pid"))
    assert stop_demo_services(tmp_path / "run") == []
    with running_services(tmp_path, tmp_path / "model", ports=ports) as services:
        assert httpx.get(f"{services.router_url}/admin/weights").json() == {"candidate": 30, "baseline": 70}


def test_cli_reports_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ports = ",".join(map(str, free_ports(3)))
    args = ["--run-dir", str(tmp_path / "run"), "--model", str(tmp_path / "nope"), "--log-dir", str(tmp_path)]
    rc = main(["start", *args, "--ports", ports])
    assert rc == 1
    assert "has no model.npz" in capsys.readouterr().err


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # zombie = gone
