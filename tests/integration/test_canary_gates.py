"""Canary steps against the real demo services: equal backends pass, a slow or failing candidate fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from canary_demo_support import running_services, train_tiny_model

from migration_waves.canary import GatePolicy, LocalRouter, measure_endpoint, run_step
from migration_waves.demo.services import DemoServices, start_demo_services

pytestmark = pytest.mark.integration

POLICY = GatePolicy(p95_ratio_max=1.5, error_rate_max=0.01, min_samples=50)


class Demo:
    def __init__(self, services: DemoServices, payloads: list[dict[str, Any]], root: Path) -> None:
        self.services, self.payloads, self.root = services, payloads, root
        self.router = LocalRouter(services.router_url)
        self.ports = tuple(
            int(u.rsplit(":", 1)[1])
            for u in (services.router_url, services.baseline_url, services.candidate_url)
        )

    def set_fault(self, fault: str | None) -> DemoServices:
        """Restart with a fault: only the candidate's command line changes, so only it restarts."""
        return start_demo_services(
            model_dir=self.root / "model",
            log_dir=self.root / "logs",
            state_dir=self.root / "state",
            run_dir=self.root / "run",
            ports=self.ports,
            fault=fault,
        )

    def step(self, pct: int) -> Any:
        return run_step(
            self.router,
            f"{self.services.router_url}/predict",
            self.payloads,
            workload="digits-classifier",
            step_pct=pct,
            n_requests=200,
            concurrency=4,
            policy=POLICY,
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("canary")
    _, payloads = train_tiny_model(root / "model")
    with running_services(root, root / "model") as services:
        yield Demo(services, payloads, root)


def test_equal_backends_pass(demo: Demo) -> None:
    result = demo.step(50)
    v = result.verdict
    assert v.outcome == "pass", v.reasons
    assert (v.baseline.count, v.candidate.count) == (100, 100)  # deterministic 50/50 split
    assert result.pinned == {} and result.router_weight == 50
    assert demo.router.get_candidate_weight() == 50


def test_small_step_tops_up_the_candidate(demo: Demo) -> None:
    result = demo.step(5)
    assert result.pinned == {"candidate": 40}
    assert result.verdict.candidate.count == 50 and result.verdict.baseline.count == 190
    assert result.verdict.outcome in {"pass", "fail"}  # judged, not starved into "inconclusive"


def test_slow_candidate_fails_the_gate(demo: Demo) -> None:
    try:
        assert demo.set_fault("latency").started == ["cloud"]
        v = demo.step(25).verdict
        assert v.outcome == "fail"
        assert v.p95_ratio is not None and v.p95_ratio > POLICY.p95_ratio_max
        assert v.candidate.p50_ms is not None and v.candidate.p50_ms >= 60  # the injected delay
        assert "digits-classifier, step 25%: candidate is slower" in v.reasons[0]
    finally:
        demo.set_fault(None)


def test_failing_candidate_fails_the_gate(demo: Demo) -> None:
    try:
        demo.set_fault("errors")
        v = demo.step(50).verdict
        assert v.outcome == "fail"
        assert v.candidate.error_rate == pytest.approx(0.2, abs=0.03)  # 20% injected, warm-up took some
        assert v.baseline.error_rate == 0
        assert "candidate error rate" in v.reasons[0]
    finally:
        demo.set_fault(None)


def test_measure_endpoint_on_the_baseline(demo: Demo) -> None:
    m = measure_endpoint(f"{demo.services.baseline_url}/predict", demo.payloads, 60, 4)
    assert m.metrics.count == 60 and m.metrics.error_rate == 0
    assert {s.backend for s in m.samples} == {"onprem"}
    assert m.metrics.throughput_rps is not None and m.metrics.throughput_rps > 10


def test_unreachable_router_is_never_a_pass(demo: Demo) -> None:
    # Router up, but the predict URL points at a port where nothing listens.
    result = run_step(
        demo.router,
        "http://127.0.0.1:9/predict",
        demo.payloads,
        workload="digits-classifier",
        step_pct=50,
        n_requests=20,
        concurrency=4,
        policy=POLICY,
        warmup=0,
    )
    assert result.verdict.outcome == "inconclusive"
    # 20 routed plus 40 pinned top-ups per side (each side expected 10 of the 20): all failed to connect.
    assert result.pinned == {"baseline": 40, "candidate": 40}
    assert result.unattributed == 100
    assert any("reached no backend" in r for r in result.verdict.reasons)
    httpx.put(f"{demo.services.router_url}/admin/weights", json={"candidate": 0})


def test_step_drives_routed_load_open_loop_at_the_spec_rate(demo: Demo) -> None:
    import time

    started = time.perf_counter()
    step = run_step(
        demo.router,
        f"{demo.services.router_url}/predict",
        demo.payloads,
        workload="digits-classifier",
        step_pct=50,
        n_requests=200,
        concurrency=4,
        policy=POLICY,
        rate_rps=100.0,
        warmup=0,
    )
    elapsed = time.perf_counter() - started
    routed = sorted(s.ts for s in step.samples)[: step.requests_routed]
    # 200 requests at 100 req/s take about 2 s whatever the backends do (closed loop: ~0.2 s).
    assert elapsed >= 1.9
    assert routed[-1] - routed[0] >= 1.8
    assert step.verdict.baseline.count >= 50 and step.verdict.candidate.count >= 50
