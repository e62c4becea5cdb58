"""`migration-waves gpu ...` and `drill interrupt` argument handling and exit codes, through cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migration_waves.cli import main
from migration_waves.gpu.nvml import NvmlSnapshot
from migration_waves.resilience.cli import local_dir

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "nvml"
H200 = str(ROOT / "include" / "golden_images" / "training-h200.yaml")


def test_gpu_snapshot_writes_a_loadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "snap.json"
    assert main(["gpu", "snapshot", "--out", str(out)]) == 0
    snap = NvmlSnapshot.load(out)
    assert snap.source == "live" and snap.frameworks is not None
    assert f"wrote {out}" in capsys.readouterr().out


def test_gpu_check_recorded_snapshots_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    healthy = str(FIXTURES / "h200-healthy.json")
    assert main(["gpu", "check", "--golden", H200, "--snapshot", healthy, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
    degraded = str(FIXTURES / "h200-degraded.json")
    assert main(["gpu", "check", "--golden", H200, "--snapshot", degraded]) == 1
    text = capsys.readouterr().out
    assert "FAIL gpu[3].throttle:" in text and "FAILED (8 reason(s))" in text


def test_gpu_check_live_on_this_machine_and_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpu = str(ROOT / "include" / "golden_images" / "training-cpu-dev.yaml")
    assert main(["gpu", "check", "--golden", cpu]) == 0  # no GPU needed
    capsys.readouterr()
    assert main(["gpu", "check", "--golden", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_gpu_bench_cpu_suite_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "tiny.yaml"
    image.write_text(
        "name: tiny\npurpose: dev\naccelerator: cpu\n"
        "benchmark: {matmul_size: 64, baseline_gflops: 0.001}\n"
        "suite: {matmul_size: 64, copy_mib: 1, repeats: 1, baselines: {matmul_float32_gflops: 0.001}}\n"
    )
    assert main(["gpu", "bench", "--golden", str(image), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "numpy" and report["passed"]
    assert "| matmul_float32_gflops (GFLOP/s) |" in report["table"]


def test_drill_interrupt_refuses_remote_dirs_and_empty_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert local_dir("file:///tmp/ck") == Path("/tmp/ck")
    assert local_dir("file://localhost/tmp/my%20ck") == Path("/tmp/my ck")
    assert local_dir("relative/ck") == Path("relative/ck")
    with pytest.raises(ValueError, match=r"s3://b/ck: s3:// is not supported; the interruption drill"):
        local_dir("s3://b/ck")
    with pytest.raises(ValueError, match=r"names host 'nas01'"):
        local_dir("file://nas01/ck")
    assert main(["drill", "interrupt", "--checkpoint-dir", "s3://b/ck", "--", "python", "x.py"]) == 2
    assert main(["drill", "interrupt", "--checkpoint-dir", "/tmp/never", "--"]) == 2
    assert "command is empty" in capsys.readouterr().err
