"""GPU stack proof for golden images: NVML snapshot, conformance checks, matmul benchmark.

pynvml and torch are imported only inside the functions that need them.
"""

from migration_waves.gpu.bench import BenchmarkReport, run_benchmark
from migration_waves.gpu.conformance import ConformanceCheck, ConformanceReport, check_conformance
from migration_waves.gpu.nvml import GpuDevice, NvmlSnapshot, take_snapshot

__all__ = [
    "BenchmarkReport",
    "ConformanceCheck",
    "ConformanceReport",
    "GpuDevice",
    "NvmlSnapshot",
    "check_conformance",
    "run_benchmark",
    "take_snapshot",
]
