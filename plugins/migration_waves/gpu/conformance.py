"""Golden-image conformance: does this worker (an NVML snapshot plus its Python packages) match the image?

Every rule becomes one check with expected/actual values, so the evidence shows what was compared,
not only the verdict. A check of severity "fail" that did not pass fails the report; "warn" only
informs.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, Field

from migration_waves.gpu.nvml import GpuDevice, NvmlSnapshot
from migration_waves.spec.models import GoldenImage, VersionPin

Scalar = str | int | float | bool | None

_PART = re.compile(r"^(\d+)")


def canonicalize_name(name: str) -> str:
    """PEP 503 normalised distribution name (scikit_learn == Scikit-Learn == scikit-learn)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_dotted(version: str) -> tuple[int, ...]:
    """'550.54.15' -> (550, 54, 15); each part compared as a number, never as text ('05' == 5)."""
    parts: list[int] = []
    for raw in version.strip().split("."):
        match = _PART.match(raw)
        if not match:
            raise ValueError(
                f"version {version!r} has a non-numeric part {raw!r}; "
                "write it as dotted numbers, e.g. 550.54.15"
            )
        parts.append(int(match[1]))
    return tuple(parts)


def compare_dotted(a: str, b: str) -> int:
    """-1, 0 or 1 as a <, ==, > b; missing parts count as 0 ('550.54' == '550.54.0')."""
    pa, pb = parse_dotted(a), parse_dotted(b)
    width = max(len(pa), len(pb))
    pa += (0,) * (width - len(pa))
    pb += (0,) * (width - len(pb))
    return (pa > pb) - (pa < pb)


def pin_satisfied(actual: str, pin: VersionPin) -> bool:
    """A minimum pin: actual >= min. An exact pin: actual's leading parts equal the pin's parts
    (exact '550.54' accepts any 550.54.x; exact '550.54.15' only that build)."""
    if pin.min is not None:
        return compare_dotted(actual, pin.min) >= 0
    assert pin.exact is not None  # VersionPin guarantees exactly one of min/exact
    want, have = parse_dotted(pin.exact), parse_dotted(actual)
    have += (0,) * max(0, len(want) - len(have))
    return have[: len(want)] == want


def describe_pin(pin: VersionPin) -> str:
    return f">= {pin.min}" if pin.min is not None else f"== {pin.exact}"


class ConformanceCheck(BaseModel):
    """One rule of the golden image against this worker."""

    name: str = Field(description="rule, e.g. driver, gpu[0].ecc, package:numpy")
    expected: Scalar = None
    actual: Scalar = None
    passed: bool
    severity: Literal["fail", "warn"] = "fail"
    message: str


class ConformanceReport(BaseModel):
    """Every check of one golden image on one worker; `passed` is False if any 'fail' check failed."""

    image: str
    accelerator: Literal["gpu", "cpu"]
    hostname: str
    snapshot_source: str
    snapshot_taken_at: str
    nvml_available: bool
    checks: list[ConformanceCheck]
    passed: bool
    reasons: list[str] = Field(description="one sentence per failed check")
    warnings: list[str] = Field(default_factory=list)


def installed_versions(names: list[str]) -> dict[str, str]:
    """Versions of the given distributions on this worker; a missing one is left out."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def check_conformance(
    snapshot: NvmlSnapshot, image: GoldenImage, *, installed: dict[str, str] | None = None
) -> ConformanceReport:
    """Compare a worker (NVML snapshot + installed Python packages) with a golden image.

    `installed` maps distribution -> version; by default it is read from this worker with
    importlib.metadata for the image's pinned packages.
    """
    checks: list[ConformanceCheck] = []
    where = f"golden image {image.name} on host {snapshot.hostname}"

    if image.accelerator == "gpu":
        checks += _gpu_checks(snapshot, image, where)
    else:
        checks += _cpu_checks(snapshot, image, where)

    if installed is None:
        installed = installed_versions(list(image.packages))
    checks += _package_checks(image, installed, where)

    reasons = [c.message for c in checks if not c.passed and c.severity == "fail"]
    warnings = [c.message for c in checks if not c.passed and c.severity == "warn"]
    return ConformanceReport(
        image=image.name,
        accelerator=image.accelerator,
        hostname=snapshot.hostname,
        snapshot_source=snapshot.source,
        snapshot_taken_at=snapshot.taken_at.isoformat(),
        nvml_available=snapshot.available,
        checks=checks,
        passed=not reasons,
        reasons=reasons,
        warnings=warnings,
    )


def _cpu_checks(snapshot: NvmlSnapshot, image: GoldenImage, where: str) -> list[ConformanceCheck]:
    checks: list[ConformanceCheck] = []
    if not snapshot.available or not snapshot.devices:
        why = f" (NVML: {snapshot.reason})" if snapshot.reason else ""
        checks.append(
            ConformanceCheck(
                name="gpu.presence",
                expected="none needed",
                actual=0,
                passed=True,
                message=f"{where}: no GPU present; cpu image needs none{why}",
            )
        )
    else:
        checks.append(
            ConformanceCheck(
                name="gpu.presence",
                expected="none needed",
                actual=snapshot.device_count,
                passed=True,
                message=f"{where}: {snapshot.device_count} GPU(s) present; cpu image does not use them",
            )
        )
    # A cpu image may still pin a driver (e.g. for tooling); check it only where NVML can tell.
    if snapshot.available:
        checks += _driver_checks(snapshot, image, where)
    elif image.driver or image.cuda_driver:
        checks.append(
            ConformanceCheck(
                name="driver",
                expected="pinned",
                actual=None,
                passed=False,
                severity="warn",
                message=f"{where}: driver pins not checked because NVML is unavailable",
            )
        )
    return checks


def _gpu_checks(snapshot: NvmlSnapshot, image: GoldenImage, where: str) -> list[ConformanceCheck]:
    req = image.gpu
    count = req.count if req else 1
    model = req.model_contains if req and req.model_contains else None
    wants = f"{count} GPU(s)" + (f" {model!r}" if model else "")
    if not snapshot.available:
        # One clear reason instead of a dozen consequential failures.
        return [
            ConformanceCheck(
                name="nvml.available",
                expected=True,
                actual=False,
                passed=False,
                message=(
                    f"golden image {image.name} needs {wants} but NVML is unavailable on this worker "
                    f"({snapshot.hostname}): {snapshot.reason}"
                ),
            )
        ]

    checks = _driver_checks(snapshot, image, where)
    matching = [d for d in snapshot.devices if model is None or model.lower() in (d.name or "").lower()]
    names = ", ".join(f"gpu[{d.index}] {d.name}" for d in snapshot.devices) or "none"
    checks.append(
        ConformanceCheck(
            name="gpu.count",
            expected=count,
            actual=len(matching),
            passed=len(matching) >= count,
            message=(
                f"{where}: needs {wants}, found {len(matching)} matching of {snapshot.device_count} ({names})"
            ),
        )
    )
    if req is None:
        return checks
    for dev in matching:
        checks += _device_checks(dev, image, where)
    return checks


def _driver_checks(snapshot: NvmlSnapshot, image: GoldenImage, where: str) -> list[ConformanceCheck]:
    checks: list[ConformanceCheck] = []
    for name, pin, actual, fix in (
        ("driver", image.driver, snapshot.driver_version, "install a newer NVIDIA driver"),
        ("cuda_driver", image.cuda_driver, snapshot.cuda_driver_version, "install a driver that supports it"),
    ):
        if pin is None:
            continue
        label = "NVIDIA driver" if name == "driver" else "CUDA driver version"
        if actual is None:
            checks.append(
                ConformanceCheck(
                    name=name,
                    expected=describe_pin(pin),
                    actual=None,
                    passed=False,
                    message=f"{where}: NVML did not report the {label}; expected {describe_pin(pin)}",
                )
            )
            continue
        try:
            ok = pin_satisfied(actual, pin)
            msg = f"{where}: {label} {actual} {'meets' if ok else 'does not meet'} {describe_pin(pin)}"
            if not ok:
                msg += f"; {fix}" if pin.min else f"; install exactly {pin.exact}"
        except ValueError as exc:
            ok, msg = False, f"{where}: cannot compare {label}: {exc}"
        checks.append(
            ConformanceCheck(name=name, expected=describe_pin(pin), actual=actual, passed=ok, message=msg)
        )
    return checks


def _device_checks(dev: GpuDevice, image: GoldenImage, where: str) -> list[ConformanceCheck]:
    req = image.gpu
    assert req is not None
    tag = f"gpu[{dev.index}]"
    who = f"{where}: {tag} {dev.name}"
    checks: list[ConformanceCheck] = []

    if req.memory_gib_min is not None:
        gib = dev.memory_total_gib
        checks.append(
            ConformanceCheck(
                name=f"{tag}.memory_gib",
                expected=req.memory_gib_min,
                actual=None if gib is None else round(gib, 2),
                passed=gib is not None and gib >= req.memory_gib_min,
                message=(
                    f"{who} has {'unknown' if gib is None else f'{gib:.1f}'} GiB of memory; "
                    f"needs at least {req.memory_gib_min:g} GiB"
                ),
            )
        )

    # ECC: the current mode must be on when required; a pending mode that differs takes effect at the
    # next GPU reset, so the state the workload will see is not the one measured now.
    if req.ecc_required:
        checks.append(
            ConformanceCheck(
                name=f"{tag}.ecc",
                expected=True,
                actual=dev.ecc_current,
                passed=dev.ecc_current is True,
                message=(
                    f"{who}: ECC is "
                    + {True: "on", False: "off", None: "not supported (NVML NotSupported)"}[dev.ecc_current]
                    + "; the image requires ECC on"
                    + ("" if dev.ecc_current else " (enable with nvidia-smi -e 1 and reset the GPU)")
                ),
            )
        )
    if dev.ecc_current is not None and dev.ecc_pending is not None and dev.ecc_pending != dev.ecc_current:
        checks.append(
            ConformanceCheck(
                name=f"{tag}.ecc_pending",
                expected=dev.ecc_current,
                actual=dev.ecc_pending,
                passed=False,
                severity="fail" if req.ecc_required else "warn",
                message=(
                    f"{who}: ECC is {_onoff(dev.ecc_current)} now but pending {_onoff(dev.ecc_pending)}; "
                    "a GPU reset is needed before the mode is stable"
                ),
            )
        )

    if dev.uncorrectable_ecc_errors is None:
        if req.ecc_required:
            checks.append(
                ConformanceCheck(
                    name=f"{tag}.uncorrectable_ecc_errors",
                    expected=0,
                    actual=None,
                    passed=False,
                    severity="warn",
                    message=f"{who}: NVML could not report uncorrectable ECC errors",
                )
            )
    else:
        n = dev.uncorrectable_ecc_errors
        checks.append(
            ConformanceCheck(
                name=f"{tag}.uncorrectable_ecc_errors",
                expected=0,
                actual=n,
                passed=n == 0,
                message=(
                    f"{who}: {n} uncorrectable (volatile) ECC error(s)"
                    + ("" if n == 0 else "; drain the node and have the GPU checked before running workloads")
                ),
            )
        )

    if req.mig_enabled is not None:
        # A GPU without MIG support is effectively "MIG off".
        current = bool(dev.mig_current)
        checks.append(
            ConformanceCheck(
                name=f"{tag}.mig",
                expected=req.mig_enabled,
                actual=dev.mig_current,
                passed=current == req.mig_enabled,
                message=(
                    f"{who}: MIG is "
                    + ("not supported" if dev.mig_current is None else _onoff(dev.mig_current))
                    + f"; the image requires MIG {_onoff(req.mig_enabled)}"
                ),
            )
        )
    if dev.mig_current is not None and dev.mig_pending is not None and dev.mig_pending != dev.mig_current:
        checks.append(
            ConformanceCheck(
                name=f"{tag}.mig_pending",
                expected=dev.mig_current,
                actual=dev.mig_pending,
                passed=False,
                severity="fail" if req.mig_enabled is not None else "warn",
                message=(
                    f"{who}: MIG is {_onoff(dev.mig_current)} now but pending {_onoff(dev.mig_pending)}; "
                    "a GPU reset is needed before the mode is stable"
                ),
            )
        )

    for field, error in sorted(dev.errors.items()):
        checks.append(
            ConformanceCheck(
                name=f"{tag}.nvml_error.{field}",
                expected=None,
                actual=error,
                passed=False,
                severity="warn",
                message=f"{who}: NVML could not read {field}: {error}",
            )
        )
    return checks


def _package_checks(image: GoldenImage, installed: dict[str, str], where: str) -> list[ConformanceCheck]:
    by_name = {canonicalize_name(k): v for k, v in installed.items()}
    checks: list[ConformanceCheck] = []
    for name, minimum in sorted(image.packages.items()):
        actual = by_name.get(canonicalize_name(name))
        check = f"package:{name}"
        if actual is None:
            checks.append(
                ConformanceCheck(
                    name=check,
                    expected=f">= {minimum}",
                    actual=None,
                    passed=False,
                    message=f"{where}: Python package {name} is not installed; needs >= {minimum}",
                )
            )
            continue
        try:
            ok = Version(actual) >= Version(minimum)
            msg = f"{where}: {name} {actual} {'meets' if ok else 'is older than'} the minimum {minimum}"
        except InvalidVersion as exc:
            ok, msg = (
                False,
                f"{where}: cannot compare {name} versions ({exc}); fix the pin in the golden image",
            )
        checks.append(
            ConformanceCheck(name=check, expected=f">= {minimum}", actual=actual, passed=ok, message=msg)
        )
    return checks


def _onoff(value: bool) -> str:
    return "on" if value else "off"
