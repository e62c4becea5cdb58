"""Matmul benchmark: real numpy runs on this CPU; GPU images are refused here without running."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from migration_waves.gpu.bench import run_benchmark
from migration_waves.gpu.nvml import NvmlSnapshot
from migration_waves.spec.loader import load_golden_image
from migration_waves.spec.models import BenchmarkBaseline, GoldenImage

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "include" / "golden_images"
FIXTURES = ROOT / "tests" / "fixtures" / "nvml"


def cpu_image(**bench: object) -> GoldenImage:
    base = load_golden_image(IMAGES / "training-cpu-dev.yaml")
    settings = {
        "matmul_size": 256,
        "dtype": "float32",
        "baseline_gflops": 1.0,
        "tolerance": 0.5,
        "repeats": 3,
    }
    settings.update(bench)
    return base.model_copy(update={"benchmark": BenchmarkBaseline.model_validate(settings)})


def test_numpy_benchmark_runs_and_reports_sane_numbers() -> None:
    report = run_benchmark(cpu_image(matmul_size=256, repeats=4, baseline_gflops=0.5))
    assert (report.device, report.backend, report.dtype, report.size) == ("cpu", "numpy", "float32", 256)
    assert len(report.timings_s) == 4 and all(t > 0 for t in report.timings_s)
    assert report.median_s is not None and min(report.timings_s) <= report.median_s <= max(report.timings_s)
    # gflops follows from the measured time, not from a constant
    assert report.gflops == pytest.approx(2 * 256**3 / report.median_s / 1e9)
    # any CPU of the last decade does 0.05..10^5 GFLOP/s on a 256^3 float32 matmul
    assert 0.05 < report.gflops < 1e5
    assert report.ratio == pytest.approx(report.gflops / 0.5)
    assert report.max_abs_error is not None and report.max_abs_error < 1e-3
    assert report.passed and "GFLOP/s" in report.reasons[0] and "training-cpu-dev" in report.reasons[0]
    json.dumps(report.model_dump(mode="json"))


def test_impossible_baseline_fails_with_numbers() -> None:
    report = run_benchmark(cpu_image(baseline_gflops=1e9, tolerance=0.1, matmul_size=128))
    assert not report.passed
    assert report.threshold_gflops == pytest.approx(9e8)
    assert report.ratio is not None and report.ratio < 0.9
    assert "is below the threshold 900,000,000.0 GFLOP/s" in report.reasons[0]


def test_float64_runs_in_float64() -> None:
    report = run_benchmark(cpu_image(dtype="float64", matmul_size=128))
    assert report.dtype == "float64" and report.notes == []
    assert report.max_abs_error is not None and report.max_abs_error < 1e-9


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_on_cpu_falls_back_to_float32_and_says_so(dtype: str) -> None:
    report = run_benchmark(cpu_image(dtype=dtype, matmul_size=128))
    assert (report.requested_dtype, report.dtype) == (dtype, "float32")
    assert any(f"{dtype} is not a fast numpy dtype on CPU" in n for n in report.notes)


def test_gpu_image_without_gpu_fails_without_running() -> None:
    h200 = load_golden_image(IMAGES / "training-h200.yaml")  # 8192^2 bf16: would take minutes on CPU
    started = time.perf_counter()
    report = run_benchmark(h200, snapshot=NvmlSnapshot(available=False, reason="nvmlInit failed: test"))
    assert time.perf_counter() - started < 1.0
    assert not report.passed and report.device is None and report.backend == "none"
    assert report.timings_s == [] and report.gflops is None
    assert (
        "needs a GPU but NVML is unavailable" in report.reasons[0] and "nothing was run" in report.reasons[0]
    )


def test_gpu_image_on_live_snapshot_fails_here() -> None:
    h200 = load_golden_image(IMAGES / "training-h200.yaml")
    report = run_benchmark(h200)  # takes a live snapshot of this worker
    if report.backend == "torch":
        pytest.skip("this worker has a CUDA GPU and torch; the benchmark really ran")
    assert not report.passed and report.timings_s == []


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is not None, reason="torch is installed here; the refusal path differs"
)
def test_gpu_present_but_no_torch_is_refused() -> None:
    h200 = load_golden_image(IMAGES / "training-h200.yaml")
    report = run_benchmark(h200, snapshot=NvmlSnapshot.load(FIXTURES / "h200-healthy.json"))
    assert not report.passed and report.timings_s == []
    assert "needs torch with CUDA" in report.reasons[0] and "hgx-h200-node-01" in report.reasons[0]
