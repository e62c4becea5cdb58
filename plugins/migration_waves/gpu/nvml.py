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
from typing import Any, TypeVar

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


def take_snapshot() -> NvmlSnapshot:
    """Read driver, CUDA driver and every GPU through NVML; never raises for a missing driver or GPU."""
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
        unsupported=unsupported,
        errors=errors,
    )
