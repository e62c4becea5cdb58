"""Canary steps judged by the per-metric rules (canary.judge) on the real demo services.

Covers the core step (looks, holding for more samples, rollback when holding gathers nothing) and
the operators over it: the step's evidence, the gate's decision, and time to rollback after a
rejected approval before 100%.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from canary_demo_support import running_services, train_tiny_model
from spec_support import wave_spec, write_spec

from migration_waves.canary import LocalRouter
from migration_waves.canary.config import JudgeConfig, MetricRule
from migration_waves.canary.steps import run_judged_step
from migration_waves.demo.services import DemoServices, start_demo_services

pytestmark = pytest.mark.integration

# Loose latency tolerance (2-core runners jitter by tens of ms), tight error-rate detection: its
# plan needs far more samples than the first look brings, so a healthy step must hold.
RULES = [
    {"metric": "p95", "tolerance": 2.0, "detect": 3.0, "min_delta_ms": 20},
    {"metric": "error_rate", "tolerance": 0.01, "detect": 0.02},
]
CONFIG = JudgeConfig(
    rules=[MetricRule.model_validate(r) for r in RULES], min_samples=40, max_samples=240,
    bootstrap_resamples=200,
)  # fmt: skip


class Demo:
    def __init__(self, services: DemoServices, payloads: list[dict[str, Any]], root: Path) -> None:
        self.services, self.payloads, self.root = services, payloads, root
        self.router = LocalRouter(services.router_url)
        self.ports = tuple(
            int(u.rsplit(":", 1)[1])
            for u in (services.router_url, services.baseline_url, services.candidate_url)
        )

    def set_fault(self, fault: str | None) -> DemoServices:
        return start_demo_services(
            model_dir=self.root / "model", log_dir=self.root / "logs", state_dir=self.root / "state",
            run_dir=self.root / "run", ports=self.ports, fault=fault,
        )  # fmt: skip

    def step(self, pct: int, url: str | None = None, **kwargs: Any) -> Any:
        return run_judged_step(
            self.router, url or f"{self.services.router_url}/predict", self.payloads,
            workload="digits-classifier", step_pct=pct, n_requests=80, concurrency=4,
            config=kwargs.pop("config", CONFIG), **kwargs,
        )  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("judged")
    _, payloads = train_tiny_model(root / "model")
    with running_services(root, root / "model") as services:
        yield Demo(services, payloads, root)


def test_healthy_step_holds_until_the_plan_then_passes(demo: Demo) -> None:
    result = demo.step(50)
    v = result.verdict
    assert v.outcome == "pass" and v.action == "continue", v.reasons
    # First look: 40 per side is far below the error-rate plan (capped at 240): the step held.
    assert result.plan.per_metric["error_rate"] > CONFIG.max_samples and result.plan.capped
    assert len(result.looks) >= 2 and result.looks[0].action == "hold"
    assert result.looks[0].outcome == "inconclusive"
    assert "planned for 95% power" in " ".join(result.looks[0].reasons)
    assert min(v.baseline.count, v.candidate.count) >= CONFIG.max_samples
    assert [look.index for look in result.looks] == list(range(len(result.looks)))
    assert demo.router.get_candidate_weight() == 50


def test_slow_candidate_fails_at_the_first_look(demo: Demo) -> None:
    try:
        assert demo.set_fault("latency").started == ["cloud"]
        result = demo.step(5)
        v = result.verdict
        assert v.outcome == "fail" and v.action == "rollback"
        assert len(result.looks) == 1 and result.pinned == {"candidate": 36}
        assert v.candidate.p50_ms is not None and v.candidate.p50_ms >= 60
        assert result.p95_ratio is not None and result.p95_ratio > 1.5  # +60 ms; load inflates baselines
        assert any("candidate is worse" in r for r in v.reasons)
    finally:
        demo.set_fault(None)


def test_holding_that_gathers_nothing_rolls_back(demo: Demo) -> None:
    result = demo.step(50, url="http://127.0.0.1:9/predict", warmup=0)
    v = result.verdict
    assert v.outcome == "inconclusive" and v.action == "rollback"
    assert len(result.looks) == 2  # the second look added nothing: no endless hold
    assert "holding gathered no new samples" in v.reasons[0]
    assert any("reached no backend" in r for r in v.reasons)


# -- operators over the judged step ---------------------------------------------------------------


@pytest.fixture
def wave(tmp_path: Path, project_root: Path, demo: Demo) -> Path:
    payloads = tmp_path / "payloads.jsonl"
    payloads.write_text("".join(json.dumps(p) + "\n" for p in demo.payloads))
    spec = wave_spec(
        project_root,
        "judged",
        state=tmp_path / "state",
        targets={"rto_minutes": 5, "rpo_minutes": 5, "p95_ms": 250, "error_rate": 0.01},
        sites={"onprem": {"kind": "onprem", "storage": str(tmp_path / "onprem")},
               "cloud": {"kind": "cloud", "storage": str(tmp_path / "cloud")}},
        workloads=[{
            "name": "digits-classifier", "kind": "inference", "golden_image": "inference-cpu-dev",
            "baseline": demo.services.baseline_url, "candidate": demo.services.candidate_url,
            "router": {"kind": "local", "admin": demo.services.router_url}, "payloads": str(payloads),
            "canary": {"steps": [25, 100], "samples_per_step": 80, "concurrency": 4,
                       "judge": {**CONFIG.model_dump(), "max_samples": 120}},
        }],
    )  # fmt: skip
    return write_spec(tmp_path / "judged.yaml", spec)


def _context() -> dict[str, Any]:
    return {"run_id": "manual__judged", "dag": SimpleNamespace(dag_id="wave_judged"), "params": {}}


def _data(spec: Path, name: str, stage: str = "canary") -> dict[str, Any]:
    from migration_waves.evidence.store import EvidenceStore

    rec = EvidenceStore(str(spec.parent / "state"), "judged", "manual__judged").read(stage, name)
    assert rec is not None, name
    return rec["data"]


def test_operators_record_looks_and_the_gate_follows_the_action(wave: Path, demo: Demo) -> None:
    from migration_waves.airflow import operators as ops

    common = {"wave_spec": str(wave), "subject": "digits-classifier"}
    ops.CanaryStepOperator(task_id="step-025", step_pct=25, **common).execute(_context())
    step = _data(wave, "digits-classifier-step-025")
    assert step["judge"] == "rules" and step["outcome"] == "pass" and step["action"] == "continue"
    assert step["looks"] and step["looks"][-1]["candidate_count"] >= 120
    assert step["sample_plan"]["required"] > 0 and step["p95_ratio"] is not None
    assert step["candidate"]["p95_ms"] > 0 and step["baseline"]["error_rate"] == 0.0
    gate = ops.CanaryGateOperator(
        task_id="gate-025", step_pct=25, on_pass="next", on_fail="abort", **common
    ).choose_branch(_context())
    assert gate == "next"
    assert _data(wave, "digits-classifier-gate-025")["looks"] == len(step["looks"])


def test_rejected_approval_records_time_to_rollback(wave: Path, demo: Demo) -> None:
    from migration_waves.airflow import operators as ops
    from migration_waves.airflow.approval import approval_task

    demo.router.set_candidate_weight(50)  # where a canary waiting for approval stands
    approve = approval_task(
        task_id="approve-100", wave="judged", workload="digits-classifier", owner="c", wave_spec=str(wave)
    )
    event = {"chosen_options": ["Reject"], "params_input": {}, "responded_by_user": None,
             "responded_at": datetime.now(UTC)}  # fmt: skip
    approve.execute_complete(_context(), event)  # no downstream tasks here: nothing to skip
    assert _data(wave, "digits-classifier-approval-100")["decision"] == "reject"
    out = ops.RollbackOperator(task_id="restore", wave_spec=str(wave)).execute(_context())
    assert out["evidence"]
    record = _data(wave, "restore", stage="rollback")
    assert record["approval_rejected"] == ["digits-classifier-approval-100"]
    assert 0 < record["time_to_rollback_s"] < 30
    assert "approval rejected" in record["reason"]
    assert demo.router.get_candidate_weight() == 0
