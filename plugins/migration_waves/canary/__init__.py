"""Canary core: load generation, synthetic checks, the statistical judge and traffic routers.

Names are resolved lazily (PEP 562): `migration_waves.canary.cli` is imported for every
`migration-waves` command, and must not pay for httpx and numpy (about 1.2 s) unless a canary runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CheckResult": "checks",
    "synthetic_check": "checks",
    "GatePolicy": "judge",
    "Metrics": "judge",
    "Verdict": "judge",
    "judge_step": "judge",
    "summarize": "judge",
    "Sample": "load",
    "load_payloads": "load",
    "run_load": "load",
    "run_load_async": "load",
    "LocalRouter": "router",
    "RollbackRecord": "router",
    "Router": "router",
    "RouterError": "router",
    "restore_baseline": "router",
    "BackendNames": "steps",
    "Measurement": "steps",
    "StepResult": "steps",
    "measure_endpoint": "steps",
    "plan_top_ups": "steps",
    "run_step": "steps",
    "split_by_backend": "steps",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
