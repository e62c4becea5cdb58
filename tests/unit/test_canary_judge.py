"""The canary judge on synthetic sample lists with known distributions (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from migration_waves.canary import GatePolicy, Sample, judge_step, summarize
from migration_waves.canary.steps import BackendNames, plan_top_ups, split_by_backend

pytestmark = pytest.mark.unit

POLICY = GatePolicy(p95_ratio_max=1.2, error_rate_max=0.01, min_samples=50)


def lognormal_samples(n: int, median_ms: float, seed: int, *, error_every: int = 0) -> list[Sample]:
    """Right-skewed latencies like a real service; every `error_every`-th request is a 500."""
    rng = np.random.default_rng(seed)
    lat = median_ms * rng.lognormal(mean=0.0, sigma=0.35, size=n)
    return [
        Sample(
            latency_ms=float(v),
            status=500 if error_every and i % error_every == 0 else 200,
            ok=not (error_every and i % error_every == 0),
            backend="x",
            ts=1000.0 + i * 0.01,
        )
        for i, v in enumerate(lat)
    ]


def test_too_few_samples_is_inconclusive_never_pass() -> None:
    verdict = judge_step(
        lognormal_samples(300, 10, 1), lognormal_samples(20, 10, 2), POLICY, workload="digits", step_pct=5
    )
    assert verdict.outcome == "inconclusive"
    assert not verdict.passed
    assert (
        "digits" in verdict.reasons[0] and "5%" in verdict.reasons[0] and "20 samples" in verdict.reasons[0]
    )


def test_a_a_passes() -> None:
    verdict = judge_step(
        lognormal_samples(300, 10, 11), lognormal_samples(300, 10, 12), POLICY, workload="digits", step_pct=50
    )
    assert verdict.outcome == "pass", verdict.reasons
    assert verdict.passed
    assert verdict.p95_ratio is not None and 0.8 < verdict.p95_ratio < 1.2
    low, high = verdict.p95_ratio_ci90 or (0, 0)
    assert low < verdict.p95_ratio < high
    assert verdict.mannwhitney_p is not None and verdict.mannwhitney_p > 0.05


def test_fifty_percent_slower_candidate_fails() -> None:
    verdict = judge_step(
        lognormal_samples(300, 10, 21), lognormal_samples(300, 15, 22), POLICY, workload="digits", step_pct=25
    )
    assert verdict.outcome == "fail"
    assert verdict.p95_ratio is not None and verdict.p95_ratio > 1.3
    assert verdict.mannwhitney_p is not None and verdict.mannwhitney_p < 1e-6
    assert "slower" in verdict.reasons[0] and "digits" in verdict.reasons[0] and "25%" in verdict.reasons[0]
    # The evidence serialises for the evidence store, `passed` included.
    dumped = verdict.model_dump(mode="json")
    assert dumped["passed"] is False and dumped["outcome"] == "fail"


def test_high_error_rate_fails_even_when_fast() -> None:
    verdict = judge_step(
        lognormal_samples(300, 10, 31),
        lognormal_samples(300, 8, 32, error_every=10),  # 10% errors, faster than baseline
        POLICY,
        workload="digits",
        step_pct=50,
    )
    assert verdict.outcome == "fail"
    assert verdict.candidate.error_rate == pytest.approx(0.1)
    assert "error rate 10.00%" in verdict.reasons[0]


def test_ratio_over_limit_without_significance_passes() -> None:
    """A higher p95 from a few outliers is not a shift of the distribution: no fail without evidence."""
    base = lognormal_samples(200, 10, 41)
    cand = lognormal_samples(200, 10, 41)  # same draws ...
    cand = cand[:-12] + [
        s.model_copy(update={"latency_ms": 100.0}) for s in cand[-12:]
    ]  # ... plus a slow tail
    verdict = judge_step(base, cand, POLICY, workload="digits", step_pct=50)
    assert verdict.p95_ratio is not None and verdict.p95_ratio > POLICY.p95_ratio_max
    assert verdict.mannwhitney_p is not None and verdict.mannwhitney_p > 0.05
    assert verdict.outcome == "pass"
    assert any("not significant" in r for r in verdict.reasons)


def test_bootstrap_interval_is_reproducible() -> None:
    a, b = lognormal_samples(200, 10, 51), lognormal_samples(200, 12, 52)
    first = judge_step(a, b, POLICY, workload="w", step_pct=5).p95_ratio_ci90
    second = judge_step(a, b, POLICY, workload="w", step_pct=5).p95_ratio_ci90
    assert first == second


def test_summarize_counts_errors_and_throughput() -> None:
    samples = [Sample(latency_ms=float(i + 1), status=200, ok=True, ts=100.0 + i * 0.1) for i in range(100)]
    samples.append(Sample(latency_ms=5000.0, status=0, ok=False, ts=110.0, error="ConnectError"))
    m = summarize(samples)
    assert (m.count, m.ok_count, m.error_count) == (101, 100, 1)
    # Percentiles over successful requests: the 5 s timeout does not drag p99 up.
    assert m.p50_ms == pytest.approx(50.5) and m.p99_ms is not None and m.p99_ms < 101
    assert m.throughput_rps == pytest.approx(101 / 15.0)
    assert summarize([]).p95_ms is None


def test_split_by_backend_uses_names_and_router_target() -> None:
    s = [
        Sample(latency_ms=1, status=200, ok=True, backend="dc"),
        Sample(latency_ms=1, status=200, ok=True, backend="gcp"),
        Sample(latency_ms=1, status=502, ok=False, route="candidate"),  # candidate down: still counts for it
        Sample(latency_ms=1, status=0, ok=False),  # router unreachable
    ]
    split = split_by_backend(s, BackendNames(baseline="dc", candidate="gcp"))
    assert (len(split.baseline), len(split.candidate), len(split.unattributed)) == (1, 2, 1)


def test_plan_top_ups() -> None:
    assert plan_top_ups(300, 5, 50) == {"candidate": 35}
    assert plan_top_ups(300, 100, 50) == {"baseline": 50}
    assert plan_top_ups(300, 50, 50) == {}
