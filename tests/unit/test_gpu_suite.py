"""Benchmark suite: the numpy (CPU) path for real, the torch (GPU) path against a FAKE torch module.

This machine has no GPU and no torch, and no GPU machine was lent: the GPU control flow (dtype
mapping, CUDA-event timing, pinned host buffers, NCCL all-reduce only with more than one GPU, the
bandwidth formulas, soak growth) is exercised with a stand-in whose operations advance a simulated
clock at known rates, so every figure the suite computes has a known right answer.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from migration_waves.gpu.nvml import NvmlSnapshot
from migration_waves.gpu.suite import bus_bandwidth, judge, render_table, run_suite
from migration_waves.spec.loader import load_golden_image
from migration_waves.spec.models import BenchmarkSuite, GoldenImage

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "include" / "golden_images"
FIXTURES = ROOT / "tests" / "fixtures" / "nvml"
MIB = 1024 * 1024


def image(name: str, **suite: Any) -> GoldenImage:
    img = load_golden_image(IMAGES / f"{name}.yaml")
    return img.model_copy(update={"suite": BenchmarkSuite(**suite)}) if suite else img


# -- judging ----------------------------------------------------------------------------------


def test_judge_throughput_ceiling_missing_and_skipped() -> None:
    suite = BenchmarkSuite(
        tolerance=0.2,
        tolerances={"memcpy_gbps": 0.5},
        baselines={"matmul_float32_gflops": 100, "memcpy_gbps": 10, "soak_growth_mib": 8,
                   "h2d_pinned_gbps": 50, "allreduce_busbw_gbps": 300},
    )  # fmt: skip
    measured = {"matmul_float32_gflops": 79.0, "memcpy_gbps": 5.5, "soak_growth_mib": 9.0}
    rows = {r.metric: r for r in judge(suite, measured, {"allreduce_busbw_gbps": "1 GPU"})}
    assert not rows["matmul_float32_gflops"].passed and rows["matmul_float32_gflops"].threshold == 80
    assert rows["memcpy_gbps"].passed and rows["memcpy_gbps"].threshold == 5  # per-metric tolerance
    assert not rows["soak_growth_mib"].passed and "over the ceiling 8.0" in rows["soak_growth_mib"].note
    assert not rows["h2d_pinned_gbps"].passed and rows["h2d_pinned_gbps"].measured is None
    assert rows["allreduce_busbw_gbps"].passed and rows["allreduce_busbw_gbps"].note == "skipped: 1 GPU"
    table = render_table(list(rows.values()))
    assert "| matmul_float32_gflops (GFLOP/s) | 79.0 | 100.0 | >= 80.0 | 0.79 | FAIL |" in table
    assert "| soak_growth_mib (MiB) | 9.0 | 8.0 | <= 8.0 | 1.12 | FAIL |" in table
    assert "| h2d_pinned_gbps (GB/s) | - | 50.0 | >= 40.0 | - | FAIL (not measured) |" in table


def test_bus_bandwidth_follows_nccl_tests() -> None:
    busbw, algbw = bus_bandwidth(10**9, 0.01, 8)
    assert algbw == pytest.approx(100.0) and busbw == pytest.approx(175.0)
    assert bus_bandwidth(10**9, 0.01, 2)[0] == pytest.approx(100.0)


# -- numpy: real runs on this CPU --------------------------------------------------------------


def test_numpy_suite_measures_every_cpu_metric() -> None:
    img = image(
        "training-cpu-dev", matmul_size=128, dtypes=["float32", "float64", "bfloat16"], copy_mib=8,
        repeats=3, soak_s=0.3, baselines={"matmul_float32_gflops": 0.01, "memcpy_gbps": 0.01,
                                          "soak_growth_mib": 256},
    )  # fmt: skip
    report = run_suite(img)
    assert report.backend == "numpy" and report.device == "cpu"
    assert report.passed, report.reasons
    rows = {r.metric: r for r in report.rows}
    assert rows["matmul_float32_gflops"].measured > 0.01 and rows["matmul_float64_gflops"].measured > 0
    assert rows["matmul_float64_gflops"].baseline is None  # informational
    assert (
        rows["matmul_bfloat16_gflops"].measured is None
        and "not a BLAS dtype" in rows["matmul_bfloat16_gflops"].note
    )
    assert rows["memcpy_gbps"].measured > 0.01
    assert 0 <= rows["soak_growth_mib"].measured < 256
    assert rows["h2d_pinned_gbps"].note == "skipped: no GPU in a CPU run"
    assert report.table.count("\n") == len(report.rows) + 1
    json.dumps(report.model_dump(mode="json"))


def test_numpy_suite_fails_an_impossible_baseline_naming_image_and_metric() -> None:
    img = image("inference-cpu-dev", matmul_size=64, copy_mib=1, repeats=1,
                baselines={"matmul_float32_gflops": 1e9})  # fmt: skip
    report = run_suite(img)
    assert not report.passed
    assert len(report.reasons) == 1
    assert report.reasons[0].startswith("golden image inference-cpu-dev on cpu: matmul_float32_gflops ")
    assert "is below 750,000,000.0 (baseline 1,000,000,000.0, tolerance 25%)" in report.reasons[0]


def test_gpu_image_without_gpu_fails_without_running() -> None:
    no_gpu = NvmlSnapshot(available=False, reason="nvmlInit failed: no driver")
    report = run_suite(load_golden_image(IMAGES / "training-h200.yaml"), snapshot=no_gpu)
    assert not report.passed and report.backend == "none" and report.rows == []
    assert "needs a GPU but NVML is unavailable" in report.reasons[0] and "no driver" in report.reasons[0]


def test_gpu_present_but_no_torch_is_refused() -> None:
    report = run_suite(load_golden_image(IMAGES / "training-h200.yaml"),
                       snapshot=NvmlSnapshot.load(FIXTURES / "h200-healthy.json"))  # fmt: skip
    assert not report.passed
    assert (
        "torch with CUDA, which is not importable" in report.reasons[0]
        or "cannot use CUDA" in report.reasons[0]
    )


# -- torch: FAKE module (no GPU, no torch on this machine) ------------------------------------

MATMUL_FLOPS = {"bfloat16": 1e15, "float16": 8e14, "float32": 5e13}  # simulated rates
DEVICE_COPY_BYTES = 4e12  # bytes moved (read + write) per second
H2D, D2H = 50e9, 40e9
ALLREDUCE_ALGBW = 100e9


def fake_torch(gpus: int, *, leak_mib_per_matmul: float = 0.0) -> Any:
    """A stand-in for torch whose operations advance a simulated clock; CUDA events read it."""
    t: Any = types.ModuleType("fake_torch")
    clock = {"ms": 0.0, "allocated": 0}
    t.calls = []
    for name in ("float32", "float64", "float16", "bfloat16", "uint8"):
        setattr(t, name, name)

    def advance(seconds: float) -> None:
        clock["ms"] += seconds * 1000

    class Tensor:
        def __init__(self, nbytes: int, device: str, dtype: str, n: int = 0, pinned: bool = False) -> None:
            self.nbytes, self.device, self.dtype, self.n, self.pinned = nbytes, device, dtype, n, pinned
            self.value = 0.0

        def __matmul__(self, other: Tensor) -> Tensor:
            advance(2 * self.n**3 / MATMUL_FLOPS[self.dtype])
            clock["allocated"] += int(leak_mib_per_matmul * MIB)
            return Tensor(self.nbytes, self.device, self.dtype, self.n)

        def copy_(self, src: Tensor, non_blocking: bool = False) -> Tensor:
            if self.device.startswith("cuda") and src.device.startswith("cuda"):
                advance(2 * self.nbytes / DEVICE_COPY_BYTES)
            else:
                host = src if src.device == "cpu" else self
                assert host.pinned and non_blocking, "host copies must use pinned memory, asynchronously"
                advance(self.nbytes / (H2D if src.device == "cpu" else D2H))
            return self

        def item(self) -> float:
            return self.value

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing
            self.at = 0.0

        def record(self) -> None:
            self.at = clock["ms"]

        def elapsed_time(self, end: Event) -> float:
            return end.at - self.at

    def randn(n: int, m: int, *, device: Any, dtype: str, generator: Any = None) -> Tensor:
        return Tensor(n * m * 2, str(device), dtype, n)

    def empty(nbytes: int, *, dtype: str, device: Any = None, pin_memory: bool = False) -> Tensor:
        return Tensor(nbytes, str(device or "cpu"), dtype, pinned=pin_memory)

    def ones(numel: int, *, dtype: str, device: Any) -> Tensor:
        return Tensor(numel * 4, str(device), dtype)

    def tensor(values: list[float], *, dtype: str, device: Any) -> Tensor:
        out = Tensor(8, str(device), dtype)
        out.value = values[0]
        return out

    class Generator:
        def __init__(self, device: Any = None) -> None:
            pass

        def manual_seed(self, seed: int) -> Generator:
            return self

    t.Tensor, t.randn, t.empty, t.ones, t.tensor, t.Generator = Tensor, randn, empty, ones, tensor, Generator
    t.device = lambda name: name
    t.__version__ = "2.5.1+fake"
    t.version = types.SimpleNamespace(cuda="12.4")
    t.backends = types.SimpleNamespace(
        cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=False))
    )
    t.cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: gpus, get_device_name=lambda d: "NVIDIA H200 (fake)",
        synchronize=lambda d=None: None, Event=Event, memory_allocated=lambda d=None: clock["allocated"],
        set_device=lambda rank: t.calls.append(("set_device", rank)),
    )  # fmt: skip

    def all_reduce(buf: Tensor, op: Any = None) -> None:
        if op is None:
            advance(buf.nbytes / ALLREDUCE_ALGBW)

    def init_process_group(backend: str, *, init_method: str, rank: int, world_size: int) -> None:
        t.calls.append(("init", backend, init_method.rsplit(":", 1)[0], rank, world_size))

    t.distributed = types.SimpleNamespace(
        all_reduce=all_reduce,
        init_process_group=init_process_group,
        ReduceOp=types.SimpleNamespace(MAX="max"),
        destroy_process_group=lambda: t.calls.append(("destroy",)),
    )

    def spawn(fn: Any, *, args: tuple[Any, ...], nprocs: int, join: bool) -> None:
        assert join
        for rank in range(nprocs):  # in-process stand-in for one process per GPU
            fn(rank, *args)

    t.multiprocessing = types.SimpleNamespace(spawn=spawn)
    return t


def _h200(**changes: Any) -> GoldenImage:
    """training-h200 with its baselines and tolerances, at sizes the fake runs quickly."""
    img = load_golden_image(IMAGES / "training-h200.yaml")
    assert img.suite is not None
    small = dict(matmul_size=1024, copy_mib=64, allreduce_mib=64, repeats=3, soak_s=0.05)
    return img.model_copy(update={"suite": img.suite.model_copy(update=small | changes)})


def test_fake_torch_suite_computes_each_figure_from_the_timings() -> None:
    torch = fake_torch(8)
    report = run_suite(_h200(), torch_module=torch)
    assert report.backend == "torch" and report.device == "cuda:0" and report.gpus == 8
    got = {r.metric: r.measured for r in report.rows}
    assert got["matmul_bfloat16_gflops"] == pytest.approx(1e6)
    assert got["matmul_float16_gflops"] == pytest.approx(8e5)
    assert got["matmul_float32_gflops"] == pytest.approx(5e4)
    assert got["memcpy_gbps"] == pytest.approx(4000)
    assert got["h2d_pinned_gbps"] == pytest.approx(50) and got["d2h_pinned_gbps"] == pytest.approx(40)
    assert got["allreduce_busbw_gbps"] == pytest.approx(100 * 2 * 7 / 8)
    assert got["soak_growth_mib"] == 0
    inits = [c for c in torch.calls if c[0] == "init"]
    assert inits == [("init", "nccl", "tcp://127.0.0.1", rank, 8) for rank in range(8)]
    assert ("set_device", 7) in torch.calls and torch.calls.count(("destroy",)) == 8
    assert any("busbw = algbw * 2(8-1)/8" in n for n in report.notes)


def test_fake_torch_single_gpu_skips_allreduce_and_judges_baselines() -> None:
    report = run_suite(_h200(), torch_module=fake_torch(1))
    rows = {r.metric: r for r in report.rows}
    assert rows["allreduce_busbw_gbps"].measured is None and rows["allreduce_busbw_gbps"].passed
    assert "1 GPU on this node" in rows["allreduce_busbw_gbps"].note
    # Against the image's baselines (tolerance 20%, host copies 30%): 5e4 >= 45000*0.8, 40 >= 50*0.7.
    assert rows["matmul_float32_gflops"].threshold == pytest.approx(36000)
    assert rows["d2h_pinned_gbps"].threshold == pytest.approx(35) and rows["d2h_pinned_gbps"].passed
    assert report.passed, report.reasons
    slow = run_suite(_h200(baselines={"matmul_bfloat16_gflops": 2e6}), torch_module=fake_torch(1))
    assert not slow.passed and len(slow.reasons) == 1
    assert "matmul_bfloat16_gflops 1,000,000.0 GFLOP/s is below 1,600,000.0" in slow.reasons[0]


def test_fake_torch_soak_catches_memory_growth() -> None:
    report = run_suite(_h200(dtypes=["bfloat16"]), torch_module=fake_torch(1, leak_mib_per_matmul=1.0))
    soak = next(r for r in report.rows if r.metric == "soak_growth_mib")
    assert soak.measured > 64 and not soak.passed  # the image's ceiling is 64 MiB
    assert any("soak_growth_mib" in r and "over the ceiling 64.0" in r for r in report.reasons)


def test_headline_is_the_benchmark_dtype_row_else_the_first_measured_matmul() -> None:
    gpu = run_suite(_h200(), torch_module=fake_torch(1))  # benchmark dtype: bfloat16
    assert gpu.headline_metric == "matmul_bfloat16_gflops" and gpu.gflops == pytest.approx(1e6)
    assert gpu.baseline_gflops == 700000 and gpu.threshold_gflops == pytest.approx(560000)
    assert gpu.ratio == pytest.approx(1e6 / 7e5)
    cpu = run_suite(image("training-cpu-dev", matmul_size=64, dtypes=["bfloat16", "float64"], copy_mib=1,
                          repeats=1))  # fmt: skip
    assert cpu.headline_metric == "matmul_float64_gflops"  # float32 not in the suite, bfloat16 skipped
    assert cpu.gflops is not None and cpu.baseline_gflops is None and cpu.ratio is None
    none = run_suite(image("training-cpu-dev", matmul_size=64, dtypes=["bfloat16"], copy_mib=1, repeats=1))
    assert none.headline_metric is None and none.gflops is None and none.passed
