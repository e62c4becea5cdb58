"""GPU stack proof for golden images: NVML snapshot, conformance checks, matmul benchmark, benchmark suite.

pynvml and torch are imported only inside the functions that need them. The names below load
lazily (PEP 562), so `migration-waves gpu ...` argument parsing does not import numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BenchmarkReport": "migration_waves.gpu.bench",
    "run_benchmark": "migration_waves.gpu.bench",
    "ConformanceCheck": "migration_waves.gpu.conformance",
    "ConformanceReport": "migration_waves.gpu.conformance",
    "check_conformance": "migration_waves.gpu.conformance",
    "GpuDevice": "migration_waves.gpu.nvml",
    "NvmlSnapshot": "migration_waves.gpu.nvml",
    "take_snapshot": "migration_waves.gpu.nvml",
    "SuiteReport": "migration_waves.gpu.suite",
    "run_suite": "migration_waves.gpu.suite",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'migration_waves.gpu' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
