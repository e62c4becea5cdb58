"""The canary judge: does the candidate serve as fast and as reliably as the baseline?

Latency gate = effect size AND evidence: the candidate fails only when its p95 exceeds the baseline's
by more than the allowed ratio and a one-sided Mann-Whitney U test says it is slower (p < 0.05), so
neither noise on a busy host nor a tiny-but-significant shift fails a healthy step. A bootstrap 90%
interval of the p95 ratio is reported as evidence of how sure the ratio is.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, computed_field

from migration_waves.canary.load import Sample

Outcome = Literal["pass", "fail", "inconclusive"]
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240601


class GatePolicy(BaseModel):
    """Thresholds of one canary gate."""

    p95_ratio_max: float = Field(default=1.2, gt=0)
    error_rate_max: float = Field(default=0.01, ge=0, le=1)
    min_samples: int = Field(default=50, ge=1)
    # Practical significance: a ratio over the limit fails only when the p95 also grew by at least
    # this many milliseconds. At single-digit-ms latencies a 1 ms jitter is a 1.5x "ratio".
    p95_min_delta_ms: float = Field(default=5.0, ge=0)


class Metrics(BaseModel):
    """Summary of one side's samples. Latency percentiles are over successful requests only."""

    count: int
    ok_count: int
    error_count: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    throughput_rps: float | None = None  # requests per second over the samples' wall-clock span


class Verdict(BaseModel):
    """The judge's decision on one canary step of one workload."""

    workload: str
    step_pct: int
    outcome: Outcome
    reasons: list[str]
    policy: GatePolicy
    baseline: Metrics
    candidate: Metrics
    p95_ratio: float | None = None
    p95_ratio_ci90: tuple[float, float] | None = None
    mannwhitney_p: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def summarize(samples: list[Sample]) -> Metrics:
    """Count, error rate, p50/p95/p99/mean latency and throughput of a list of samples."""
    count = len(samples)
    ok = np.array([s.latency_ms for s in samples if s.ok], dtype=np.float64)
    errors = count - ok.size
    p50 = p95 = p99 = mean = None
    if ok.size:
        p50, p95, p99 = (float(v) for v in np.percentile(ok, [50, 95, 99]))
        mean = float(ok.mean())
    throughput = None
    timed = [s for s in samples if s.ts > 0]
    if len(timed) >= 2:
        start = min(s.ts for s in timed)
        end = max(s.ts + s.latency_ms / 1000 for s in timed)
        if end > start:
            throughput = len(timed) / (end - start)
    return Metrics(
        count=count,
        ok_count=int(ok.size),
        error_count=errors,
        error_rate=errors / count if count else 0.0,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=mean,
        throughput_rps=throughput,
    )


def _bootstrap_p95_ratio(
    baseline: np.ndarray,
    candidate: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """90% percentile-bootstrap interval of p95(candidate) / p95(baseline)."""
    rng = np.random.default_rng(seed)
    b = baseline[rng.integers(0, baseline.size, size=(resamples, baseline.size))]
    c = candidate[rng.integers(0, candidate.size, size=(resamples, candidate.size))]
    b95 = np.percentile(b, 95, axis=1)
    c95 = np.percentile(c, 95, axis=1)
    ratios = c95 / np.maximum(b95, 1e-9)
    low, high = np.percentile(ratios, [5, 95])
    return float(low), float(high)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} ms"


def judge_step(
    baseline: list[Sample],
    candidate: list[Sample],
    policy: GatePolicy,
    *,
    workload: str,
    step_pct: int,
) -> Verdict:
    """Judge one canary step: "inconclusive" with too few samples, "fail" on errors or a slower candidate."""
    b_m, c_m = summarize(baseline), summarize(candidate)
    where = f"workload {workload}, step {step_pct}%"
    verdict = Verdict(
        workload=workload,
        step_pct=step_pct,
        outcome="pass",
        reasons=[],
        policy=policy,
        baseline=b_m,
        candidate=c_m,
    )
    short = [
        f"{side} has {m.count} samples (< {policy.min_samples})"
        for side, m in (("baseline", b_m), ("candidate", c_m))
        if m.count < policy.min_samples
    ]
    if short:
        verdict.outcome = "inconclusive"
        verdict.reasons.append(f"{where}: too few samples to judge: {'; '.join(short)}; send more traffic")
        return verdict

    failures: list[str] = []
    if c_m.error_rate > policy.error_rate_max:
        failures.append(
            f"{where}: candidate error rate {c_m.error_rate:.2%} ({c_m.error_count}/{c_m.count}) exceeds "
            f"{policy.error_rate_max:.2%} (baseline {b_m.error_rate:.2%})"
        )

    b_lat = np.array([s.latency_ms for s in baseline if s.ok], dtype=np.float64)
    c_lat = np.array([s.latency_ms for s in candidate if s.ok], dtype=np.float64)
    if b_lat.size >= 2 and c_lat.size >= 2 and b_m.p95_ms is not None and c_m.p95_ms is not None:
        from scipy.stats import mannwhitneyu

        ratio = c_m.p95_ms / max(b_m.p95_ms, 1e-9)
        # alternative="greater": is the candidate's latency distribution shifted upwards?
        p_value = float(mannwhitneyu(c_lat, b_lat, alternative="greater").pvalue)
        verdict.p95_ratio, verdict.mannwhitney_p = ratio, p_value
        verdict.p95_ratio_ci90 = _bootstrap_p95_ratio(b_lat, c_lat)
        lat = (
            f"candidate p95 {_fmt(c_m.p95_ms)} vs baseline {_fmt(b_m.p95_ms)} (ratio {ratio:.2f}, 90% CI "
            f"{verdict.p95_ratio_ci90[0]:.2f}-{verdict.p95_ratio_ci90[1]:.2f}, "
            f"limit {policy.p95_ratio_max:.2f}; "
            f"Mann-Whitney one-sided p={p_value:.3g})"
        )
        delta = c_m.p95_ms - b_m.p95_ms
        if ratio > policy.p95_ratio_max and p_value < ALPHA and delta >= policy.p95_min_delta_ms:
            failures.append(f"{where}: candidate is slower: {lat}")
        elif ratio > policy.p95_ratio_max and p_value < ALPHA:
            verdict.reasons.append(
                f"{where}: p95 ratio above the limit but only {delta:.1f} ms slower "
                f"(< {policy.p95_min_delta_ms:g} ms floor): {lat}"
            )
        elif ratio > policy.p95_ratio_max:
            verdict.reasons.append(f"{where}: p95 ratio above the limit but not significant: {lat}")
        else:
            verdict.reasons.append(f"{where}: latency within limits: {lat}")
    else:
        # Every request failed on a side: the error-rate rule decides; note why latency was skipped.
        verdict.reasons.append(
            f"{where}: latency not compared: {b_lat.size} baseline and {c_lat.size} candidate "
            "successful requests"
        )
        if c_lat.size < 2 and not failures:
            failures.append(
                f"{where}: candidate answered {c_lat.size} requests successfully; cannot judge latency"
            )

    if failures:
        verdict.outcome = "fail"
        verdict.reasons = failures + verdict.reasons
    else:
        verdict.reasons.insert(
            0,
            f"{where}: pass: candidate error rate {c_m.error_rate:.2%} (limit {policy.error_rate_max:.2%}) "
            f"over {c_m.count} candidate and {b_m.count} baseline samples",
        )
    return verdict
