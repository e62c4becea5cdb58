"""Judge configuration (defined with the spec models, which embed it; re-exported here)."""

from migration_waves.spec.judge_config import (
    COMPARISON,
    Direction,
    JudgeConfig,
    MetricName,
    MetricRule,
    OnInconclusive,
    PrometheusQuery,
    default_rules,
)

__all__ = [
    "COMPARISON",
    "Direction",
    "JudgeConfig",
    "MetricName",
    "MetricRule",
    "OnInconclusive",
    "PrometheusQuery",
    "default_rules",
]
