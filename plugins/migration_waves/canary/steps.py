"""One canary step end to end, and baseline measurements.

A step sets the router to the step's weight, drives load through the router's proxy, and splits the
samples by the backend that answered (the `x-backend` header: "onprem" vs "cloud" by default). When the
split starves a side below the policy's minimum (the candidate at 5%, the baseline at 100%), that side
is topped up through the same router with the `x-canary-target` pin, so both sides cross the same
proxy path and stay comparable.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from migration_waves.canary.judge import GatePolicy, Metrics, Verdict, judge_step, summarize
from migration_waves.canary.load import Sample, run_load, run_open_loop
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


def drive_load(
    url: str,
    payloads: list[dict[str, Any]],
    *,
    n_requests: int,
    concurrency: int,
    timeout_s: float,
    rate_rps: float | None = None,
    batch_sizes: list[int] | None = None,
) -> list[Sample]:
    """The step's routed traffic as the spec asks: open loop at rate_rps and/or in batches, else
    closed loop at `concurrency` (the fastest way to collect samples)."""
    if rate_rps is None and (not batch_sizes or batch_sizes == [1]):
        return run_load(url, payloads, n_requests=n_requests, concurrency=concurrency, timeout_s=timeout_s)
    return run_open_loop(
        url, payloads, rate_rps=rate_rps, n_requests=n_requests, concurrency=concurrency,
        batch_sizes=batch_sizes, timeout_s=timeout_s,
    ).samples  # fmt: skip


def _warm_up(
    url: str, payloads: list[dict[str, Any]], *, warmup: int, concurrency: int, timeout_s: float
) -> None:
    """Pinned requests to each side, discarded: connection setup and cold code paths are not steady state."""
    for side in ("baseline", "candidate") if warmup > 0 else ():
        run_load(url, payloads, n_requests=warmup, concurrency=min(concurrency, warmup), timeout_s=timeout_s,
                 headers={PIN_HEADER: side})  # fmt: skip


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
    rate_rps: float | None = None,
    batch_sizes: list[int] | None = None,
) -> StepResult:
    """Set the router to step_pct, drive load through predict_url (the router's proxy), judge the split.

    Sends `warmup` pinned requests to each side first (discarded: connection setup and cold code
    paths are not the candidate's steady state), then n_requests routed by weight; a side the weight
    leaves under policy.min_samples (candidate at 5%, baseline at 100%) gets a pinned top-up burst.
    """
    names = names or BackendNames()
    weight = router.set_candidate_weight(step_pct)
    _warm_up(predict_url, payloads, warmup=warmup, concurrency=concurrency, timeout_s=timeout_s)
    samples = drive_load(
        predict_url, payloads, n_requests=n_requests, concurrency=concurrency, timeout_s=timeout_s,
        rate_rps=rate_rps, batch_sizes=batch_sizes,
    )  # fmt: skip
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


# -- steps judged by the per-metric rules (canary.judge) ------------------------------------------


class Look(BaseModel):
    """One look of a judged step: the samples the judge saw and what it said."""

    index: int
    baseline_count: int
    candidate_count: int
    routed: int  # requests routed by weight in this look
    pinned: dict[str, int]  # requests pinned to a side in this look
    target_per_side: int  # samples per side this look topped the sides up to
    outcome: str
    action: str
    elapsed_s: float
    reasons: list[str]


class JudgedStepResult(BaseModel):
    """Evidence of one canary step judged by the rules: every look, the sample plan, the verdict."""

    workload: str
    step_pct: int
    router_weight: int
    requests_routed: int
    pinned: dict[str, int]  # totals over all looks
    warmup: int
    unattributed: int
    looks: list[Look]
    plan: Any  # rules.SamplePlan (Any: steps must not import scipy-backed rules at module import)
    verdict: Any  # rules.JudgeVerdict
    samples: list[Sample]

    @property
    def passed(self) -> bool:
        return bool(self.verdict.passed)

    @property
    def p95_ratio(self) -> float | None:
        """The p95 rule's ratio when there is one, else candidate p95 / baseline p95."""
        for m in self.verdict.metrics:
            if m.metric == "p95" and m.estimate is not None:
                return float(m.estimate)
        b, c = self.verdict.baseline.p95_ms, self.verdict.candidate.p95_ms
        return c / b if b and c is not None else None


def run_judged_step(
    router: Router,
    predict_url: str,
    payloads: list[dict[str, Any]],
    *,
    workload: str,
    step_pct: int,
    n_requests: int,
    concurrency: int,
    config: Any,
    names: BackendNames | None = None,
    warmup: int = 10,
    timeout_s: float = 5.0,
    rate_rps: float | None = None,
    batch_sizes: list[int] | None = None,
) -> JudgedStepResult:
    """Like run_step, judged by the per-metric rules of `config` (a JudgeConfig), holding for more data.

    First look: n_requests routed by weight, each side topped up (pinned) to min_samples; the judge
    decides. While it says "hold" (a rule is inconclusive and its policy is to hold), the weight stays
    and another look collects n_requests routed plus top-ups to the plan's sample size (from the
    baseline's own spread once known), growing by at least min_samples per look, up to max_samples.
    A look that adds nothing to the smaller side (backends unreachable) ends the holding: inconclusive
    then rolls back, it never passes.
    """
    from migration_waves.canary.rules import judge, plan_samples

    names = names or BackendNames()
    weight = router.set_candidate_weight(step_pct)
    _warm_up(predict_url, payloads, warmup=warmup, concurrency=concurrency, timeout_s=timeout_s)
    samples: list[Sample] = []
    looks: list[Look] = []
    pinned_total: dict[str, int] = {}
    routed_total = 0
    target = config.min_samples
    plan = plan_samples(config)
    smallest_before = -1
    while True:
        started = time.perf_counter()
        samples += drive_load(
            predict_url, payloads, n_requests=n_requests, concurrency=concurrency, timeout_s=timeout_s,
            rate_rps=rate_rps, batch_sizes=batch_sizes,
        )  # fmt: skip
        routed_total += n_requests
        split = split_by_backend(samples, names)
        pinned: dict[str, int] = {}
        for side in ("baseline", "candidate"):
            missing = target - len(getattr(split, side))
            if missing > 0:
                # A separate burst at the step's concurrency, as in run_step.
                samples += run_load(
                    predict_url, payloads, n_requests=missing, concurrency=concurrency,
                    timeout_s=timeout_s, headers={PIN_HEADER: side},
                )  # fmt: skip
                pinned[side] = missing
                pinned_total[side] = pinned_total.get(side, 0) + missing
        split = split_by_backend(samples, names)
        if len(split.baseline) >= config.min_samples:
            plan = plan_samples(config, split.baseline)  # the baseline's measured spread
        verdict = judge(
            split.baseline, split.candidate, config, workload=workload, step_pct=step_pct,
            names=(names.baseline, names.candidate), plan=plan,
        )  # fmt: skip
        smallest = min(len(split.baseline), len(split.candidate))
        looks.append(
            Look(
                index=len(looks), baseline_count=len(split.baseline), candidate_count=len(split.candidate),
                routed=n_requests, pinned=pinned, target_per_side=target, outcome=verdict.outcome,
                action=verdict.action, elapsed_s=round(time.perf_counter() - started, 3),
                reasons=verdict.reasons[:3],
            )
        )  # fmt: skip
        if verdict.action != "hold":
            break
        if smallest <= smallest_before:
            verdict = verdict.model_copy(
                update={
                    "action": "rollback",
                    "reasons": [
                        f"workload {workload}, step {step_pct}%: holding gathered no new samples "
                        f"({smallest} per side after look {len(looks)}); inconclusive rolls back",
                        *verdict.reasons,
                    ],
                }
            )
            break
        smallest_before = smallest
        target = min(config.max_samples, max(plan.required, smallest + config.min_samples))
    if split.unattributed:
        first = split.unattributed[0]
        verdict.reasons.append(
            f"workload {workload}, step {step_pct}%: {len(split.unattributed)} requests reached no backend "
            f"(first: {first.error or f'HTTP {first.status}'})"
        )
    return JudgedStepResult(
        workload=workload, step_pct=step_pct, router_weight=weight, requests_routed=routed_total,
        pinned=pinned_total, warmup=warmup, unattributed=len(split.unattributed), looks=looks,
        plan=plan, verdict=verdict, samples=samples,
    )  # fmt: skip
