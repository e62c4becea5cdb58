"""Canary core: load generation, synthetic checks, the statistical judge and traffic routers."""

from migration_waves.canary.checks import CheckResult, synthetic_check
from migration_waves.canary.judge import GatePolicy, Metrics, Verdict, judge_step, summarize
from migration_waves.canary.load import Sample, load_payloads, run_load, run_load_async
from migration_waves.canary.router import LocalRouter, RollbackRecord, Router, RouterError, restore_baseline
from migration_waves.canary.steps import (
    BackendNames,
    Measurement,
    StepResult,
    measure_endpoint,
    plan_top_ups,
    run_step,
    split_by_backend,
)

__all__ = [
    "BackendNames",
    "CheckResult",
    "GatePolicy",
    "LocalRouter",
    "Measurement",
    "Metrics",
    "RollbackRecord",
    "Router",
    "RouterError",
    "Sample",
    "StepResult",
    "Verdict",
    "judge_step",
    "load_payloads",
    "measure_endpoint",
    "plan_top_ups",
    "restore_baseline",
    "run_load",
    "run_load_async",
    "run_step",
    "split_by_backend",
    "summarize",
    "synthetic_check",
]
