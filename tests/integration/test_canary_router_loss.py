"""A router lost mid-step: the gate aborts, the restore retries, and the failure states the split.

Real demo services (router, on-prem, cloud) on free loopback ports and a real wave DAG (one inference
workload, canary steps 25/100) run with dag.test(). A watcher thread SIGKILLs the router process as
soon as the router reports the 25% step's weight, i.e. while that step drives its load. Nothing is
mocked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from canary_demo_support import running_services, train_tiny_model

pytestmark = pytest.mark.integration


def _kill_at_weight(router_url: str, pid: int, pct: int, done: threading.Event) -> None:
    while not done.is_set():
        try:
            if httpx.get(f"{router_url}/admin/weights", timeout=1).json()["candidate"] == pct:
                os.kill(pid, signal.SIGKILL)
                done.set()
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.01)


def test_router_killed_mid_step_fails_the_run_stating_the_split(
    tmp_path: Path, project_root: Path, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_waves.airflow.dag_factory import dag_id_for
    from migration_waves.airflow.runner import run_wave
    from migration_waves.evidence.store import EvidenceStore

    _, payloads = train_tiny_model((tmp_path / "model").resolve())
    (tmp_path / "payloads.jsonl").write_text("".join(json.dumps(p) + "\n" for p in payloads))
    include = project_root / "include"
    spec: dict[str, Any] = yaml.safe_load((include / "waves" / "pilot.yaml").read_text())
    with running_services(tmp_path, tmp_path / "model") as services:
        spec.update(
            wave="router-loss", state=str(tmp_path / "state"), golden_images=str(include / "golden_images"),
            datasets=[], workloads=[spec["workloads"][0]],
        )  # fmt: skip
        spec["budget"]["pricing"] = str(include / "pricing" / "default.yaml")
        for site in ("onprem", "cloud"):
            spec["sites"][site]["storage"] = str(tmp_path / site)
        wl = spec["workloads"][0]
        wl.update(
            payloads=str(tmp_path / "payloads.jsonl"), baseline=services.baseline_url,
            candidate=services.candidate_url, router={"kind": "local", "admin": services.router_url},
            canary={"steps": [25, 100], "samples_per_step": 300, "concurrency": 4, "min_samples": 20,
                    "p95_ratio_max": 3.0, "p95_min_delta_ms": 50},
        )  # fmt: skip
        specs = tmp_path / "specs"
        specs.mkdir()
        (specs / "router-loss.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        monkeypatch.setenv("MIGRATION_WAVES_SPECS", str(specs))
        done = threading.Event()
        killer = threading.Thread(
            target=_kill_at_weight, args=(services.router_url, services.services["router"].pid, 25, done)
        )
        killer.start()
        try:
            result = run_wave(dag_id_for("router-loss"))
        finally:
            done.set()
            killer.join()
    states = result.task_states
    assert result.state == "failed"
    assert states["canary.digits-classifier.step-025"] == "success"  # it recorded the router error
    assert states["canary.digits-classifier.abort-025"] == "failed"
    assert states["rollback.restore"] == "failed"
    assert states["outcome"] == "failed"
    store = EvidenceStore(str(tmp_path / "state"), "router-loss", result.run_id)
    records = store.records()
    step = records["canary"]["digits-classifier-step-025"]["data"]
    assert step["outcome"] == "error" and "router error mid-step" in step["reasons"][0]
    expected = (
        r"traffic split unknown: router unreachable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, last set to 25%"
    )
    abort = records["canary"]["digits-classifier-abort-025"]["data"]
    # Retried: the last record is from the last of the 4 attempts.
    assert "attempt 4 of 4" in abort["reasons"][0], abort["reasons"]
    assert re.search(expected, abort["reasons"][0]), abort["reasons"]
    restore = records["rollback"]["restore"]["data"]
    assert "attempt 4 of 4" in restore["reasons"][0] and re.search(expected, restore["reasons"][0])
    outcome = records["outcome"]["outcome"]["data"]
    assert outcome["status"] == "failed"
    assert re.search(expected, outcome["reasons"][0]), outcome["reasons"]
