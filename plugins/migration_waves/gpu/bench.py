"""Matmul benchmark of a golden image against its recorded baseline.

GPU images run a torch matmul on cuda:0 in the image's dtype (synchronised, warmed up, median of
repeats). CPU images run a numpy matmul. A GPU image on a worker without a GPU, or without torch
built with CUDA, fails at once with the reason: a CPU number compared with a GPU baseline means
nothing.
"""

from __future__ import annotations

import socket
import statistics
import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from migration_waves.gpu.nvml import NvmlSnapshot, take_snapshot
from migration_waves.spec.models import GoldenImage

WARMUP = 2


class BenchmarkReport(BaseModel):
    """Measured matmul throughput of one golden image on one worker versus its baseline."""

    image: str
    hostname: str = Field(default_factory=socket.gethostname)
    device: str | None = Field(description="'cpu', 'cuda:0', or None when nothing ran")
    backend: Literal["numpy", "torch", "none"]
    requested_dtype: str
    dtype: str | None = Field(description="dtype actually used")
    size: int
    repeats: int
    warmup: int
    timings_s: list[float] = Field(default_factory=list, description="seconds per repeat")
    median_s: float | None = None
    gflops: float | None = Field(default=None, description="2*n^3 / median time / 1e9")
    baseline_gflops: float
    tolerance: float
    threshold_gflops: float = Field(description="baseline * (1 - tolerance)")
    ratio: float | None = Field(default=None, description="gflops / baseline")
    max_abs_error: float | None = Field(default=None, description="spot check of the product against float64")
    passed: bool
    reasons: list[str]
    notes: list[str] = Field(default_factory=list)


def run_benchmark(image: GoldenImage, *, snapshot: NvmlSnapshot | None = None) -> BenchmarkReport:
    """Run the image's matmul benchmark here and compare it with the image's baseline."""
    bench = image.benchmark
    common: dict[str, Any] = {
        "image": image.name,
        "requested_dtype": bench.dtype,
        "size": bench.matmul_size,
        "repeats": bench.repeats,
        "warmup": WARMUP,
        "baseline_gflops": bench.baseline_gflops,
        "tolerance": bench.tolerance,
        "threshold_gflops": bench.baseline_gflops * (1 - bench.tolerance),
    }

    if image.accelerator == "gpu":
        snapshot = snapshot if snapshot is not None else take_snapshot()
        common["hostname"] = snapshot.hostname
        blocker = _gpu_blocker(image, snapshot)
        if blocker:
            return BenchmarkReport(
                **common, device=None, backend="none", dtype=None, passed=False, reasons=[blocker]
            )
        timings, used_dtype, err, notes = _torch_matmul(bench.matmul_size, bench.dtype, bench.repeats)
        device, backend = "cuda:0", "torch"
    else:
        notes = []
        used_dtype = bench.dtype
        if bench.dtype in ("float16", "bfloat16"):
            # numpy has no bfloat16 and its float16 matmul is not a BLAS path: it would measure the
            # wrong thing, so measure float32 and say so.
            used_dtype = "float32"
            notes.append(f"{bench.dtype} is not a fast numpy dtype on CPU; measured float32 instead")
        from threadpoolctl import threadpool_limits

        # One BLAS thread: see gpu/suite.py (stable per-core figure on shared runners).
        with threadpool_limits(limits=1, user_api="blas"):
            timings, err = _numpy_matmul(bench.matmul_size, used_dtype, bench.repeats)
        device, backend = "cpu", "numpy"

    median = statistics.median(timings)
    gflops = 2 * bench.matmul_size**3 / median / 1e9
    threshold = common["threshold_gflops"]
    passed = gflops >= threshold
    verdict = "meets" if passed else "is below"
    reasons = [
        f"golden image {image.name} on {device}: {bench.matmul_size}x{bench.matmul_size} {used_dtype} matmul "
        f"ran at {gflops:,.1f} GFLOP/s (median of {bench.repeats}), {verdict} the threshold "
        f"{threshold:,.1f} GFLOP/s (baseline {bench.baseline_gflops:,.1f}, "
        f"tolerance {bench.tolerance:.0%})"
    ]
    # A wrong product is not a fast product: the spot check guards against a broken BLAS/driver.
    limit = _error_limit(used_dtype, bench.matmul_size)
    if err > limit:
        passed = False
        reasons.append(
            f"golden image {image.name} on {device}: matmul result is wrong (max error {err:.3g} "
            f"against float64 > {limit:.3g}); check the BLAS/CUDA libraries of the image"
        )
    return BenchmarkReport(
        **common,
        device=device,
        backend=backend,
        dtype=used_dtype,
        timings_s=timings,
        median_s=median,
        gflops=gflops,
        ratio=gflops / bench.baseline_gflops,
        max_abs_error=err,
        passed=passed,
        reasons=reasons,
        notes=notes,
    )


def _gpu_blocker(image: GoldenImage, snapshot: NvmlSnapshot) -> str | None:
    """Why a GPU benchmark cannot run here, or None when it can."""
    if not snapshot.available or not snapshot.devices:
        why = snapshot.reason or "no GPU reported"
        return (
            f"golden image {image.name} benchmark needs a GPU but NVML is unavailable on this worker "
            f"({snapshot.hostname}): {why}; nothing was run"
        )
    try:
        import torch
    except ImportError:
        return (
            f"golden image {image.name} benchmark needs torch with CUDA, which is not importable on "
            f"{snapshot.hostname}; install the image's torch build; nothing was run"
        )
    if not torch.cuda.is_available():
        return (
            f"golden image {image.name} benchmark: torch {torch.__version__} cannot use CUDA on "
            f"{snapshot.hostname} although NVML sees {snapshot.device_count} GPU(s); nothing was run"
        )
    return None


def _numpy_matmul(n: int, dtype: str, repeats: int) -> tuple[list[float], float]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.dtype(dtype))
    b = rng.standard_normal((n, n), dtype=np.dtype(dtype))
    out = np.empty((n, n), dtype=np.dtype(dtype))
    for _ in range(WARMUP):
        np.matmul(a, b, out=out)
    timings: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        timings.append(time.perf_counter() - start)
    return timings, _spot_error(a, b, out)


def _spot_error(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """Max abs error of a few entries of c = a @ b against a float64 recomputation."""
    n = a.shape[0]
    idx = np.random.default_rng(1).integers(0, n, size=(8, 2))
    errs = [
        abs(float(c[i, j]) - float(a[i, :].astype(np.float64) @ b[:, j].astype(np.float64))) for i, j in idx
    ]
    return max(errs)


def _error_limit(dtype: str, n: int) -> float:
    """Largest tolerated spot-check error: entries of a product of standard normals are ~sqrt(n).

    Relative limits are loose enough for fp32 accumulation (and TF32 on GPUs) yet far below the
    ~100% error of a garbage result.
    """
    relative = {"float64": 1e-8, "float32": 1e-2, "float16": 5e-2, "bfloat16": 1e-1}[dtype]
    return relative * n**0.5


def _torch_matmul(n: int, dtype: str, repeats: int) -> tuple[list[float], str, float, list[str]]:
    import torch

    dev = torch.device("cuda:0")
    dt = {
        "float32": torch.float32,
        "float64": torch.float64,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
    }[dtype]
    notes = [
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(dev)}",
        f"TF32 matmul allowed: {torch.backends.cuda.matmul.allow_tf32}",
    ]
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=dt, generator=gen)
    b = torch.randn(n, n, device=dev, dtype=dt, generator=gen)
    for _ in range(WARMUP):
        c = a @ b
    torch.cuda.synchronize(dev)
    timings: list[float] = []
    for _ in range(repeats):
        # CUDA kernels are asynchronous: time with events on the stream, then wait for them.
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        c = a @ b
        end.record()
        torch.cuda.synchronize(dev)
        timings.append(start.elapsed_time(end) / 1000.0)
    idx = torch.randint(0, n, (8, 2), generator=torch.Generator().manual_seed(1))
    err = 0.0
    for i, j in idx.tolist():
        ref = float(a[i, :].double() @ b[:, j].double())
        err = max(err, abs(float(c[i, j]) - ref))
    return timings, dtype, err, notes
