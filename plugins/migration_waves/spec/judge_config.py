"""Judge configuration: one rule per metric (direction, tolerance, what "inconclusive" does).

A leaf module (pydantic only): the wave spec models embed it, and DAG parsing must not pull numpy
or httpx in through the canary package.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MetricName = Literal["p50", "p95", "p99", "error_rate", "throughput", "prometheus"]
Direction = Literal["lower_is_better", "higher_is_better"]
OnInconclusive = Literal["hold", "rollback"]

#: How each built-in metric compares candidate with baseline.
#: ratio: candidate / baseline (latency, throughput); difference: candidate - baseline (rates).
COMPARISON: dict[str, Literal["ratio", "difference"]] = {
    "p50": "ratio",
    "p95": "ratio",
    "p99": "ratio",
    "throughput": "ratio",
    "error_rate": "difference",
}


class PrometheusQuery(BaseModel):
    """An instant query against a Prometheus-compatible `/api/v1/query`.

    With `{side}` in `query` the judge runs it twice (baseline and candidate backend names) and
    compares the two values like any ratio metric; without it, the single value is compared with
    `threshold`.
    """

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Prometheus base URL, e.g. http://127.0.0.1:9090")
    query: str = Field(description='PromQL; "{side}" is replaced by the backend name')
    threshold: float | None = Field(default=None, description="absolute limit when query has no {side}")
    timeout_s: float = Field(default=5.0, gt=0)


class MetricRule(BaseModel):
    """How one metric gates a canary step.

    fail: the candidate is worse than `tolerance` allows AND a one-sided test at the config's alpha
    says it is worse than the baseline at all. pass: within tolerance. Otherwise (worse than the
    tolerance but not significant, too few samples, no data) inconclusive, then `on_inconclusive`.
    """

    model_config = ConfigDict(extra="forbid")

    metric: MetricName
    direction: Direction | None = Field(
        default=None, description="default: higher_is_better for throughput, else lower_is_better"
    )
    tolerance: float = Field(
        description="ratio metrics: the worst acceptable candidate/baseline (1.1 = 10% worse); "
        "error_rate: the largest acceptable increase, absolute (0.01 = one percentage point)",
        ge=0,
    )
    detect: float | None = Field(
        default=None,
        description="the degradation the sample size is planned to catch at the configured power "
        "(ratio, or absolute increase); default: 2.5x the tolerance's excess (1.1 -> 1.25), "
        "twice the tolerance for error_rate",
    )
    min_delta_ms: float = Field(
        default=0.0, ge=0, description="latency: a slower quantile fails only when it grew this many ms"
    )
    on_inconclusive: OnInconclusive = "hold"
    prometheus: PrometheusQuery | None = None

    @model_validator(mode="after")
    def _check(self) -> MetricRule:
        if self.metric == "prometheus" and self.prometheus is None:
            raise ValueError("metric 'prometheus' needs a prometheus: {url, query} block")
        if self.metric != "prometheus" and self.prometheus is not None:
            raise ValueError(f"metric {self.metric!r} takes no prometheus block; use metric: prometheus")
        if self.comparison == "ratio" and self.metric != "prometheus" and self.tolerance < 1:
            raise ValueError(
                f"metric {self.metric}: tolerance {self.tolerance} is a ratio and must be >= 1 "
                "(1.1 allows 10% worse)"
            )
        return self

    @property
    def comparison(self) -> Literal["ratio", "difference"]:
        return COMPARISON.get(self.metric, "ratio")

    @property
    def effective_direction(self) -> Direction:
        if self.direction:
            return self.direction
        return "higher_is_better" if self.metric == "throughput" else "lower_is_better"

    @property
    def effective_detect(self) -> float:
        if self.detect is not None:
            return self.detect
        if self.comparison == "difference":
            return self.tolerance * 2 if self.tolerance > 0 else 0.01
        return 1 + (self.tolerance - 1) * 2.5 if self.tolerance > 1 else 1.25


def default_rules() -> list[MetricRule]:
    """p95 and error rate: the two the targets of a wave name (tuned by `make bench-canary`)."""
    return [
        MetricRule(metric="p95", tolerance=1.1, detect=1.25, min_delta_ms=5.0),
        MetricRule(metric="error_rate", tolerance=0.01, detect=0.02),
    ]


class JudgeConfig(BaseModel):
    """All rules of a gate plus the statistics shared by them."""

    model_config = ConfigDict(extra="forbid")

    rules: list[MetricRule] = Field(default_factory=default_rules)
    alpha: float = Field(default=0.005, gt=0, lt=0.5, description="one-sided significance per metric")
    power: float = Field(default=0.95, gt=0.5, lt=1, description="power the sample size is planned for")
    min_samples: int = Field(default=50, ge=5, description="fewer per side is inconclusive, never pass")
    max_samples: int = Field(default=1200, ge=10, description="cap per side when holding for more data")
    bootstrap_resamples: int = Field(default=400, ge=100)
    seed: int = 20240601
    assumed_log_sigma: float = Field(
        default=0.3, gt=0, description="latency spread (lognormal sigma) assumed when no baseline is known"
    )
    assumed_error_rate: float = Field(default=0.001, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        if not self.rules:
            raise ValueError("rules is empty; name at least one metric, e.g. p95 and error_rate")
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples {self.max_samples} is below min_samples {self.min_samples}")
        return self
