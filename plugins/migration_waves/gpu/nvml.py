"""NVML probe: a JSON-serialisable snapshot of the driver and GPUs of this worker.

`take_snapshot()` never raises for a missing driver or GPU: it returns `available=False` with the
NVML error as the reason, so a conformance check can say *why* a worker is unfit. A snapshot can be
saved and loaded as JSON, so every rule is testable against a recorded snapshot on a machine
without a GPU.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

GIB = 1024**3


class GpuDevice(BaseModel):
    """One physical GPU as NVML reports it. A field is None when NVML cannot report it."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    name: str | None = Field(description="NVML device name, e.g. 'NVIDIA H200'")
    uuid: str | None = None
    memory_total_bytes: int | None = Field(default=None, ge=0)
    ecc_current: bool | None = Field(default=None, description="None: ECC not supported on this GPU")
    ecc_pending: bool | None = Field(default=None, description="mode after the next GPU reset")
    uncorrectable_ecc_errors: int | None = Field(
        default=None, ge=0, description="volatile uncorrected ECC errors since the last driver load"
    )
    mig_current: bool | None = Field(default=None, description="None: MIG not supported on this GPU")
    mig_pending: bool | None = Field(default=None, description="mode after the next GPU reset")
    temperature_c: int | None = None
    power_mw: int | None = Field(default=None, ge=0)
    persistence_mode: bool | None = None
    sm_clock_mhz: int | None = Field(default=None, ge=0)
    sm_clock_max_mhz: int | None = Field(default=None, ge=0)
    mem_clock_mhz: int | None = Field(default=None, ge=0)
    mem_clock_max_mhz: int | None = Field(default=None, ge=0)
    throttle_reasons: int | None = Field(
        default=None,
        ge=0,
        description="NVML clocks event (throttle) reasons bitmask; decode with throttle_names",
    )
    pcie_gen_current: int | None = Field(default=None, ge=0)
    pcie_gen_max: int | None = Field(default=None, ge=0)
    pcie_width_current: int | None = Field(default=None, ge=0)
    pcie_width_max: int | None = Field(default=None, ge=0)
    retired_pages_sbe: int | None = Field(
        default=None, ge=0, description="pages retired for multiple single-bit errors"
    )
    retired_pages_dbe: int | None = Field(
        default=None, ge=0, description="pages retired for double-bit errors"
    )
    retired_pages_pending: bool | None = Field(
        default=None, description="a retirement waits for the next reset"
    )
    remapped_rows_correctable: int | None = Field(default=None, ge=0)
    remapped_rows_uncorrectable: int | None = Field(default=None, ge=0)
    remapped_rows_pending: bool | None = Field(
        default=None, description="a row remap waits for the next reset"
    )
    remapped_rows_failure: bool | None = Field(
        default=None, description="a remap failed: the GPU needs service"
    )
    mig_devices: list[str] | None = Field(
        default=None,
        description="profiles of the MIG devices present (e.g. '3g.71gb'); None: MIG off/unknown",
    )
    unsupported: list[str] = Field(
        default_factory=list, description="fields NVML reported as NotSupported (recorded as None)"
    )
    errors: dict[str, str] = Field(
        default_factory=dict, description="fields NVML failed to read for another reason: field -> NVML error"
    )

    @property
    def memory_total_gib(self) -> float | None:
        return None if self.memory_total_bytes is None else self.memory_total_bytes / GIB


class NvmlSnapshot(BaseModel):
    """Driver, CUDA driver and devices of one worker at one moment."""

    model_config = ConfigDict(extra="forbid")

    available: bool = Field(description="NVML initialised and answered")
    reason: str | None = Field(default=None, description="why NVML is not available")
    driver_version: str | None = None
    cuda_driver_version: str | None = Field(default=None, description="e.g. '12.4' (from NVML's 12040)")
    nvml_version: str | None = None
    hostname: str = Field(default_factory=socket.gethostname)
    taken_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str = Field(
        default="live",
        description="'live' for a reading of this worker; recorded or hand-written files say their origin",
    )
    devices: list[GpuDevice] = Field(default_factory=list)
    frameworks: dict[str, str] | None = Field(
        default=None,
        description="framework versions of the worker's Python environment (torch, cuda_runtime, nccl); "
        "None: not read",
    )

    @property
    def device_count(self) -> int:
        return len(self.devices)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, path: str | Path) -> Path:
        """Write the snapshot as JSON (parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> NvmlSnapshot:
        """Read a snapshot saved by `save` (or a recorded/hand-written fixture)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(
                f"cannot read NVML snapshot {path}: {exc.strerror}; "
                "record one with take_snapshot().save(path)"
            ) from exc
        try:
            return cls.model_validate_json(text)
        except ValueError as exc:
            raise ValueError(f"NVML snapshot {path} is not a valid snapshot: {exc}") from exc


#: NVML clocks event (throttle) reasons: bit -> (name, kind). "fault" means the hardware or the
#: cooling is holding the clocks down (a node to drain); "limit" is a power/board cap worth a look;
#: "benign" is expected (an idle GPU, application clocks, sync boost).
THROTTLE_REASONS: dict[int, tuple[str, Literal["fault", "limit", "benign"]]] = {
    0x1: ("gpu_idle", "benign"),
    0x2: ("applications_clocks_setting", "benign"),
    0x4: ("sw_power_cap", "limit"),
    0x8: ("hw_slowdown", "fault"),
    0x10: ("sync_boost", "benign"),
    0x20: ("sw_thermal_slowdown", "fault"),
    0x40: ("hw_thermal_slowdown", "fault"),
    0x80: ("hw_power_brake_slowdown", "fault"),
    0x100: ("display_clock_setting", "benign"),
    0x200: ("board_limit", "limit"),
    0x400: ("reliability", "limit"),
}


def throttle_names(mask: int) -> list[tuple[str, str]]:
    """Decode an NVML throttle bitmask to (name, kind) pairs; unknown bits become 'bit_0x..'/'unknown'."""
    out: list[tuple[str, str]] = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            name, kind = THROTTLE_REASONS.get(bit, (f"bit_{bit:#x}", "unknown"))
            out.append((name, kind))
        bit <<= 1
    return out


def mig_profile(device_name: str) -> str:
    """'NVIDIA H200 MIG 3g.71gb' -> '3g.71gb' (the name NVML gives a MIG device)."""
    _, sep, tail = device_name.rpartition(" MIG ")
    return tail.strip() if sep else device_name.strip()


def nccl_version_text(value: Any) -> str:
    """torch.cuda.nccl.version(): a tuple (2, 21, 5) in torch >= 1.x, an int code in old builds."""
    if isinstance(value, tuple | list):
        return ".".join(str(int(v)) for v in value)
    code = int(value)
    # NCCL_VERSION_CODE: major*10000 + minor*100 + patch since 2.9; major*1000 + minor*100 + patch before.
    if code >= 20900:
        return f"{code // 10000}.{(code % 10000) // 100}.{code % 100}"
    return f"{code // 1000}.{(code % 1000) // 100}.{code % 100}"


def read_frameworks(*, import_torch: bool = True) -> dict[str, str]:
    """torch, its CUDA runtime and NCCL versions in this Python environment; absent ones are left out.

    Distribution metadata first (cheap, no import); torch itself is imported only when installed and
    ``import_torch`` is True, because only torch knows the CUDA runtime and NCCL it was built with.
    """
    from importlib import metadata

    found: dict[str, str] = {}
    for key, dists in (
        ("torch", ("torch",)),
        ("nccl", ("nvidia-nccl-cu12", "nvidia-nccl-cu13", "nvidia-nccl-cu11")),
        (
            "cuda_runtime",
            ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu11"),
        ),
    ):
        for dist in dists:
            try:
                found[key] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    if "torch" in found and import_torch:
        try:
            import torch
        except ImportError:  # metadata without a working module: report what metadata says
            return found
        found["torch"] = str(torch.__version__)
        if torch.version.cuda:
            found["cuda_runtime"] = str(torch.version.cuda)
        try:
            found["nccl"] = nccl_version_text(torch.cuda.nccl.version())
        except (AttributeError, RuntimeError):
            pass  # a CPU-only torch build has no NCCL
    return found


def cuda_version_from_int(value: int) -> str:
    """NVML's CUDA driver version integer as 'major.minor': 12040 -> '12.4', 11080 -> '11.8'."""
    if value <= 0:
        raise ValueError(f"CUDA driver version {value} is not a positive NVML version integer (e.g. 12040)")
    return f"{value // 1000}.{(value % 1000) // 10}"


def decode_text(value: str | bytes | None) -> str | None:
    """NVML strings: older bindings return bytes, newer ones str; trailing NULs are dropped."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    return str(value).rstrip("\x00").strip()


def take_snapshot(*, frameworks: bool = True) -> NvmlSnapshot:
    """Read driver, CUDA driver and every GPU through NVML; never raises for a missing driver or GPU.

    ``frameworks`` also records torch/CUDA runtime/NCCL versions of this Python environment.
    """
    snap = _take_nvml()
    if frameworks:
        snap.frameworks = read_frameworks()
    return snap


def _take_nvml() -> NvmlSnapshot:
    try:
        import pynvml
    except ImportError as exc:
        return NvmlSnapshot(
            available=False, reason=f"pynvml is not importable ({exc}); install the nvidia-ml-py package"
        )

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return NvmlSnapshot(available=False, reason=f"nvmlInit failed: {_describe(exc)}")
    except OSError as exc:  # a broken libnvidia-ml.so can surface as an OSError from ctypes
        return NvmlSnapshot(available=False, reason=f"nvmlInit failed: {type(exc).__name__}: {exc}")

    # From here NVML is initialised: shut it down whatever happens, or the library keeps its handle.
    try:
        return _read_initialised(pynvml)
    except pynvml.NVMLError as exc:
        return NvmlSnapshot(
            available=False, reason=f"NVML initialised but a system query failed: {_describe(exc)}"
        )
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass  # nothing to recover; the snapshot is already taken


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _read_initialised(nv: Any) -> NvmlSnapshot:
    driver = decode_text(nv.nvmlSystemGetDriverVersion())
    cuda_int = nv.nvmlSystemGetCudaDriverVersion()
    try:
        nvml_version = decode_text(nv.nvmlSystemGetNVMLVersion())
    except nv.NVMLError:
        nvml_version = None  # informational only
    count = int(nv.nvmlDeviceGetCount())
    devices = [_read_device(nv, i) for i in range(count)]
    return NvmlSnapshot(
        available=True,
        reason=None if count else "NVML answered but reports 0 GPUs",
        driver_version=driver,
        cuda_driver_version=cuda_version_from_int(int(cuda_int)),
        nvml_version=nvml_version,
        devices=devices,
    )


def _read_device(nv: Any, index: int) -> GpuDevice:
    unsupported: list[str] = []
    errors: dict[str, str] = {}

    def read(field: str, fn: Callable[..., T], *args: Any) -> T | None:
        # NotSupported is a property of the GPU (consumer cards have no ECC/MIG), not a failure.
        try:
            return fn(*args)
        except nv.NVMLError_NotSupported:
            unsupported.append(field)
        except nv.NVMLError as exc:
            errors[field] = _describe(exc)
        return None

    handle = read("handle", nv.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return GpuDevice(index=index, name=None, unsupported=unsupported, errors=errors)

    memory = read("memory_total_bytes", nv.nvmlDeviceGetMemoryInfo, handle)
    ecc = read("ecc", nv.nvmlDeviceGetEccMode, handle)
    mig = read("mig", nv.nvmlDeviceGetMigMode, handle)
    enabled = nv.NVML_FEATURE_ENABLED
    mig_on = nv.NVML_DEVICE_MIG_ENABLE
    persistence = read("persistence_mode", nv.nvmlDeviceGetPersistenceMode, handle)
    ecc_errors = read(
        "uncorrectable_ecc_errors",
        nv.nvmlDeviceGetTotalEccErrors,
        handle,
        nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        nv.NVML_VOLATILE_ECC,
    )
    temperature = read("temperature_c", nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
    power = read("power_mw", nv.nvmlDeviceGetPowerUsage, handle)
    sm, sm_max = (
        read("sm_clock_mhz", nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM),
        read("sm_clock_max_mhz", nv.nvmlDeviceGetMaxClockInfo, handle, nv.NVML_CLOCK_SM),
    )
    mem, mem_max = (
        read("mem_clock_mhz", nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_MEM),
        read("mem_clock_max_mhz", nv.nvmlDeviceGetMaxClockInfo, handle, nv.NVML_CLOCK_MEM),
    )
    # "Throttle reasons" were renamed "clocks event reasons" in NVML 12.x; same bits.
    reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if reasons_fn is None:
        reasons_fn = nv.nvmlDeviceGetCurrentClocksThrottleReasons
    throttle = read("throttle_reasons", reasons_fn, handle)
    gen = read("pcie_gen_current", nv.nvmlDeviceGetCurrPcieLinkGeneration, handle)
    gen_max = read("pcie_gen_max", nv.nvmlDeviceGetMaxPcieLinkGeneration, handle)
    width = read("pcie_width_current", nv.nvmlDeviceGetCurrPcieLinkWidth, handle)
    width_max = read("pcie_width_max", nv.nvmlDeviceGetMaxPcieLinkWidth, handle)
    # Page retirement (pre-Ampere) and row remapping (Ampere and later): each GPU supports one.
    sbe = read(
        "retired_pages",
        nv.nvmlDeviceGetRetiredPages,
        handle,
        nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
    )
    dbe = (
        None
        if sbe is None
        else read(
            "retired_pages",
            nv.nvmlDeviceGetRetiredPages,
            handle,
            nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,
        )
    )
    pages_pending = (
        None
        if sbe is None
        else read("retired_pages_pending", nv.nvmlDeviceGetRetiredPagesPendingStatus, handle)
    )
    remap = read("remapped_rows", nv.nvmlDeviceGetRemappedRows, handle)
    mig_devices = _read_mig_devices(nv, handle) if mig is not None and int(mig[0]) == mig_on else None
    return GpuDevice(
        index=index,
        name=decode_text(read("name", nv.nvmlDeviceGetName, handle)),
        uuid=decode_text(read("uuid", nv.nvmlDeviceGetUUID, handle)),
        memory_total_bytes=None if memory is None else int(memory.total),
        ecc_current=None if ecc is None else int(ecc[0]) == enabled,
        ecc_pending=None if ecc is None else int(ecc[1]) == enabled,
        uncorrectable_ecc_errors=None if ecc_errors is None else int(ecc_errors),
        mig_current=None if mig is None else int(mig[0]) == mig_on,
        mig_pending=None if mig is None else int(mig[1]) == mig_on,
        temperature_c=None if temperature is None else int(temperature),
        power_mw=None if power is None else int(power),
        persistence_mode=None if persistence is None else int(persistence) == enabled,
        sm_clock_mhz=_int(sm),
        sm_clock_max_mhz=_int(sm_max),
        mem_clock_mhz=_int(mem),
        mem_clock_max_mhz=_int(mem_max),
        throttle_reasons=_int(throttle),
        pcie_gen_current=_int(gen),
        pcie_gen_max=_int(gen_max),
        pcie_width_current=_int(width),
        pcie_width_max=_int(width_max),
        retired_pages_sbe=None if sbe is None else len(sbe),
        retired_pages_dbe=None if dbe is None else len(dbe),
        retired_pages_pending=None if pages_pending is None else int(pages_pending) == enabled,
        remapped_rows_correctable=None if remap is None else int(remap[0]),
        remapped_rows_uncorrectable=None if remap is None else int(remap[1]),
        remapped_rows_pending=None if remap is None else bool(remap[2]),
        remapped_rows_failure=None if remap is None else bool(remap[3]),
        mig_devices=mig_devices,
        unsupported=unsupported,
        errors=errors,
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _read_mig_devices(nv: Any, handle: Any) -> list[str]:
    """Profiles of the MIG devices present on a MIG-enabled GPU (empty slots raise NotFound)."""
    profiles: list[str] = []
    try:
        slots = int(nv.nvmlDeviceGetMaxMigDeviceCount(handle))
    except nv.NVMLError:
        return profiles
    for slot in range(slots):
        try:
            mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            name = decode_text(nv.nvmlDeviceGetName(mig))
        except nv.NVMLError:
            continue  # an empty slot
        if name:
            profiles.append(mig_profile(name))
    return sorted(profiles)
