"""NVML snapshot: parsing helpers, JSON round trip, the live probe, and the NVML reading code path.

This machine has no GPU and no NVIDIA driver, so the live probe can only show the "unavailable"
path. The reading path (NotSupported handling, bytes names, shutdown) is exercised against a
*mock* pynvml module injected into sys.modules, because real NVML cannot run here.
"""

from __future__ import annotations

import ctypes.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from migration_waves.gpu.nvml import NvmlSnapshot, cuda_version_from_int, decode_text, take_snapshot

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12040, "12.4"), (12080, "12.8"), (11080, "11.8"), (12010, "12.1"), (12000, "12.0"), (13000, "13.0")],
)
def test_cuda_version_from_nvml_int(value: int, expected: str) -> None:
    assert cuda_version_from_int(value) == expected


def test_cuda_version_rejects_non_positive() -> None:
    with pytest.raises(ValueError, match="12040"):
        cuda_version_from_int(0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"NVIDIA H200", "NVIDIA H200"),
        ("NVIDIA H200", "NVIDIA H200"),
        (b"NVIDIA H200\x00\x00", "NVIDIA H200"),
    ],
)
def test_decode_text_bytes_and_str(raw: str | bytes, expected: str) -> None:
    assert decode_text(raw) == expected


def test_live_snapshot_does_not_raise_and_explains_itself() -> None:
    snap = take_snapshot()
    assert snap.source == "live"
    assert snap.hostname
    if ctypes.util.find_library("nvidia-ml") is None:
        # This machine: no driver. NVML's own error must be the reason.
        assert snap.available is False
        assert snap.devices == []
        assert snap.reason is not None and "NVMLError_LibraryNotFound" in snap.reason
    else:  # a GPU worker: the snapshot must be consistent either way
        assert snap.available or snap.reason


def test_snapshot_json_round_trip(tmp_path: Path) -> None:
    snap = NvmlSnapshot.load(FIXTURES / "h200-healthy.json")
    out = snap.save(tmp_path / "sub" / "snap.json")
    again = NvmlSnapshot.load(out)
    assert again == snap
    assert again.device_count == 8
    assert again.devices[0].memory_total_gib == pytest.approx(140.4, abs=0.1)
    # JSON-safe for evidence stores
    json.dumps(snap.model_dump(mode="json"))


@pytest.mark.parametrize("name", ["h200-healthy.json", "h200-degraded.json", "rtx4090-no-ecc-mig.json"])
def test_fixtures_are_marked_hand_written(name: str) -> None:
    snap = NvmlSnapshot.load(FIXTURES / name)
    assert "hand-written" in snap.source and "NOT recorded from hardware" in snap.source


def test_load_names_the_file_when_missing_or_invalid(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.json"):
        NvmlSnapshot.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"available": true, "devices": [{"index": 0, "name": "x", "colour": "green"}]}')
    with pytest.raises(ValueError, match=r"bad\.json"):
        NvmlSnapshot.load(bad)


# -- the reading code path, against a MOCK pynvml (no GPU on this machine) ---------------------


def _fake_pynvml(
    devices: list[dict[str, Any]], *, init_error: bool = False, system_error: bool = False
) -> Any:
    """A stand-in for pynvml with the same names, constants and error classes as nvidia-ml-py."""
    nv: Any = types.ModuleType("pynvml")
    nv.calls = []

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(value)
            self.value = value

        def __str__(self) -> str:
            return {
                3: "Not Supported",
                4: "Insufficient Permissions",
                12: "NVML Shared Library Not Found",
            }.get(self.value, f"NVML Error with code {self.value}")

    class NVMLError_NotSupported(NVMLError):  # pynvml's own names
        def __init__(self) -> None:
            super().__init__(3)

    class NVMLError_NoPermission(NVMLError):
        def __init__(self) -> None:
            super().__init__(4)

    class NVMLError_LibraryNotFound(NVMLError):
        def __init__(self) -> None:
            super().__init__(12)

    nv.NVMLError = NVMLError
    nv.NVMLError_NotSupported = NVMLError_NotSupported
    nv.NVML_FEATURE_ENABLED = 1
    nv.NVML_DEVICE_MIG_ENABLE = 1
    nv.NVML_TEMPERATURE_GPU = 0
    nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    nv.NVML_VOLATILE_ECC = 0

    def value(i: int, key: str) -> Any:
        v = devices[i][key]
        if v == "NotSupported":
            raise NVMLError_NotSupported()
        if v == "NoPermission":
            raise NVMLError_NoPermission()
        return v

    def init() -> None:
        nv.calls.append("init")
        if init_error:
            raise NVMLError_LibraryNotFound()

    def count() -> int:
        if system_error:
            raise NVMLError(999)
        return len(devices)

    nv.nvmlInit = init
    nv.nvmlShutdown = lambda: nv.calls.append("shutdown")
    nv.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # older bindings return bytes
    nv.nvmlSystemGetCudaDriverVersion = lambda: 12040
    nv.nvmlSystemGetNVMLVersion = lambda: "12.550.54.15"
    nv.nvmlDeviceGetCount = count
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: value(h, "name")
    nv.nvmlDeviceGetUUID = lambda h: value(h, "uuid")
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=value(h, "total"), free=0, used=0)
    nv.nvmlDeviceGetEccMode = lambda h: value(h, "ecc")
    nv.nvmlDeviceGetMigMode = lambda h: value(h, "mig")
    nv.nvmlDeviceGetPersistenceMode = lambda h: value(h, "persistence")
    nv.nvmlDeviceGetTotalEccErrors = lambda h, kind, counter: value(h, "ecc_errors")
    nv.nvmlDeviceGetTemperature = lambda h, sensor: value(h, "temp")
    nv.nvmlDeviceGetPowerUsage = lambda h: value(h, "power")
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM = 1, 2
    nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
    nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
    nv.nvmlDeviceGetClockInfo = lambda h, kind: value(h, "clocks")[kind]
    nv.nvmlDeviceGetMaxClockInfo = lambda h, kind: value(h, "max_clocks")[kind]
    nv.nvmlDeviceGetCurrentClocksEventReasons = lambda h: value(h, "throttle")
    nv.nvmlDeviceGetCurrPcieLinkGeneration = lambda h: value(h, "pcie")[0]
    nv.nvmlDeviceGetMaxPcieLinkGeneration = lambda h: value(h, "pcie")[1]
    nv.nvmlDeviceGetCurrPcieLinkWidth = lambda h: value(h, "pcie")[2]
    nv.nvmlDeviceGetMaxPcieLinkWidth = lambda h: value(h, "pcie")[3]
    nv.nvmlDeviceGetRetiredPages = lambda h, cause: value(h, "retired")[cause]
    nv.nvmlDeviceGetRetiredPagesPendingStatus = lambda h: value(h, "retired_pending")
    nv.nvmlDeviceGetRemappedRows = lambda h: value(h, "remap")

    # MIG devices are handles ("parent", slot); empty slots raise NotFound like NVML.
    class NVMLError_NotFound(NVMLError):
        def __init__(self) -> None:
            super().__init__(6)

    def mig_handle(h: int, slot: int) -> tuple[int, int]:
        if slot >= len(devices[h].get("mig_devices", [])):
            raise NVMLError_NotFound()
        return (h, slot)

    def name(h: Any) -> Any:
        if isinstance(h, tuple):
            return devices[h[0]]["mig_devices"][h[1]]
        return value(h, "name")

    nv.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7
    nv.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    nv.nvmlDeviceGetName = name
    return nv


H200 = {
    "name": b"NVIDIA H200",
    "uuid": b"GPU-5f3a1c2e-8b4d-4e6f-9a71-0c2d3e4f5a60",
    "total": 143771 * 1024 * 1024,
    "ecc": (1, 0),
    "mig": (0, 1),
    "persistence": 1,
    "ecc_errors": 0,
    "temp": 31,
    "power": 74210,
    "clocks": {1: 345, 2: 3201},
    "max_clocks": {1: 1980, 2: 3201},
    "throttle": 0x1,  # idle
    "pcie": (1, 5, 16, 16),  # an idle link drops to gen 1 to save power
    "retired": "NotSupported",  # Hopper remaps rows instead of retiring pages
    "retired_pending": "NotSupported",
    "remap": (0, 0, 0, 0),
}
H200_MIG = H200 | {
    "mig": (1, 1),
    "mig_devices": [b"NVIDIA H200 MIG 3g.71gb", "NVIDIA H200 MIG 3g.71gb"],
    "throttle": 0x8 | 0x40,  # HW slowdown + HW thermal slowdown
    "remap": (1, 2, 1, 0),
}
GEFORCE = {
    "name": "NVIDIA GeForce RTX 4090",  # newer bindings return str
    "uuid": "GPU-4090aaaa-bbbb-4ccc-8ddd-eeeeffff0000",
    "total": 24564 * 1024 * 1024,
    "ecc": "NotSupported",
    "mig": "NotSupported",
    "persistence": 0,
    "ecc_errors": "NotSupported",
    "temp": 41,
    "power": "NoPermission",
    "clocks": {1: 2520, 2: 10501},
    "max_clocks": {1: 3105, 2: 10501},
    "throttle": 0x4,
    "pcie": (4, 4, 16, 16),
    "retired": "NotSupported",
    "retired_pending": "NotSupported",
    "remap": "NotSupported",
}


def test_mock_nvml_reads_devices_decodes_names_and_records_not_supported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _fake_pynvml([H200, GEFORCE])
    monkeypatch.setitem(sys.modules, "pynvml", fake)  # MOCK: no NVIDIA driver on this machine
    snap = take_snapshot()

    assert snap.available and snap.reason is None
    assert (snap.driver_version, snap.cuda_driver_version, snap.nvml_version) == (
        "550.54.15",
        "12.4",
        "12.550.54.15",
    )
    h200, geforce = snap.devices
    assert h200.name == "NVIDIA H200" and h200.uuid.startswith("GPU-5f3a")
    assert h200.memory_total_bytes == 150754820096
    assert (h200.ecc_current, h200.ecc_pending, h200.mig_current, h200.mig_pending) == (
        True,
        False,
        False,
        True,
    )
    assert (h200.uncorrectable_ecc_errors, h200.temperature_c, h200.power_mw) == (0, 31, 74210)
    assert h200.persistence_mode is True and h200.unsupported == ["retired_pages"] and h200.errors == {}

    assert geforce.name == "NVIDIA GeForce RTX 4090"
    assert geforce.ecc_current is None and geforce.ecc_pending is None
    assert geforce.mig_current is None and geforce.uncorrectable_ecc_errors is None
    assert sorted(geforce.unsupported) == [
        "ecc",
        "mig",
        "remapped_rows",
        "retired_pages",
        "uncorrectable_ecc_errors",
    ]
    # Any other NVML error is kept as an error, not mistaken for "not supported".
    assert geforce.power_mw is None and "NoPermission" in geforce.errors["power_mw"]
    assert fake.calls == ["init", "shutdown"]


def test_mock_nvml_shutdown_even_when_a_system_query_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml([H200], system_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)  # MOCK: no NVIDIA driver on this machine
    snap = take_snapshot()
    assert snap.available is False and "999" in (snap.reason or "")
    assert fake.calls == ["init", "shutdown"]


def test_mock_nvml_init_failure_is_unavailable_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml([], init_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)  # MOCK: no NVIDIA driver on this machine
    snap = take_snapshot()
    assert snap.available is False
    assert snap.reason == "nvmlInit failed: NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    assert fake.calls == ["init"]  # nothing to shut down after a failed init


def test_mock_nvml_zero_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml([]))  # MOCK: no NVIDIA driver here
    snap = take_snapshot()
    assert snap.available is True and snap.devices == [] and "0 GPUs" in (snap.reason or "")


def test_mock_nvml_reads_clocks_throttle_pcie_remap_and_mig_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml([H200, H200_MIG, GEFORCE]))  # MOCK: no GPU here
    snap = take_snapshot(frameworks=False)
    idle, mig, geforce = snap.devices
    assert (idle.sm_clock_mhz, idle.sm_clock_max_mhz, idle.mem_clock_mhz, idle.mem_clock_max_mhz) == (
        345, 1980, 3201, 3201,
    )  # fmt: skip
    assert idle.throttle_reasons == 1 and idle.mig_devices is None
    assert (idle.pcie_gen_current, idle.pcie_gen_max, idle.pcie_width_current, idle.pcie_width_max) == (
        1,
        5,
        16,
        16,
    )
    assert idle.retired_pages_sbe is None and idle.retired_pages_pending is None
    assert "retired_pages" in idle.unsupported
    assert (idle.remapped_rows_pending, idle.remapped_rows_failure) == (False, False)
    assert mig.mig_devices == ["3g.71gb", "3g.71gb"]
    assert (mig.remapped_rows_correctable, mig.remapped_rows_uncorrectable) == (1, 2)
    assert mig.remapped_rows_pending is True and mig.throttle_reasons == 0x48
    assert geforce.remapped_rows_pending is None and "remapped_rows" in geforce.unsupported
    assert snap.frameworks is None


def test_throttle_names_decodes_bits() -> None:
    from migration_waves.gpu.nvml import throttle_names

    assert throttle_names(0) == []
    assert throttle_names(0x1) == [("gpu_idle", "benign")]
    assert throttle_names(0x48) == [("hw_slowdown", "fault"), ("hw_thermal_slowdown", "fault")]
    assert throttle_names(0x4 | 0x1000) == [("sw_power_cap", "limit"), ("bit_0x1000", "unknown")]


@pytest.mark.parametrize(("value", "text"), [((2, 21, 5), "2.21.5"), (22105, "2.21.5"), (2708, "2.7.8")])
def test_nccl_version_text(value: Any, text: str) -> None:
    from migration_waves.gpu.nvml import nccl_version_text

    assert nccl_version_text(value) == text


def test_frameworks_read_from_this_environment() -> None:
    from importlib import metadata

    from migration_waves.gpu.nvml import read_frameworks

    found = read_frameworks()
    try:
        expected = metadata.version("torch")
    except metadata.PackageNotFoundError:  # this machine: no torch installed
        assert "torch" not in found
    else:
        assert found["torch"].split("+")[0] == expected.split("+")[0]
    assert take_snapshot().frameworks == found
