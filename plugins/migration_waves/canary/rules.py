"""The per-metric canary judge: each rule passes, fails or is inconclusive; the step follows the worst.

Ratio metrics (latency quantiles) are compared on the log scale: the standard error of
log(q_candidate / q_baseline) comes from a seeded bootstrap, and the one-sided p-value of "the
candidate is worse at all" from the normal approximation. Error rates use a one-sided Fisher exact
test. A rule fails only when the estimate is beyond its tolerance AND significant at `alpha`; beyond
the tolerance without significance is inconclusive (hold for more samples, or roll back, as the rule
says). Too few samples or missing data is inconclusive, never a pass.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, computed_field

from migration_waves.canary.config import JudgeConfig, MetricRule
from migration_waves.canary.judge import Metrics, summarize
from migration_waves.canary.load import Sample

Outcome = Literal["pass", "fail", "inconclusive"]
Action = Literal["continue", "hold", "rollback"]
_QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
_N = NormalDist()


class MetricVerdict(BaseModel):
    """One rule's decision with the figures behind it."""

    metric: str
    outcome: Outcome
    comparison: Literal["ratio", "difference", "threshold"]
    baseline: float | None = None
    candidate: float | None = None
    estimate: float | None = None  # candidate/baseline, candidate-baseline, or the value itself
    ci90: tuple[float, float] | None = None
    p_value: float | None = None
    tolerance: float
    on_inconclusive: Literal["hold", "rollback"]
    reason: str


class SamplePlan(BaseModel):
    """Samples per side each rule needs to catch its `detect` degradation at the configured power."""

    alpha: float
    power: float
    per_metric: dict[str, int | None]  # None: no sample-based test (throughput, prometheus)
    required: int  # the largest of them, at least min_samples
    capped: bool  # the requirement exceeds max_samples: the gate cannot reach the planned power
    basis: str  # what the latency spread came from
    reasons: list[str]


class JudgeVerdict(BaseModel):
    """The step's decision: fail if any rule fails; inconclusive if any is; pass only if all pass."""

    workload: str
    step_pct: int
    outcome: Outcome
    action: Action
    metrics: list[MetricVerdict]
    baseline: Metrics
    candidate: Metrics
    plan: SamplePlan | None = None
    reasons: list[str]
    config: JudgeConfig = Field(repr=False)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    @property
    def exit_code(self) -> int:
        """CLI convention: 0 pass, 1 fail, 2 inconclusive."""
        return {"pass": 0, "fail": 1, "inconclusive": 2}[self.outcome]


# -- statistics -----------------------------------------------------------------------------------


def _ok_latencies(samples: list[Sample]) -> np.ndarray:
    return np.array([s.latency_ms for s in samples if s.ok], dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _hd_weights(n: int, q: float) -> np.ndarray:
    """Harrell-Davis weights: the quantile as a Beta-weighted mean of all order statistics.

    Less variance than one or two order statistics (np.percentile), so more power per sample.
    """
    from scipy.special import betainc

    p = q / 100
    a, b = p * (n + 1), (1 - p) * (n + 1)
    edges = betainc(a, b, np.arange(n + 1) / n)
    return np.diff(edges)


def hd_quantile(x: np.ndarray, q: float) -> float:
    """Harrell-Davis estimate of the q-th percentile of x."""
    return float(np.sort(x) @ _hd_weights(x.size, q))


def _bootstrap_log_quantiles(x: np.ndarray, q: float, resamples: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    values = np.sort(x[idx], axis=1) @ _hd_weights(x.size, q)
    return np.log(np.maximum(values, 1e-9))


def _sf(z: float) -> float:
    """One-sided p-value: P(Z > z)."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def _quantile_rule(
    rule: MetricRule, b: np.ndarray, c: np.ndarray, cfg: JudgeConfig, where: str
) -> MetricVerdict:
    q = _QUANTILES[rule.metric]
    base = dict(metric=rule.metric, comparison="ratio", tolerance=rule.tolerance,
                on_inconclusive=rule.on_inconclusive)  # fmt: skip
    if b.size < 2 or c.size < 2:
        return MetricVerdict(
            **base, outcome="inconclusive",
            reason=f"{where}: {rule.metric} not comparable: {b.size} baseline and {c.size} candidate "
            "successful requests",
        )  # fmt: skip
    qb, qc = hd_quantile(b, q), hd_quantile(c, q)
    rng = np.random.default_rng(cfg.seed)
    lb = _bootstrap_log_quantiles(b, q, cfg.bootstrap_resamples, rng)
    lc = _bootstrap_log_quantiles(c, q, cfg.bootstrap_resamples, rng)
    diffs = lc - lb
    est = math.log(max(qc, 1e-9)) - math.log(max(qb, 1e-9))
    se = float(diffs.std(ddof=1)) or 1e-12
    lo, hi = (float(math.exp(v)) for v in np.percentile(diffs, [5, 95]))
    worse_sign = 1.0 if rule.effective_direction == "lower_is_better" else -1.0
    p_value = _sf(worse_sign * est / se)
    ratio = math.exp(est)
    beyond = ratio > rule.tolerance if worse_sign > 0 else ratio < 1 / rule.tolerance
    delta = qc - qb
    text = (
        f"{rule.metric} candidate {qc:.1f} ms vs baseline {qb:.1f} ms (ratio {ratio:.3f}, 90% CI "
        f"{lo:.3f}-{hi:.3f}, tolerance {rule.tolerance:g}, one-sided p={p_value:.3g})"
    )
    vals = dict(baseline=qb, candidate=qc, estimate=ratio, ci90=(lo, hi), p_value=p_value)
    if beyond and p_value < cfg.alpha and abs(delta) >= rule.min_delta_ms:
        return MetricVerdict(**base, **vals, outcome="fail", reason=f"{where}: candidate is worse: {text}")
    if beyond and p_value < cfg.alpha:
        return MetricVerdict(
            **base, **vals, outcome="pass",
            reason=f"{where}: {text}; only {delta:.1f} ms apart (< {rule.min_delta_ms:g} ms floor)",
        )  # fmt: skip
    if beyond:
        return MetricVerdict(
            **base, **vals, outcome="inconclusive",
            reason=f"{where}: beyond tolerance but not significant at alpha {cfg.alpha:g}: {text}",
        )  # fmt: skip
    return MetricVerdict(**base, **vals, outcome="pass", reason=f"{where}: within tolerance: {text}")


def _error_rule(rule: MetricRule, b_m: Metrics, c_m: Metrics, cfg: JudgeConfig, where: str) -> MetricVerdict:
    from scipy.stats import fisher_exact

    kb, nb, kc, nc = b_m.error_count, b_m.count, c_m.error_count, c_m.count
    pb, pc = kb / nb, kc / nc
    diff = pc - pb
    # Agresti-Caffo interval: stays sensible with zero errors on a side.
    tb, tc = (kb + 1) / (nb + 2), (kc + 1) / (nc + 2)
    se = math.sqrt(tb * (1 - tb) / (nb + 2) + tc * (1 - tc) / (nc + 2))
    z90 = _N.inv_cdf(0.95)
    ci = (tc - tb - z90 * se, tc - tb + z90 * se)
    lower = rule.effective_direction == "lower_is_better"
    alternative = "greater" if lower else "less"
    p_value = float(fisher_exact([[kc, nc - kc], [kb, nb - kb]], alternative=alternative).pvalue)
    beyond = diff > rule.tolerance if lower else -diff > rule.tolerance
    text = (
        f"error rate candidate {pc:.2%} ({kc}/{nc}) vs baseline {pb:.2%} ({kb}/{nb}) "
        f"(difference {diff:+.2%}, tolerance {rule.tolerance:.2%}, Fisher one-sided p={p_value:.3g})"
    )
    vals = dict(
        metric=rule.metric, comparison="difference", tolerance=rule.tolerance,
        on_inconclusive=rule.on_inconclusive, baseline=pb, candidate=pc, estimate=diff, ci90=ci,
        p_value=p_value,
    )  # fmt: skip
    if beyond and p_value < cfg.alpha:
        return MetricVerdict(**vals, outcome="fail", reason=f"{where}: candidate fails more: {text}")
    if beyond:
        return MetricVerdict(
            **vals, outcome="inconclusive",
            reason=f"{where}: beyond tolerance but not significant at alpha {cfg.alpha:g}: {text}",
        )  # fmt: skip
    return MetricVerdict(**vals, outcome="pass", reason=f"{where}: within tolerance: {text}")


def _ratio_no_test(
    rule: MetricRule, vb: float | None, vc: float | None, where: str, label: str
) -> MetricVerdict:
    """Single values on each side (throughput, a Prometheus query): no test, the tolerance decides."""
    base = dict(metric=rule.metric, comparison="ratio", tolerance=rule.tolerance,
                on_inconclusive=rule.on_inconclusive, baseline=vb, candidate=vc)  # fmt: skip
    if vb is None or vc is None or vb <= 0:
        return MetricVerdict(
            **base, outcome="inconclusive",
            reason=f"{where}: {label}: missing data (baseline {vb}, candidate {vc}); not a pass",
        )  # fmt: skip
    ratio = vc / vb
    lower = rule.effective_direction == "lower_is_better"
    beyond = ratio > rule.tolerance if lower else ratio < 1 / rule.tolerance
    text = (
        f"{label} candidate {vc:.4g} vs baseline {vb:.4g} (ratio {ratio:.3f}, tolerance {rule.tolerance:g})"
    )
    return MetricVerdict(
        **base, estimate=ratio, outcome="fail" if beyond else "pass",
        reason=f"{where}: {'candidate is worse' if beyond else 'within tolerance'}: {text}",
    )  # fmt: skip


def _prometheus_rule(rule: MetricRule, names: tuple[str, str], where: str) -> MetricVerdict:
    from migration_waves.canary.prometheus import PrometheusError, instant_query

    prom = rule.prometheus
    assert prom is not None  # the model validator guarantees it
    label = f"prometheus {prom.query!r}"
    try:
        if "{side}" in prom.query:
            vb, vc = (
                instant_query(prom.url, prom.query.replace("{side}", n), timeout_s=prom.timeout_s)
                for n in names
            )
            return _ratio_no_test(rule, vb, vc, where, label)
        value = instant_query(prom.url, prom.query, timeout_s=prom.timeout_s)
    except PrometheusError as exc:
        return MetricVerdict(
            metric=rule.metric, comparison="ratio", tolerance=rule.tolerance,
            on_inconclusive=rule.on_inconclusive, outcome="inconclusive",
            reason=f"{where}: {label}: no data ({exc}); not a pass",
        )  # fmt: skip
    limit = prom.threshold if prom.threshold is not None else rule.tolerance
    base = dict(metric=rule.metric, comparison="threshold", tolerance=limit,
                on_inconclusive=rule.on_inconclusive, candidate=value, estimate=value)  # fmt: skip
    if value is None:
        return MetricVerdict(
            **base, outcome="inconclusive", reason=f"{where}: {label}: empty result; not a pass"
        )
    lower = rule.effective_direction == "lower_is_better"
    beyond = value > limit if lower else value < limit
    return MetricVerdict(
        **base, outcome="fail" if beyond else "pass",
        reason=f"{where}: {label} = {value:.4g} ({'beyond' if beyond else 'within'} limit {limit:g})",
    )  # fmt: skip


# -- sample size ----------------------------------------------------------------------------------


def plan_samples(config: JudgeConfig, baseline: list[Sample] | None = None) -> SamplePlan:
    """Samples per side needed for each rule to catch its `detect` degradation at `power`.

    Latency quantiles: n = 2 s^2 max((z_a + z_b) / ln R, z_b / (ln R - ln T))^2, where s is the
    per-sample spread of the log quantile (bootstrap of the baseline when given, else a lognormal
    with the assumed sigma), R the ratio to detect and T the tolerance: both the significance test
    and "beyond tolerance" must trigger. Error rate: the one-sided two-proportion formula, and the
    same "beyond tolerance" term.
    """
    za, zb = _N.inv_cdf(1 - config.alpha), _N.inv_cdf(config.power)
    lat = _ok_latencies(baseline or [])
    use_data = lat.size >= config.min_samples
    rng = np.random.default_rng(config.seed)
    per: dict[str, int | None] = {}
    reasons: list[str] = []
    for rule in config.rules:
        detect = rule.effective_detect
        if rule.metric in _QUANTILES:
            q = _QUANTILES[rule.metric]
            if use_data:
                s = float(_bootstrap_log_quantiles(lat, q, config.bootstrap_resamples, rng).std(ddof=1))
                s *= math.sqrt(lat.size)
            else:
                p = q / 100
                s = math.sqrt(p * (1 - p)) / _N.pdf(_N.inv_cdf(p)) * config.assumed_log_sigma
            lr, lt = math.log(detect), math.log(rule.tolerance)
            if lr <= lt:
                raise ValueError(
                    f"metric {rule.metric}: detect {detect} must be beyond tolerance {rule.tolerance}"
                )
            factor = max((za + zb) / lr, zb / (lr - lt))
            per[rule.metric] = math.ceil(2 * s * s * factor * factor)
            reasons.append(
                f"{rule.metric}: {per[rule.metric]} per side to catch ratio {detect:g} "
                f"(tolerance {rule.tolerance:g})"
            )
        elif rule.metric == "error_rate":
            b_err = sum(not s.ok for s in baseline or [])
            p0 = b_err / len(baseline) if baseline and len(baseline) >= config.min_samples else None
            p0 = max(p0 if p0 is not None else config.assumed_error_rate, 1e-4)
            p1 = min(p0 + detect, 0.999)
            if detect <= rule.tolerance:
                raise ValueError(
                    f"metric error_rate: detect {detect} must be beyond tolerance {rule.tolerance}"
                )
            pbar = (p0 + p1) / 2
            n_test = (
                za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
            ) ** 2 / (p1 - p0) ** 2
            n_tol = zb**2 * (p0 * (1 - p0) + p1 * (1 - p1)) / (detect - rule.tolerance) ** 2
            per[rule.metric] = math.ceil(max(n_test, n_tol))
            reasons.append(
                f"error_rate: {per[rule.metric]} per side to catch {p0:.2%} -> {p1:.2%} "
                f"(tolerance +{rule.tolerance:.2%})"
            )
        else:
            per[rule.metric] = None
    sized = [n for n in per.values() if n is not None]
    required = max([config.min_samples, *sized])
    capped = required > config.max_samples
    if capped:
        reasons.append(
            f"needs {required} per side, over max_samples {config.max_samples}: the gate cannot reach "
            f"{config.power:.0%} power; raise max_samples or detect"
        )
    basis = (
        f"baseline spread from {lat.size} samples"
        if use_data
        else f"assumed lognormal sigma {config.assumed_log_sigma:g}"
    )
    return SamplePlan(
        alpha=config.alpha, power=config.power, per_metric=per, required=required, capped=capped,
        basis=basis, reasons=reasons,
    )  # fmt: skip


# -- the judge ------------------------------------------------------------------------------------


def judge(
    baseline: list[Sample],
    candidate: list[Sample],
    config: JudgeConfig | None = None,
    *,
    workload: str = "workload",
    step_pct: int = 0,
    names: tuple[str, str] = ("onprem", "cloud"),
    plan: SamplePlan | None = None,
) -> JudgeVerdict:
    """Judge candidate vs baseline under every rule; `names` are the backend names Prometheus sees."""
    cfg = config or JudgeConfig()
    b_m, c_m = summarize(baseline), summarize(candidate)
    where = f"workload {workload}, step {step_pct}%"
    short = [
        f"{side} has {m.count} samples (< {cfg.min_samples})"
        for side, m in (("baseline", b_m), ("candidate", c_m))
        if m.count < cfg.min_samples
    ]
    b_lat, c_lat = _ok_latencies(baseline), _ok_latencies(candidate)
    verdicts: list[MetricVerdict] = []
    for rule in cfg.rules:
        if rule.metric == "prometheus":
            verdicts.append(_prometheus_rule(rule, names, where))
        elif short:
            verdicts.append(
                MetricVerdict(
                    metric=rule.metric,
                    comparison=rule.comparison,
                    tolerance=rule.tolerance,
                    on_inconclusive=rule.on_inconclusive,
                    outcome="inconclusive",
                    reason=f"{where}: {rule.metric}: too few samples: {'; '.join(short)}",
                )
            )
        elif rule.metric in _QUANTILES:
            verdicts.append(_quantile_rule(rule, b_lat, c_lat, cfg, where))
        elif rule.metric == "error_rate":
            verdicts.append(_error_rule(rule, b_m, c_m, cfg, where))
        else:  # throughput
            verdicts.append(_ratio_no_test(rule, b_m.throughput_rps, c_m.throughput_rps, where, "throughput"))
    smallest = min(b_m.count, c_m.count)
    if not short:
        # A pass needs the planned sample size: "within tolerance so far" on fewer samples than
        # the power calculation asks for is not evidence that a `detect`-sized regression is absent.
        plan = plan or plan_samples(cfg, baseline)
        for i, v in enumerate(verdicts):
            need = plan.per_metric.get(v.metric)
            target = min(need, cfg.max_samples) if need is not None else 0
            if v.outcome == "pass" and smallest < target:
                verdicts[i] = v.model_copy(
                    update={
                        "outcome": "inconclusive",
                        "reason": f"{v.reason}; but {smallest} samples per side < {target} "
                        f"planned for {cfg.power:.0%} power",
                    }
                )
    failed = [v for v in verdicts if v.outcome == "fail"]
    unsure = [v for v in verdicts if v.outcome == "inconclusive"]
    if failed:
        outcome, action = "fail", "rollback"
    elif unsure:
        outcome = "inconclusive"
        can_hold = all(v.on_inconclusive == "hold" for v in unsure) and smallest < cfg.max_samples
        action = "hold" if can_hold else "rollback"
    else:
        outcome, action = "pass", "continue"
    order = {"fail": 0, "inconclusive": 1, "pass": 2}
    reasons = [v.reason for v in sorted(verdicts, key=lambda v: order[v.outcome])]
    if outcome == "inconclusive":
        why = (
            f"hold: collect more samples (have {smallest} per side, cap {cfg.max_samples})"
            if action == "hold"
            else "roll back: "
            + (
                f"sample cap {cfg.max_samples} reached"
                if smallest >= cfg.max_samples
                else "a rule says inconclusive means roll back"
            )
        )
        reasons.insert(0, f"{where}: inconclusive ({', '.join(v.metric for v in unsure)}); {why}")
    return JudgeVerdict(
        workload=workload, step_pct=step_pct, outcome=outcome, action=action, metrics=verdicts,
        baseline=b_m, candidate=c_m, plan=plan, reasons=reasons, config=cfg,
    )  # fmt: skip


def config_for(canary: Any) -> JudgeConfig:
    """The judge config of a wave spec's canary block: its `judge`, else rules from the legacy fields."""
    if canary.judge is not None:
        return canary.judge
    return JudgeConfig(
        min_samples=canary.min_samples,
        rules=[
            MetricRule(metric="p95", tolerance=canary.p95_ratio_max, min_delta_ms=canary.p95_min_delta_ms),
            MetricRule(metric="error_rate", tolerance=canary.error_rate_max),
        ],
    )
