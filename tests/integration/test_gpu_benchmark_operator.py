"""GpuBenchmarkOperator as a worker runs it: the suite for an image with `suite:`, the single matmul
for one without, a GPU image refused on this GPU-less machine; then the report's GPU section.

Real numpy runs on this CPU (small sizes); the evidence store, report and acceptance read real files.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from spec_support import wave_spec, write_spec

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-12-03T10:00:00+00:00"


@pytest.fixture
def gpu_wave(tmp_path: Path, project_root: Path) -> Path:
    """A wave whose three workloads name: a CPU image with a suite, one without, and the H200 image."""
    images = tmp_path / "images"
    images.mkdir()
    src = project_root / "include" / "golden_images"
    dev = yaml.safe_load((src / "training-cpu-dev.yaml").read_text())
    # Small and quick. This test is about the wiring, not the CPU's speed: under contention a
    # multi-threaded OpenBLAS 128x128 matmul measured 0.1 GFLOP/s here, so the matmul baselines are
    # set far below anything a working BLAS does, with a 99% tolerance.
    dev["suite"].update(matmul_size=128, copy_mib=4, repeats=2, soak_s=0.2, tolerance=0.99)
    dev["suite"]["baselines"].update(matmul_float32_gflops=2.0, matmul_float64_gflops=1.0)
    (images / "training-cpu-dev.yaml").write_text(yaml.safe_dump(dev))
    plain = yaml.safe_load((src / "inference-cpu-dev.yaml").read_text())
    plain.pop("suite")
    plain["benchmark"].update(matmul_size=128, repeats=2, baseline_gflops=0.01)
    (images / "inference-cpu-dev.yaml").write_text(yaml.safe_dump(plain))
    (images / "training-h200.yaml").write_text((src / "training-h200.yaml").read_text())
    train = {"kind": "training", "command": ["python", "-c", "pass"], "checkpoint": "onprem:ckpt/"}
    spec = wave_spec(
        project_root,
        "gpus",
        state=tmp_path / "state",
        golden_images=images,
        sites={
            "onprem": {"kind": "onprem", "storage": str(tmp_path / "onprem")},
            "cloud": {"kind": "cloud", "storage": str(tmp_path / "cloud")},
        },
        workloads=[
            {"name": "trainer", "golden_image": "training-cpu-dev", **train},
            {"name": "plain", "golden_image": "inference-cpu-dev", **train},
            {"name": "big", "golden_image": "training-h200", **train},
        ],
    )
    return write_spec(tmp_path / "gpus.yaml", spec)


def _bench(spec: Path, image: str) -> dict[str, Any]:
    from migration_waves.airflow import operators as ops

    op = ops.GpuBenchmarkOperator(task_id=f"bench-{image}", wave_spec=str(spec), subject=image)
    context = {"run_id": RUN_ID, "dag": SimpleNamespace(dag_id="wave_gpus"), "params": {}}
    return op.execute(context)


def test_suite_table_reaches_evidence_report_and_acceptance(gpu_wave: Path) -> None:
    from migration_waves.airflow.operators import WaveGateFailed
    from migration_waves.evidence.report import build_evidence_pack
    from migration_waves.evidence.store import EvidenceStore
    from migration_waves.gates.acceptance import evaluate_acceptance
    from migration_waves.spec.loader import load_wave

    spec = load_wave(gpu_wave)
    store = EvidenceStore(spec.state_root(), spec.wave, RUN_ID)

    summary = _bench(gpu_wave, "training-cpu-dev")
    assert summary["passed"] is True and summary["gflops"] > 0  # headline in the XCom summary
    suite = store.read("gpu", "training-cpu-dev-benchmark")["data"]
    rows = {r["metric"]: r for r in suite["rows"]}
    assert set(rows) >= {"matmul_float32_gflops", "matmul_float64_gflops", "memcpy_gbps", "soak_growth_mib"}
    assert suite["headline_metric"] == "matmul_float32_gflops"  # the image's benchmark dtype
    assert suite["gflops"] == rows["matmul_float32_gflops"]["measured"]
    assert suite["ratio"] == pytest.approx(suite["gflops"] / 2.0)
    assert suite["threshold_gflops"] == pytest.approx(2.0 * (1 - 0.99))
    assert suite["table"].startswith("| metric | measured | baseline |")
    assert "| memcpy_gbps (GB/s) |" in suite["table"]

    plain = _bench(gpu_wave, "inference-cpu-dev")  # no suite: the single matmul, as before
    record = store.read("gpu", "inference-cpu-dev-benchmark")["data"]
    assert plain["passed"] and "rows" not in record and record["backend"] == "numpy"
    assert record["max_abs_error"] is not None

    with pytest.raises(WaveGateFailed, match=r"training-h200 suite needs a GPU but NVML is unavailable"):
        _bench(gpu_wave, "training-h200")
    assert store.read("gpu", "training-h200-benchmark")["data"]["backend"] == "none"

    # A conformance pass plus the suite record are what acceptance reads for a golden image.
    store.write("gpu", "training-cpu-dev-conformance", {"passed": True, "checks": []})
    store.write("gpu", "training-cpu-dev-nvml", {"available": False, "devices": []})
    checks = evaluate_acceptance(spec, store.records())
    text = repr(checks)
    assert "golden image training-cpu-dev: conformance True, benchmark True" in text
    assert "golden image training-h200: conformance None, benchmark False" in text

    pack = build_evidence_pack(store, spec, outcome={"state": "success"})
    assert pack.section_errors == []
    html = Path(pack.report_html).read_text()
    gpu = html[html.index('id="gpu"') : html.index('id="resilience"')]
    assert "training-cpu-dev-nvml" not in gpu  # the raw snapshot is not a result of its own
    assert "<code>matmul_float32_gflops</code>" in gpu
    assert gpu.count("<th>benchmark</th>") == 1  # one suite table: the plain image has no rows
    measured = f"{rows['memcpy_gbps']['measured']:,.1f}".rstrip("0").rstrip(".")
    assert re.search(r"<td>memcpy_gbps.*?</td>\s*<td class=\"num\">" + re.escape(measured), gpu, re.S)
    assert "≥ 0.1" in gpu and "≤ 64" in gpu  # pass lines: 14 GB/s * 1%, the soak ceiling
    assert gpu.count('<span class="badge skipped">skipped</span>') == 3  # h2d, d2h, all-reduce


def test_report_tolerates_odd_suite_rows(tmp_path: Path, gpu_wave: Path) -> None:
    from migration_waves.evidence.report import build_evidence_pack, suite_rows
    from migration_waves.evidence.store import EvidenceStore
    from migration_waves.spec.loader import load_wave

    odd = [
        None,
        "x",
        {"metric": ""},
        {"metric": "memcpy_gbps", "measured": "fast", "passed": False},
        {"metric": "matmul_float32_gflops", "measured": 5.0, "threshold": 10.0, "ratio": "n/a"},
    ]
    got = suite_rows(odd)
    assert [r["metric"] for r in got] == ["memcpy_gbps", "matmul_float32_gflops"]
    assert got[0]["status"] == "failed" and got[0]["measured"] is None
    assert got[1]["status"] == "recorded" and got[1]["line"] == "≥ 10" and got[1]["ratio"] is None
    assert suite_rows({"rows": 1}) == []

    spec = load_wave(gpu_wave)
    store = EvidenceStore(str(tmp_path / "other"), spec.wave, RUN_ID)
    store.write("gpu", "training-cpu-dev-benchmark", {"rows": odd, "table": 3, "passed": False})
    pack = build_evidence_pack(store, spec, outcome={"state": "failed"})
    assert pack.section_errors == []
    assert "<td>matmul_float32_gflops" in Path(pack.report_html).read_text()
