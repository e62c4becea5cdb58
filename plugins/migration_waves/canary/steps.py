"""One canary step end to end, and baseline measurements.

A step sets the router to the step's weight, drives load through the router's proxy, and splits the
samples by the backend that answered (the `x-backend` header: "onprem" vs "cloud" by default). When the
split starves a side below the policy's minimum (the candidate at 5%, the baseline at 100%), that side
is topped up through the same router with the `x-canary-target` pin, so both sides cross the same
proxy path and stay comparable.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from migration_waves.canary.judge import GatePolicy, Metrics, Verdict, judge_step, summarize
from migration_waves.canary.load import Sample, run_load
from migration_waves.canary.router import Router

PIN_HEADER = "x-canary-target"


class BackendNames(BaseModel):
    """The x-backend names of the two sides (configurable per deployment)."""

    baseline: str = "onprem"
    candidate: str = "cloud"


class Split(BaseModel):
    baseline: list[Sample]
    candidate: list[Sample]
    unattributed: list[Sample]  # no backend answered and the router named no target (router down)


def split_by_backend(samples: list[Sample], names: BackendNames | None = None) -> Split:
    """Group samples by the answering backend; fall back to the router's target for backend errors."""
    names = names or BackendNames()
    out = Split(baseline=[], candidate=[], unattributed=[])
    for s in samples:
        if s.backend == names.baseline or (s.backend is None and s.route == "baseline"):
            out.baseline.append(s)
        elif s.backend == names.candidate or (s.backend is None and s.route == "candidate"):
            out.candidate.append(s)
        else:
            out.unattributed.append(s)
    return out


class Measurement(BaseModel):
    """Direct load on one endpoint (for baselines before the canary and acceptance after cutover)."""

    url: str
    metrics: Metrics
    samples: list[Sample]


def measure_endpoint(
    url: str, payloads: list[dict[str, Any]], n: int, concurrency: int, *, timeout_s: float = 5.0
) -> Measurement:
    """POST n payloads to url (the full predict URL) and summarize the latencies and errors."""
    samples = run_load(url, payloads, n_requests=n, concurrency=concurrency, timeout_s=timeout_s)
    return Measurement(url=url, metrics=summarize(samples), samples=samples)


class StepResult(BaseModel):
    """Evidence of one canary step: what was sent, how it split, and the verdict."""

    workload: str
    step_pct: int
    router_weight: int
    requests_routed: int  # requests split by the router's weights
    pinned: dict[str, int]  # extra requests pinned to a side the split starves
    warmup: int  # discarded warm-up requests per side
    unattributed: int
    verdict: Verdict
    samples: list[Sample]

    @property
    def passed(self) -> bool:
        return self.verdict.passed


def plan_top_ups(n_requests: int, step_pct: int, min_samples: int) -> dict[str, int]:
    """Pinned requests each side needs on top of its routed share to reach min_samples."""
    expected = {"baseline": n_requests * (100 - step_pct) // 100, "candidate": n_requests * step_pct // 100}
    return {side: min_samples - got for side, got in expected.items() if got < min_samples}


def run_step(
    router: Router,
    predict_url: str,
    payloads: list[dict[str, Any]],
    *,
    workload: str,
    step_pct: int,
    n_requests: int,
    concurrency: int,
    policy: GatePolicy,
    names: BackendNames | None = None,
    warmup: int = 10,
    timeout_s: float = 5.0,
) -> StepResult:
    """Set the router to step_pct, drive load through predict_url (the router's proxy), judge the split.

    Sends `warmup` pinned requests to each side first (discarded: connection setup and cold code
    paths are not the candidate's steady state), then n_requests routed by weight; a side the weight
    leaves under policy.min_samples (candidate at 5%, baseline at 100%) gets a pinned top-up burst.
    """
    names = names or BackendNames()
    weight = router.set_candidate_weight(step_pct)
    if warmup > 0:
        for side in ("baseline", "candidate"):
            run_load(
                predict_url, payloads, n_requests=warmup, concurrency=min(concurrency, warmup),
                timeout_s=timeout_s, headers={PIN_HEADER: side},
            )  # fmt: skip
    samples = run_load(
        predict_url, payloads, n_requests=n_requests, concurrency=concurrency, timeout_s=timeout_s
    )
    top_ups = plan_top_ups(n_requests, step_pct, policy.min_samples)
    for side, count in top_ups.items():
        # A separate burst at the step's concurrency: the starved side then carries the same load per
        # backend as the routed side did. Pins interleaved with routed traffic would find an idle
        # backend and make the busy side look slow (an A/A test at 100% failed that way).
        samples += run_load(
            predict_url, payloads, n_requests=count, concurrency=concurrency, timeout_s=timeout_s,
            headers={PIN_HEADER: side},
        )  # fmt: skip
    split = split_by_backend(samples, names)
    verdict = judge_step(split.baseline, split.candidate, policy, workload=workload, step_pct=step_pct)
    if split.unattributed:
        first = split.unattributed[0]
        verdict.reasons.append(
            f"workload {workload}, step {step_pct}%: {len(split.unattributed)} requests reached no backend "
            f"(first: {first.error or f'HTTP {first.status}'})"
        )
    return StepResult(
        workload=workload,
        step_pct=step_pct,
        router_weight=weight,
        requests_routed=n_requests,
        pinned=top_ups,
        warmup=warmup,
        unattributed=len(split.unattributed),
        verdict=verdict,
        samples=samples,
    )
