"""Golden-image conformance against recorded (hand-written) NVML snapshots and this machine's live one."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from migration_waves.gpu.conformance import (
    check_conformance,
    compare_dotted,
    parse_dotted,
    pin_satisfied,
)
from migration_waves.gpu.nvml import NvmlSnapshot, take_snapshot
from migration_waves.spec.loader import load_golden_image
from migration_waves.spec.models import GoldenImage, GpuRequirement, VersionPin

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "nvml"
IMAGES = ROOT / "include" / "golden_images"


def image(name: str) -> GoldenImage:
    return load_golden_image(IMAGES / f"{name}.yaml")


def snapshot(name: str) -> NvmlSnapshot:
    return NvmlSnapshot.load(FIXTURES / f"{name}.json")


# -- versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "parts"),
    [("550.54.15", (550, 54, 15)), ("550.54", (550, 54)), ("535.104.05", (535, 104, 5)), ("12.4", (12, 4))],
)
def test_parse_dotted(raw: str, parts: tuple[int, ...]) -> None:
    assert parse_dotted(raw) == parts


def test_parse_dotted_rejects_garbage_naming_the_value() -> None:
    with pytest.raises(ValueError, match=r"'beta\.1'"):
        parse_dotted("beta.1")


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        ("550.54.15", "550.54", 1),  # three-part driver vs two-part minimum
        ("550.54", "550.54.0", 0),
        ("550.54.14", "550.54.15", -1),
        ("550.100.01", "550.54", 1),  # as strings "550.100" < "550.54": the trap numeric compare avoids
        ("535.104.05", "550.54", -1),
        ("12.10", "12.4", 1),  # CUDA 12.10 is newer than 12.4
        ("12.4", "12.4", 0),
    ],
)
def test_compare_dotted_is_numeric(a: str, b: str, sign: int) -> None:
    assert compare_dotted(a, b) == sign
    assert compare_dotted(b, a) == -sign


def test_pins_min_and_exact() -> None:
    assert pin_satisfied("550.54.15", VersionPin(min="550.54"))
    assert not pin_satisfied("550.40.07", VersionPin(min="550.54"))
    assert pin_satisfied("550.54.15", VersionPin(exact="550.54"))  # exact branch accepts any 550.54.x
    assert not pin_satisfied("550.54.14", VersionPin(exact="550.54.15"))
    assert pin_satisfied("550.54", VersionPin(exact="550.54.0"))


# -- recorded snapshots vs training-h200 ------------------------------------------------------


def test_healthy_h200_passes_training_h200() -> None:
    report = check_conformance(snapshot("h200-healthy"), image("training-h200"), installed={"numpy": "2.4.0"})
    assert report.passed, report.reasons
    assert report.reasons == [] and report.warnings == []
    names = {c.name for c in report.checks}
    health = ("persistence_mode", "mig_layout", "sm_clock", "mem_clock", "throttle", "pcie_width", "pcie_gen",
              "remapped_rows")  # fmt: skip
    assert {f"gpu[{i}].{rule}" for i in range(8) for rule in health} <= names
    assert {"framework:torch", "framework:cuda_runtime", "framework:nccl"} <= names
    assert {"driver", "cuda_driver", "gpu.count", "package:numpy"} <= names
    # all 8 H200s are checked, not only the first
    assert {f"gpu[{i}].{rule}" for i in range(8) for rule in ("memory_gib", "ecc", "mig")} <= names
    driver = next(c for c in report.checks if c.name == "driver")
    assert (driver.expected, driver.actual, driver.passed) == (">= 550.54", "550.54.15", True)
    json.dumps(report.model_dump(mode="json"))  # evidence-safe


def test_degraded_h200_fails_with_each_reason() -> None:
    report = check_conformance(
        snapshot("h200-degraded"), image("training-h200"), installed={"numpy": "2.4.0"}
    )
    assert not report.passed
    failed = {c.name for c in report.checks if not c.passed}
    assert failed == {
        "driver", "gpu[0].ecc_pending", "gpu[1].uncorrectable_ecc_errors", "gpu[2].mig_pending",
        "gpu[1].remapped_rows", "gpu[2].pcie_width", "gpu[3].throttle", "framework:nccl",
    }  # fmt: skip
    text = "\n".join(report.reasons)
    assert "training-h200" in text and "hgx-h200-node-07" in text
    assert "driver 550.40.07 does not meet >= 550.54" in text
    assert "gpu[0]" in text and "ECC is on now but pending off" in text and "reset is needed" in text
    assert "gpu[1]" in text and "2 uncorrectable" in text
    assert "gpu[2]" in text and "MIG is off now but pending on" in text
    assert "gpu[1] NVIDIA H200: row remapping: 0 correctable, 1 uncorrectable" in text
    assert "a remap is pending: reset the GPU before use" in text
    assert "gpu[2] NVIDIA H200: PCIe link width x8 of x16" in text
    assert "gpu[3] NVIDIA H200: clocks held down by hw_slowdown, hw_thermal_slowdown (mask 0x48)" in text
    assert "nccl 2.18.1 does not meet >= 2.21" in text
    assert len(report.reasons) == 8
    # An idle GPU at low clocks and PCIe gen1 is healthy, not degraded.
    by_name = {c.name: c for c in report.checks}
    assert by_name["gpu[0].sm_clock"].passed and "idle" in by_name["gpu[0].sm_clock"].message
    assert by_name["gpu[0].pcie_gen"].passed and "save power" in by_name["gpu[0].pcie_gen"].message
    assert by_name["gpu[3].sm_clock"].passed  # 1095 of 1980 MHz (55%) >= 50% while busy


def test_other_gpu_model_fails_count() -> None:
    report = check_conformance(
        snapshot("rtx4090-no-ecc-mig"), image("training-h200"), installed={"numpy": "2.4"}
    )
    assert not report.passed
    count = next(c for c in report.checks if c.name == "gpu.count")
    assert (count.expected, count.actual, count.passed) == (1, 0, False)
    assert "found 0 matching of 1" in count.message and "RTX 4090" in count.message


def test_not_supported_ecc_fails_when_required_and_missing_mig_counts_as_off() -> None:
    any_gpu = image("training-h200").model_copy(
        update={"gpu": GpuRequirement(count=1, memory_gib_min=20, ecc_required=True, mig_enabled=False)}
    )
    report = check_conformance(snapshot("rtx4090-no-ecc-mig"), any_gpu, installed={"numpy": "2.4"})
    by_name = {c.name: c for c in report.checks}
    assert not by_name["gpu[0].ecc"].passed and "not supported" in by_name["gpu[0].ecc"].message
    assert by_name["gpu[0].mig"].passed  # no MIG support == MIG off
    assert by_name["gpu[0].memory_gib"].passed  # 24 GiB >= 20
    assert by_name["gpu[0].uncorrectable_ecc_errors"].severity == "warn"
    assert report.reasons == [by_name["gpu[0].ecc"].message]


def test_memory_below_minimum_fails_with_numbers() -> None:
    big = image("training-h200").model_copy(
        update={"gpu": GpuRequirement(model_contains="H200", memory_gib_min=160, ecc_required=True)}
    )
    report = check_conformance(snapshot("h200-healthy"), big, installed={"numpy": "2.4"})
    assert not report.passed
    assert "140.4 GiB of memory; needs at least 160 GiB" in report.reasons[0]


# -- this machine (no GPU, NVML unavailable) --------------------------------------------------


@pytest.fixture(scope="module")
def live() -> NvmlSnapshot:
    snap = take_snapshot()
    if snap.available:
        pytest.skip("this worker has NVML; the no-GPU rules are covered by recorded snapshots")
    return snap


@pytest.mark.parametrize("name", ["inference-cpu-dev", "training-cpu-dev"])
def test_cpu_images_pass_on_this_machine(live: NvmlSnapshot, name: str) -> None:
    report = check_conformance(live, image(name))
    assert report.passed, report.reasons
    presence = next(c for c in report.checks if c.name == "gpu.presence")
    assert "no GPU present; cpu image needs none" in presence.message
    numpy_check = next(c for c in report.checks if c.name == "package:numpy")
    assert numpy_check.actual == metadata.version("numpy")  # read from this worker, not assumed


def test_h200_image_fails_on_this_machine_naming_nvml(live: NvmlSnapshot) -> None:
    report = check_conformance(live, image("training-h200"))
    assert not report.passed
    reason = report.reasons[0]  # the headline; framework pins follow (no torch/NCCL on this worker)
    assert all("framework" in r for r in report.reasons[1:])
    assert reason.startswith("golden image training-h200 needs 1 GPU(s) 'H200' but NVML is unavailable")
    assert "NVMLError_LibraryNotFound" in reason


# -- packages ---------------------------------------------------------------------------------


def test_packages_older_missing_and_name_normalisation() -> None:
    img = image("inference-cpu-dev")  # numpy >= 2.0, scikit-learn >= 1.6
    report = check_conformance(snapshot("h200-healthy"), img, installed={"NumPy": "1.26.4"})
    by_name = {c.name: c for c in report.checks}
    assert not by_name["package:numpy"].passed
    assert "numpy 1.26.4 is older than the minimum 2.0" in by_name["package:numpy"].message
    assert not by_name["package:scikit-learn"].passed
    assert "not installed" in by_name["package:scikit-learn"].message
    ok = check_conformance(
        snapshot("h200-healthy"), img, installed={"numpy": "2.10.0", "scikit_learn": "1.6.0"}
    )
    assert ok.passed, ok.reasons  # 2.10 > 2.0 numerically; scikit_learn == scikit-learn
    gpus = next(c for c in ok.checks if c.name == "gpu.presence")
    assert gpus.actual == 8 and "cpu image does not use them" in gpus.message


# -- health checks and severities --------------------------------------------------------------


def _one_gpu(name: str, **fields: object) -> NvmlSnapshot:
    snap = snapshot(name)
    dev = snap.devices[0].model_copy(update=fields)
    return snap.model_copy(update={"devices": [dev]})


def test_rtx4090_power_cap_only_warns() -> None:
    any_gpu = image("training-h200").model_copy(update={"gpu": GpuRequirement(count=1)})
    report = check_conformance(snapshot("rtx4090-no-ecc-mig"), any_gpu, installed={"numpy": "2.4"})
    throttle = next(c for c in report.checks if c.name == "gpu[0].throttle")
    assert (throttle.passed, throttle.severity, throttle.category) == (False, "warn", "throttle")
    assert throttle.message in report.warnings and "sw_power_cap" in throttle.message
    assert report.passed, report.reasons


def test_severity_override_turns_a_failure_into_a_warning() -> None:
    img = image("training-h200")
    hot = _one_gpu("h200-healthy", throttle_reasons=0x40, sm_clock_mhz=700, pcie_gen_current=5)
    failing = check_conformance(hot, img, installed={"numpy": "2.4"})
    assert not failing.passed
    assert [c.name for c in failing.checks if not c.passed and c.severity == "fail"] == ["gpu[0].throttle"]
    relaxed = img.model_copy(update={"severity": {**img.severity, "throttle": "warn"}})
    report = check_conformance(hot, relaxed, installed={"numpy": "2.4"})
    assert report.passed and any("hw_thermal_slowdown" in w for w in report.warnings)
    # A busy GPU at 35% of its max clock warns (clocks: warn in the image), it does not fail.
    clock = next(c for c in report.checks if c.name == "gpu[0].sm_clock")
    assert (clock.passed, clock.severity) == (False, "warn") and "below 50% on a busy GPU" in clock.message


@pytest.mark.parametrize(
    ("fields", "rule", "needle"),
    [
        ({"persistence_mode": False}, "persistence_mode", "nvidia-smi -pm 1"),
        ({"mig_devices": ["3g.71gb", "4g.71gb"]}, "mig_layout", "MIG devices [3g.71gb, 4g.71gb]"),
        ({"remapped_rows_failure": True}, "remapped_rows", "the GPU needs service"),
        ({"retired_pages_sbe": 3, "retired_pages_dbe": 1, "retired_pages_pending": True}, "retired_pages",
         "a retirement is pending"),
        ({"retired_pages_sbe": 50, "retired_pages_dbe": 12, "retired_pages_pending": False}, "retired_pages",
         "60+ retired pages: replace the GPU"),
        ({"throttle_reasons": 0x0, "pcie_gen_current": 3}, "pcie_gen", "busy GPU below its max generation"),
    ],
)  # fmt: skip
def test_each_health_rule_fails_with_its_fix(fields: dict[str, object], rule: str, needle: str) -> None:
    report = check_conformance(
        _one_gpu("h200-healthy", **fields), image("training-h200"), installed={"numpy": "2.4"}
    )
    check = next(c for c in report.checks if c.name == f"gpu[0].{rule}")
    assert not check.passed and check.severity == "fail" and needle in check.message
    assert check.message in report.reasons


def test_frameworks_missing_from_a_recorded_snapshot_fail() -> None:
    snap = snapshot("h200-healthy").model_copy(update={"frameworks": None})
    report = check_conformance(snap, image("training-h200"), installed={"numpy": "2.4"})
    nccl = next(c for c in report.checks if c.name == "framework:nccl")
    assert not nccl.passed and "was not recorded in the snapshot" in nccl.message
    explicit = check_conformance(
        snap, image("training-h200"), installed={"numpy": "2.4"},
        frameworks={"torch": "2.6.0+cu126", "cuda_runtime": "12.6", "nccl": "2.21.5"},
    )  # fmt: skip
    assert explicit.passed, explicit.reasons
