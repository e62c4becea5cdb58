"""Benchmark suite of a golden image: matmul per dtype, memory and host-device copies, all-reduce, soak.

Every metric measured is compared with the image's recorded baseline (``GoldenImage.suite``) within
its tolerance, and the whole comparison is a table in the evidence. Two backends:

* **torch** (GPU images): matmul in each dtype on ``cuda:0`` timed with CUDA events; device copy
  bandwidth (``dst.copy_(src)``, counted as read + write, the CUDA ``bandwidthTest`` convention);
  host->device and device->host copies from *pinned* host memory (``pin_memory=True``,
  ``non_blocking=True``); all-reduce bus bandwidth across the node's GPUs with
  ``torch.distributed`` on NCCL, one process per GPU, only when there is more than one GPU
  (``busbw = bytes / t * 2 (n - 1) / n``, the nccl-tests convention); a soak that repeats matmuls
  for ``soak_s`` seconds and reports growth of ``torch.cuda.memory_allocated``.
* **numpy** (CPU images): matmul per dtype (float32/float64; half precision is not a BLAS path in
  numpy, so it is reported as skipped), memcpy bandwidth (``np.copyto``, read + write), and a soak
  that reports growth of the process's resident memory. A CPU worker is shared (other tasks, the
  Airflow runner): the figure is the *best* repeat, the machine's capability (timeit's convention),
  and the median is noted beside it (on the 2-core dev machine, with the e2e wave and other test
  runs beside it, the float32 median fell from ~210 to 8.7 GFLOP/s: OpenBLAS threads contend for
  the cores). GPU figures stay the median: a GPU worker is not shared.

A GPU image on a worker without a GPU or without torch+CUDA fails at once with the reason: a CPU
figure compared with a GPU baseline means nothing. torch is imported only inside the functions that
use it; ``torch_module`` lets tests drive the GPU control flow with a stand-in.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from migration_waves.gpu.nvml import NvmlSnapshot, take_snapshot
from migration_waves.spec.models import BenchmarkSuite, GoldenImage

WARMUP = 2
MIB = 1024 * 1024
#: Soak: a ceiling in MiB, not a throughput; everything else is "higher is better".
CEILING_METRICS = frozenset({"soak_growth_mib"})
UNITS = {"soak_growth_mib": "MiB"} | {
    m: "GFLOP/s"
    for m in (
        "matmul_float64_gflops",
        "matmul_float32_gflops",
        "matmul_float16_gflops",
        "matmul_bfloat16_gflops",
    )
}


class SuiteRow(BaseModel):
    """One metric: measured against its baseline."""

    metric: str
    unit: str
    measured: float | None = Field(description="None when the metric was skipped")
    baseline: float | None = Field(default=None, description="None: no baseline recorded, informational")
    tolerance: float | None = None
    threshold: float | None = Field(default=None, description="pass line: baseline*(1-tol), or the ceiling")
    ratio: float | None = Field(default=None, description="measured / baseline")
    higher_is_better: bool = True
    passed: bool
    note: str = ""


class SuiteReport(BaseModel):
    """The suite of one golden image on one worker."""

    image: str
    hostname: str = Field(default_factory=socket.gethostname)
    backend: Literal["numpy", "torch", "none"]
    device: str | None
    gpus: int = 0
    config: dict[str, Any]
    rows: list[SuiteRow] = Field(default_factory=list)
    table: str = Field(default="", description="the rows as a Markdown table, for the evidence pack")
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    duration_s: float = 0.0
    # The headline: one matmul row (the image's benchmark dtype when measured), in the shape of
    # the single-matmul BenchmarkReport, so the report's summary and XCom keep one figure.
    headline_metric: str | None = None
    gflops: float | None = None
    baseline_gflops: float | None = None
    threshold_gflops: float | None = None
    ratio: float | None = None


def headline(image: GoldenImage, rows: list[SuiteRow]) -> dict[str, Any]:
    """The headline matmul figure of a suite: the row of the image's benchmark dtype if it was
    measured, else the first measured matmul row; empty when no matmul ran."""
    matmuls = [r for r in rows if r.metric.startswith("matmul_") and r.measured is not None]
    if not matmuls:
        return {}
    preferred = f"matmul_{image.benchmark.dtype}_gflops"
    row = next((r for r in matmuls if r.metric == preferred), matmuls[0])
    return {
        "headline_metric": row.metric,
        "gflops": row.measured,
        "baseline_gflops": row.baseline,
        "threshold_gflops": row.threshold,
        "ratio": row.ratio,
    }


def suite_for(image: GoldenImage) -> BenchmarkSuite:
    """The image's suite, or one derived from its single matmul benchmark (sizes only, no baselines
    but the matmul one)."""
    if image.suite is not None:
        return image.suite
    bench = image.benchmark
    return BenchmarkSuite(
        matmul_size=bench.matmul_size,
        dtypes=[bench.dtype],
        repeats=bench.repeats,
        tolerance=bench.tolerance,
        baselines={f"matmul_{bench.dtype}_gflops": bench.baseline_gflops},  # type: ignore[dict-item]
    )


def run_suite(
    image: GoldenImage,
    *,
    snapshot: NvmlSnapshot | None = None,
    backend: Literal["auto", "numpy", "torch"] = "auto",
    torch_module: Any = None,
) -> SuiteReport:
    """Run the image's benchmark suite here and judge every metric against its baseline."""
    started = time.perf_counter()
    suite = suite_for(image)
    config = suite.model_dump(mode="json")
    use = backend if backend != "auto" else ("torch" if image.accelerator == "gpu" else "numpy")
    notes: list[str] = []
    measured: dict[str, float] = {}
    skipped: dict[str, str] = {}
    gpus = 0
    if use == "torch":
        torch = torch_module
        if torch is None:
            snapshot = snapshot if snapshot is not None else take_snapshot(frameworks=False)
            blocker = _gpu_blocker(image, snapshot)
            if blocker:
                return SuiteReport(
                    image=image.name,
                    hostname=snapshot.hostname,
                    backend="none",
                    device=None,
                    config=config,
                    passed=False,
                    reasons=[blocker],
                    duration_s=round(time.perf_counter() - started, 3),
                )
            import torch
        gpus = int(torch.cuda.device_count())
        device = "cuda:0"
        measured, skipped, notes = _torch_suite(torch, suite, gpus)
    else:
        from threadpoolctl import threadpool_limits

        device = "cpu"
        # One BLAS thread: a per-core figure. Multi-threaded OpenBLAS on shared 2-core runners
        # collapses 10-30x when other processes compete (spinning threads); one thread degrades
        # only with its share of a core, so the gate measures the stack, not the neighbours.
        with threadpool_limits(limits=1, user_api="blas"):
            measured, skipped, notes = _numpy_suite(suite)
        notes.append("BLAS limited to 1 thread (per-core figures)")

    rows = judge(suite, measured, skipped)
    reasons = [f"golden image {image.name} on {device}: {r.metric} {r.note}" for r in rows if not r.passed]
    return SuiteReport(
        image=image.name,
        hostname=(snapshot.hostname if snapshot else socket.gethostname()),
        backend="torch" if use == "torch" else "numpy",
        device=device,
        gpus=gpus,
        config=config,
        rows=rows,
        table=render_table(rows),
        passed=not reasons,
        reasons=reasons,
        notes=notes,
        duration_s=round(time.perf_counter() - started, 3),
        **headline(image, rows),
    )


def judge(suite: BenchmarkSuite, measured: dict[str, float], skipped: dict[str, str]) -> list[SuiteRow]:
    """Rows for every measured metric and every baseline; a baseline that was not measured fails
    unless the metric does not apply here (listed in ``skipped`` with why)."""
    rows: list[SuiteRow] = []
    names = list(dict.fromkeys([*measured, *skipped, *suite.baselines]))
    for metric in names:
        unit = UNITS.get(metric, "GB/s")
        baseline = suite.baselines.get(metric)  # type: ignore[call-overload]
        tol = suite.tolerances.get(metric, suite.tolerance)  # type: ignore[call-overload]
        higher = metric not in CEILING_METRICS
        value = measured.get(metric)
        line = None if baseline is None else (baseline * (1 - tol) if higher else baseline)
        if value is None:
            why = skipped.get(metric)
            rows.append(
                SuiteRow(
                    metric=metric,
                    unit=unit,
                    measured=None,
                    baseline=baseline,
                    tolerance=tol,
                    threshold=line,
                    higher_is_better=higher,
                    passed=why is not None,
                    note=f"skipped: {why}" if why else "has a baseline but was not measured",
                )
            )
            continue
        if baseline is None:
            rows.append(
                SuiteRow(
                    metric=metric,
                    unit=unit,
                    measured=value,
                    higher_is_better=higher,
                    passed=True,
                    note="no baseline recorded; informational",
                )
            )
            continue
        if higher:
            threshold = baseline * (1 - tol)
            ok = value >= threshold
            note = (
                f"{value:,.1f} {unit} {'meets' if ok else 'is below'} {threshold:,.1f} "
                f"(baseline {baseline:,.1f}, tolerance {tol:.0%})"
            )
        else:
            threshold = baseline
            ok = value <= threshold
            note = f"{value:,.1f} {unit} {'within' if ok else 'over'} the ceiling {threshold:,.1f}"
        rows.append(
            SuiteRow(
                metric=metric,
                unit=unit,
                measured=value,
                baseline=baseline,
                tolerance=tol if higher else None,
                threshold=threshold,
                ratio=value / baseline if baseline else None,
                higher_is_better=higher,
                passed=ok,
                note=note,
            )
        )
    return rows


def render_table(rows: list[SuiteRow]) -> str:
    """The rows as a Markdown table: metric, measured, baseline, pass line, ratio, verdict."""
    lines = [
        "| metric | measured | baseline | pass line | ratio | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:,.1f}"

        line = (">= " if r.higher_is_better else "<= ") + num(r.threshold) if r.threshold is not None else "-"
        verdict = "pass" if r.passed else "FAIL"
        if r.measured is None:
            verdict = "skipped" if r.passed else "FAIL (not measured)"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        cells = [f"{r.metric} ({r.unit})", num(r.measured), num(r.baseline), line, ratio, verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gpu_blocker(image: GoldenImage, snapshot: NvmlSnapshot) -> str | None:
    if not snapshot.available or not snapshot.devices:
        return (
            f"golden image {image.name} suite needs a GPU but NVML is unavailable on this worker "
            f"({snapshot.hostname}): {snapshot.reason or 'no GPU reported'}; nothing was run"
        )
    try:
        import torch
    except ImportError:
        return (
            f"golden image {image.name} suite needs torch with CUDA, which is not importable on "
            f"{snapshot.hostname}; install the image's torch build; nothing was run"
        )
    if not torch.cuda.is_available():
        return (
            f"golden image {image.name} suite: torch {torch.__version__} cannot use CUDA on "
            f"{snapshot.hostname} although NVML sees {snapshot.device_count} GPU(s); nothing was run"
        )
    return None


# -- numpy (CPU) --------------------------------------------------------------------------------


def _cpu_times_s(fn: Callable[[], object], repeats: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return timings


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) * (1 if sys.platform == "darwin" else 1024)


def _numpy_suite(suite: BenchmarkSuite) -> tuple[dict[str, float], dict[str, str], list[str]]:
    measured: dict[str, float] = {}
    skipped: dict[str, str] = {}
    notes = [f"numpy {np.__version__}"]
    n = suite.matmul_size
    rng = np.random.default_rng(0)
    for dtype in suite.dtypes:
        metric = f"matmul_{dtype}_gflops"
        if dtype in ("float16", "bfloat16"):
            skipped[metric] = f"{dtype} is not a BLAS dtype in numpy on CPU"
            continue
        a = rng.standard_normal((n, n), dtype=np.dtype(dtype))
        b = rng.standard_normal((n, n), dtype=np.dtype(dtype))
        out = np.empty((n, n), dtype=np.dtype(dtype))
        times = _cpu_times_s(lambda a=a, b=b, out=out: np.matmul(a, b, out=out), suite.repeats)
        measured[metric] = 2 * n**3 / min(times) / 1e9
        notes.append(
            f"{metric}: best {measured[metric]:,.1f}, "
            f"median {2 * n**3 / statistics.median(times) / 1e9:,.1f} of {len(times)} repeats"
        )

    nbytes = suite.copy_mib * MIB
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    times = _cpu_times_s(lambda: np.copyto(dst, src), suite.repeats)
    measured["memcpy_gbps"] = 2 * nbytes / min(times) / 1e9  # read + write
    notes.append(
        f"memcpy: {suite.copy_mib} MiB np.copyto, counted as read + write; best "
        f"{measured['memcpy_gbps']:,.1f}, median {2 * nbytes / statistics.median(times) / 1e9:,.1f} GB/s"
    )
    for metric in ("h2d_pinned_gbps", "d2h_pinned_gbps", "allreduce_busbw_gbps"):
        skipped[metric] = "no GPU in a CPU run"

    if suite.soak_s > 0:
        growth, iters = _numpy_soak(suite)
        measured["soak_growth_mib"] = growth
        notes.append(f"soak: {iters} matmuls in {suite.soak_s:g} s, resident memory growth {growth:.1f} MiB")
    return measured, skipped, notes


def _numpy_soak(suite: BenchmarkSuite) -> tuple[float, int]:
    n = min(suite.matmul_size, 1024)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    for _ in range(WARMUP):
        _ = a @ a  # let the allocator settle before the first reading
    before = rss_bytes()
    iters = 0
    until = time.monotonic() + suite.soak_s
    while time.monotonic() < until:
        _ = a @ a
        iters += 1
    return max(rss_bytes() - before, 0) / MIB, iters


# -- torch (GPU) --------------------------------------------------------------------------------


def _cuda_time_s(torch: Any, dev: Any, fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn`` on the current stream, timed with CUDA events (kernels are async)."""
    for _ in range(WARMUP):
        fn()
    torch.cuda.synchronize(dev)
    timings = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(dev)
        timings.append(start.elapsed_time(end) / 1000.0)  # ms -> s
    return statistics.median(timings)


def torch_dtype(torch: Any, name: str) -> Any:
    return {
        "float32": torch.float32,
        "float64": torch.float64,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
    }[name]


def _torch_suite(
    torch: Any, suite: BenchmarkSuite, gpus: int
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    dev = torch.device("cuda:0")
    notes = [
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(dev)}",
        f"{gpus} GPU(s) on this node",
        f"TF32 matmul allowed: {torch.backends.cuda.matmul.allow_tf32}",
    ]
    measured: dict[str, float] = {}
    skipped: dict[str, str] = {}
    n = suite.matmul_size
    gen = torch.Generator(device=dev).manual_seed(0)
    for dtype in suite.dtypes:
        dt = torch_dtype(torch, dtype)
        a = torch.randn(n, n, device=dev, dtype=dt, generator=gen)
        b = torch.randn(n, n, device=dev, dtype=dt, generator=gen)
        t = _cuda_time_s(torch, dev, lambda a=a, b=b: a @ b, suite.repeats)
        measured[f"matmul_{dtype}_gflops"] = 2 * n**3 / t / 1e9
        del a, b

    nbytes = suite.copy_mib * MIB
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    t = _cuda_time_s(torch, dev, lambda: dst.copy_(src), suite.repeats)
    measured["memcpy_gbps"] = 2 * nbytes / t / 1e9  # read + write
    # Pinned (page-locked) host memory: the DMA engines copy it directly, as a data loader does.
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    t = _cuda_time_s(torch, dev, lambda: dst.copy_(host, non_blocking=True), suite.repeats)
    measured["h2d_pinned_gbps"] = nbytes / t / 1e9
    t = _cuda_time_s(torch, dev, lambda: host.copy_(dst, non_blocking=True), suite.repeats)
    measured["d2h_pinned_gbps"] = nbytes / t / 1e9
    notes.append(f"copies: {suite.copy_mib} MiB; device copy counted as read + write, host copies pinned")

    if gpus > 1:
        busbw, algbw = allreduce_busbw(torch, gpus, suite.allreduce_mib * MIB, suite.repeats)
        measured["allreduce_busbw_gbps"] = busbw
        notes.append(
            f"all-reduce: {suite.allreduce_mib} MiB float32 over {gpus} GPUs (NCCL), "
            f"algbw {algbw:,.1f} GB/s, "
            f"busbw = algbw * 2({gpus}-1)/{gpus}"
        )
    else:
        skipped["allreduce_busbw_gbps"] = f"{gpus} GPU on this node; all-reduce needs more than one"

    if suite.soak_s > 0:
        growth, iters = _torch_soak(torch, dev, suite)
        measured["soak_growth_mib"] = growth
        notes.append(f"soak: {iters} matmuls in {suite.soak_s:g} s, memory_allocated growth {growth:.1f} MiB")
    return measured, skipped, notes


def _torch_soak(torch: Any, dev: Any, suite: BenchmarkSuite) -> tuple[float, int]:
    n = min(suite.matmul_size, 4096)
    dt = torch_dtype(torch, suite.dtypes[0])
    a = torch.randn(n, n, device=dev, dtype=dt)
    for _ in range(WARMUP):
        c = a @ a
    torch.cuda.synchronize(dev)
    before = torch.cuda.memory_allocated(dev)
    iters = 0
    until = time.monotonic() + suite.soak_s
    while time.monotonic() < until:
        c = a @ a
        iters += 1
        if iters % 50 == 0:
            torch.cuda.synchronize(dev)  # keep the queue short so the clock means work done
    torch.cuda.synchronize(dev)
    del c
    return max(torch.cuda.memory_allocated(dev) - before, 0) / MIB, iters


def bus_bandwidth(nbytes: int, seconds: float, ranks: int) -> tuple[float, float]:
    """(busbw, algbw) in GB/s of an all-reduce of ``nbytes`` per rank (nccl-tests' definitions)."""
    algbw = nbytes / seconds / 1e9
    return algbw * 2 * (ranks - 1) / ranks, algbw


def allreduce_busbw(torch: Any, ranks: int, nbytes: int, repeats: int) -> tuple[float, float]:
    """All-reduce across ``ranks`` GPUs of this node, one process each (torch.multiprocessing.spawn)."""
    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="mw-allreduce-") as tmp:
        out = Path(tmp) / "rank0.json"
        # A module cannot be pickled to the spawned processes: they import torch themselves. Only a
        # test's stand-in (run in-process by its own spawn) travels as an argument.
        passed_module = None if getattr(torch, "__name__", "") == "torch" else torch
        torch.multiprocessing.spawn(
            _allreduce_worker,
            args=(ranks, port, nbytes, repeats, str(out), passed_module),
            nprocs=ranks,
            join=True,
        )
        seconds = float(json.loads(out.read_text())["median_s"])
    return bus_bandwidth(nbytes, seconds, ranks)


def _allreduce_worker(
    rank: int, ranks: int, port: int, nbytes: int, repeats: int, out: str, torch: Any = None
) -> None:
    """One rank: join the NCCL group on loopback, time all_reduce with CUDA events, rank 0 reports."""
    if torch is None:
        import torch
    dist = torch.distributed
    torch.cuda.set_device(rank)
    dev = torch.device(f"cuda:{rank}")
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=ranks)
    try:
        buf = torch.ones(nbytes // 4, dtype=torch.float32, device=dev)
        seconds = _cuda_time_s(torch, dev, lambda: dist.all_reduce(buf), repeats)
        # Ranks finish at slightly different times; the slowest one is the collective's time.
        t = torch.tensor([seconds], dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if rank == 0:
            Path(out).write_text(json.dumps({"median_s": float(t.item()), "ranks": ranks}))
    finally:
        dist.destroy_process_group()
