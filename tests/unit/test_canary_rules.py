"""The per-metric judge on samples with known distributions (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from migration_waves.canary.config import JudgeConfig, MetricRule
from migration_waves.canary.load import Sample, read_samples, write_samples
from migration_waves.canary.rules import hd_quantile, judge, plan_samples

pytestmark = pytest.mark.unit


def draw(n: int, seed: int, *, scale: float = 1.0, error_rate: float = 0.0, t0: float = 0.0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    lat = 40.0 * scale * rng.lognormal(0.0, 0.3, size=n)
    err = rng.random(n) < error_rate
    return [
        Sample(latency_ms=float(v), status=500 if e else 200, ok=not e, ts=t0 + i * 0.01 if t0 else 0.0)
        for i, (v, e) in enumerate(zip(lat, err, strict=True))
    ]


def test_a_a_with_planned_samples_passes() -> None:
    v = judge(draw(1000, 1, error_rate=0.001), draw(1000, 2, error_rate=0.001))
    assert v.outcome == "pass" and v.action == "continue" and v.exit_code == 0, v.reasons
    p95 = next(m for m in v.metrics if m.metric == "p95")
    assert p95.estimate is not None and 0.9 < p95.estimate < 1.1
    assert p95.ci90 is not None and p95.ci90[0] < p95.estimate < p95.ci90[1]


def test_p95_regression_fails_with_reason() -> None:
    v = judge(draw(300, 3), draw(300, 4, scale=1.25), workload="digits", step_pct=25)
    assert v.outcome == "fail" and v.action == "rollback" and v.exit_code == 1
    p95 = next(m for m in v.metrics if m.metric == "p95")
    assert p95.outcome == "fail" and p95.p_value is not None and p95.p_value < 0.005
    assert "digits" in v.reasons[0] and "25%" in v.reasons[0] and "p95" in v.reasons[0]


def test_too_few_samples_is_inconclusive_never_pass() -> None:
    v = judge(draw(300, 5), draw(20, 6))
    assert v.outcome == "inconclusive" and v.exit_code == 2 and not v.passed
    assert v.action == "hold"
    assert all(m.outcome == "inconclusive" for m in v.metrics)
    assert "20 samples" in v.reasons[1]


def test_within_tolerance_but_below_planned_size_holds() -> None:
    """300 clean samples cannot show that a 2% error rate is absent: the plan asks for ~1000."""
    plan = plan_samples(JudgeConfig())
    assert plan.per_metric["error_rate"] is not None and plan.per_metric["error_rate"] > 300
    v = judge(draw(300, 7), draw(300, 8))
    err = next(m for m in v.metrics if m.metric == "error_rate")
    assert err.outcome == "inconclusive" and "planned" in err.reason
    assert v.outcome == "inconclusive" and v.action == "hold"


def test_inconclusive_policy_rollback_and_cap() -> None:
    cfg = JudgeConfig(rules=[MetricRule(metric="error_rate", tolerance=0.01, on_inconclusive="rollback")])
    assert judge(draw(300, 9), draw(300, 10), cfg).action == "rollback"
    capped = JudgeConfig(max_samples=300)
    v = judge(draw(300, 9), draw(300, 10), capped)
    # At the cap the planned size counts as reached: a clean A/A passes rather than hold forever.
    assert v.outcome == "pass", v.reasons
    short = judge(draw(300, 9), draw(30, 10), capped.model_copy(update={"min_samples": 50}))
    assert short.outcome == "inconclusive" and short.action == "hold"


def test_error_rate_regression_fails_once_significant() -> None:
    base, cand = draw(1200, 11, error_rate=0.001), draw(1200, 12, error_rate=0.03)
    v = judge(base, cand)
    err = next(m for m in v.metrics if m.metric == "error_rate")
    assert err.outcome == "fail" and v.outcome == "fail", v.reasons
    assert err.estimate is not None and err.estimate > 0.01


def test_higher_is_better_throughput() -> None:
    cfg = JudgeConfig(rules=[MetricRule(metric="throughput", tolerance=1.2)], min_samples=50)
    fast, slow = draw(200, 13, t0=1000.0), draw(200, 14, t0=1000.0)
    slow = [s.model_copy(update={"ts": 1000.0 + i * 0.02}) for i, s in enumerate(slow)]  # half the rate
    v = judge(fast, slow, cfg)
    assert v.metrics[0].outcome == "fail" and v.metrics[0].estimate == pytest.approx(0.5, rel=0.1)
    assert judge(fast, fast, cfg).outcome == "pass"
    assert judge(draw(200, 13), draw(200, 14), cfg).outcome == "inconclusive"  # no timestamps: no data


def test_plan_grows_for_smaller_effects_and_flags_the_cap() -> None:
    big = plan_samples(JudgeConfig(rules=[MetricRule(metric="p95", tolerance=1.1, detect=1.5)]))
    small = plan_samples(JudgeConfig(rules=[MetricRule(metric="p95", tolerance=1.1, detect=1.2)]))
    assert big.per_metric["p95"] is not None and small.per_metric["p95"] is not None
    assert small.per_metric["p95"] > 3 * big.per_metric["p95"]
    assert small.capped is (small.required > 1200)
    # From data: a wider baseline needs more samples than a narrow one.
    narrow = [Sample(latency_ms=40 + 0.1 * i % 3, status=200, ok=True) for i in range(300)]
    wide = draw(300, 15, scale=1.0)
    cfg = JudgeConfig(rules=[MetricRule(metric="p95", tolerance=1.1, detect=1.25)])
    assert plan_samples(cfg, narrow).required < plan_samples(cfg, wide).required
    with pytest.raises(ValueError, match="detect"):
        plan_samples(JudgeConfig(rules=[MetricRule(metric="p95", tolerance=1.3, detect=1.2)]))


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="must be >= 1"):
        MetricRule(metric="p95", tolerance=0.9)
    with pytest.raises(ValidationError, match="prometheus"):
        MetricRule(metric="prometheus", tolerance=1.2)
    with pytest.raises(ValidationError, match="rules is empty"):
        JudgeConfig(rules=[])


def test_harrell_davis_matches_the_distribution() -> None:
    x = np.random.default_rng(16).lognormal(0.0, 0.3, size=20000)
    assert hd_quantile(x, 95) == pytest.approx(np.exp(0.3 * 1.6449), rel=0.02)


def test_samples_jsonl_round_trip_and_errors(tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    write_samples(path, draw(5, 17, error_rate=0.5))
    back = read_samples(path)
    assert len(back) == 5 and all(s.ok == (s.status == 200) for s in back)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"latency_ms": 1, "status": 200}\n{"latency_ms": "x"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_samples(bad)


def test_canary_spec_accepts_judge_block_and_defaults_stay_valid(project_root) -> None:
    from migration_waves.spec.loader import load_wave
    from migration_waves.spec.models import CanarySpec

    pilot = load_wave(project_root / "include" / "waves" / "pilot.yaml")
    canary = pilot.inference_workloads[0].canary
    assert canary.judge is None and canary.approve_before_full is False and canary.batch_sizes == [1]
    spec = CanarySpec.model_validate(
        {"judge": {"rules": [{"metric": "p99", "tolerance": 1.3}], "power": 0.9}, "approve_before_full": True}
    )
    assert spec.judge is not None and spec.judge.rules[0].metric == "p99"
    with pytest.raises(ValidationError):
        CanarySpec.model_validate({"judge": {"rules": [{"metric": "p97", "tolerance": 1.3}]}})
