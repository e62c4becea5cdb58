"""Golden-image conformance: does this worker (an NVML snapshot plus its Python packages) match the image?

Every rule becomes one check with expected/actual values, so the evidence shows what was compared,
not only the verdict. A check of severity "fail" that did not pass fails the report; "warn" only
informs. Each check belongs to a category (driver, ecc, throttle, pcie, ...); the golden image's
``severity`` map overrides the default severity of a whole category (``{throttle: warn}``).

Defaults, and why: hardware slowdown / thermal throttling, a narrowed PCIe link, a pending row
remap or page retirement, and a failed remap fail (the node needs a reset or service); a low
clock or PCIe generation warns, and passes on an idle GPU, because NVML reports the power-saving
state of an idle GPU, not its capability.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, Field

from migration_waves.gpu.nvml import GpuDevice, NvmlSnapshot, read_frameworks, throttle_names
from migration_waves.spec.models import GoldenImage, VersionPin

#: NVIDIA's guidance: a GPU with 60 or more retired pages should be replaced.
RETIRED_PAGES_LIMIT = 60
IDLE_BIT = 0x1

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
    category: str = Field(
        default="", description="severity category, e.g. throttle; see GoldenImage.severity"
    )
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
    snapshot: NvmlSnapshot,
    image: GoldenImage,
    *,
    installed: dict[str, str] | None = None,
    frameworks: dict[str, str] | None = None,
) -> ConformanceReport:
    """Compare a worker (NVML snapshot + installed Python packages) with a golden image.

    `installed` maps distribution -> version; by default it is read from this worker with
    importlib.metadata for the image's pinned packages. `frameworks` (torch, cuda_runtime, nccl)
    defaults to the snapshot's recorded frameworks, or to this worker's for a live snapshot.
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
    if image.frameworks is not None:
        if frameworks is None:
            frameworks = snapshot.frameworks
        if frameworks is None and snapshot.source == "live":
            frameworks = read_frameworks()
        checks += _framework_checks(image, frameworks, where)

    for check in checks:
        override = image.severity.get(check.category)  # type: ignore[call-overload]
        if override is not None:
            check.severity = override
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
                category="gpu_count",
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
                category="gpu_count",
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
                category="driver",
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
                category="gpu_count",
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
            category="gpu_count",
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
                    category="driver",
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
            ConformanceCheck(
                name=name,
                category="driver",
                expected=describe_pin(pin),
                actual=actual,
                passed=ok,
                message=msg,
            )
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
                category="memory",
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
                category="ecc",
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
                category="ecc",
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
                    category="ecc_errors",
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
                category="ecc_errors",
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
                category="mig",
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
                category="mig",
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

    checks += _health_checks(dev, image, who, tag)

    for field, error in sorted(dev.errors.items()):
        checks.append(
            ConformanceCheck(
                name=f"{tag}.nvml_error.{field}",
                category="nvml_errors",
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
                    category="packages",
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
            ConformanceCheck(
                name=check,
                category="packages",
                expected=f">= {minimum}",
                actual=actual,
                passed=ok,
                message=msg,
            )
        )
    return checks


def _onoff(value: bool) -> str:
    return "on" if value else "off"


def _health_checks(dev: GpuDevice, image: GoldenImage, who: str, tag: str) -> list[ConformanceCheck]:
    """Persistence, MIG layout, clocks, throttling, PCIe link, retired pages and remapped rows."""
    req = image.gpu
    assert req is not None
    checks: list[ConformanceCheck] = []

    def add(
        rule: str,
        category: str,
        expected: Scalar,
        actual: Scalar,
        passed: bool,
        message: str,
        severity: Literal["fail", "warn"] = "fail",
    ) -> None:
        checks.append(
            ConformanceCheck(
                name=f"{tag}.{rule}",
                category=category,
                expected=expected,
                actual=actual,
                passed=passed,
                severity=severity,
                message=f"{who}: {message}",
            )
        )

    idle = dev.throttle_reasons is not None and bool(dev.throttle_reasons & IDLE_BIT)

    if dev.persistence_mode is not None or req.persistence_mode is not None:
        want = True if req.persistence_mode is None else req.persistence_mode
        state = "unknown" if dev.persistence_mode is None else _onoff(dev.persistence_mode)
        add(
            "persistence_mode",
            "persistence",
            want,
            dev.persistence_mode,
            dev.persistence_mode == want,
            f"persistence mode is {state}; the image wants it {_onoff(want)}"
            + ("" if dev.persistence_mode == want else f" (nvidia-smi -pm {int(want)})"),
            severity="fail" if req.persistence_mode is not None else "warn",
        )

    if req.mig_layout is not None:
        want_layout = sorted(req.mig_layout)
        have = sorted(dev.mig_devices or [])
        add(
            "mig_layout",
            "mig_layout",
            ",".join(want_layout) or "none",
            ",".join(have) or "none",
            have == want_layout,
            f"MIG devices [{', '.join(have) or 'none'}]; the image wants [{', '.join(want_layout) or 'none'}]"
            + ("" if have == want_layout else " (recreate the GPU/compute instances with nvidia-smi mig)"),
        )

    for label, cur, top in (
        ("sm_clock", dev.sm_clock_mhz, dev.sm_clock_max_mhz),
        ("mem_clock", dev.mem_clock_mhz, dev.mem_clock_max_mhz),
    ):
        if cur is None or not top:
            continue
        ratio = cur / top
        ok = idle or ratio >= req.clocks_min_ratio
        add(
            label,
            "clocks",
            f">= {req.clocks_min_ratio:.0%} of {top} MHz",
            cur,
            ok,
            f"{label.replace('_', ' ')} {cur} of max {top} MHz ({ratio:.0%})"
            + _clock_note(idle, ok, ratio, req.clocks_min_ratio),
            severity="warn",
        )

    if dev.throttle_reasons is not None:
        decoded = throttle_names(dev.throttle_reasons)
        faults = [n for n, kind in decoded if kind == "fault"]
        limits = [n for n, kind in decoded if kind in ("limit", "unknown")]
        names = ", ".join(n for n, _ in decoded) or "none"
        if faults:
            add(
                "throttle",
                "throttle",
                "no hardware/thermal slowdown",
                names,
                False,
                f"clocks held down by {', '.join(faults)} (mask {dev.throttle_reasons:#x}); "
                "check cooling and power, drain the node",
            )
        elif limits:
            add(
                "throttle",
                "throttle",
                "no hardware/thermal slowdown",
                names,
                False,
                f"clocks limited by {', '.join(limits)} (mask {dev.throttle_reasons:#x})",
                severity="warn",
            )
        else:
            add(
                "throttle",
                "throttle",
                "no hardware/thermal slowdown",
                names,
                True,
                f"throttle reasons: {names}",
            )

    if dev.pcie_width_current is not None and dev.pcie_width_max:
        ok = dev.pcie_width_current >= dev.pcie_width_max
        add(
            "pcie_width",
            "pcie",
            f"x{dev.pcie_width_max}",
            f"x{dev.pcie_width_current}",
            ok,
            f"PCIe link width x{dev.pcie_width_current} of x{dev.pcie_width_max}"
            + ("" if ok else "; a narrowed link (reseat the card or check the riser/slot)"),
        )
    if dev.pcie_gen_current is not None and dev.pcie_gen_max:
        full = dev.pcie_gen_current >= dev.pcie_gen_max
        add(
            "pcie_gen",
            "pcie",
            f"gen{dev.pcie_gen_max}",
            f"gen{dev.pcie_gen_current}",
            full or idle,
            f"PCIe link gen{dev.pcie_gen_current} of gen{dev.pcie_gen_max}"
            + (
                ""
                if full
                else "; an idle GPU lowers its link speed to save power"
                if idle
                else "; a busy GPU below its max generation (check BIOS link settings)"
            ),
            severity="warn",
        )

    if dev.retired_pages_sbe is not None or dev.retired_pages_pending is not None:
        total = (dev.retired_pages_sbe or 0) + (dev.retired_pages_dbe or 0)
        pending = bool(dev.retired_pages_pending)
        ok = not pending and total < RETIRED_PAGES_LIMIT
        add(
            "retired_pages",
            "retired_pages",
            f"none pending, < {RETIRED_PAGES_LIMIT}",
            f"{total} retired" + (", pending" if pending else ""),
            ok,
            f"{total} retired page(s) ({dev.retired_pages_sbe or 0} single-bit, {dev.retired_pages_dbe or 0} "
            "double-bit)"
            + ("; a retirement is pending: reset the GPU before use" if pending else "")
            + (
                f"; {RETIRED_PAGES_LIMIT}+ retired pages: replace the GPU"
                if not total < RETIRED_PAGES_LIMIT
                else ""
            ),
        )

    if dev.remapped_rows_pending is not None or dev.remapped_rows_failure is not None:
        pending, failure = bool(dev.remapped_rows_pending), bool(dev.remapped_rows_failure)
        corr, unc = dev.remapped_rows_correctable or 0, dev.remapped_rows_uncorrectable or 0
        add(
            "remapped_rows",
            "remapped_rows",
            "no pending remap, no failure",
            f"{corr} correctable, {unc} uncorrectable"
            + (", pending" if pending else "")
            + (", failed" if failure else ""),
            not pending and not failure,
            f"row remapping: {corr} correctable, {unc} uncorrectable remapped row(s)"
            + ("; a remap is pending: reset the GPU before use" if pending else "")
            + ("; a remap failed: the GPU needs service" if failure else ""),
        )
    return checks


def _framework_checks(
    image: GoldenImage, frameworks: dict[str, str] | None, where: str
) -> list[ConformanceCheck]:
    pins = image.frameworks
    assert pins is not None
    checks: list[ConformanceCheck] = []
    for key, pin in (("torch", pins.torch), ("cuda_runtime", pins.cuda_runtime), ("nccl", pins.nccl)):
        if pin is None:
            continue
        actual = None if frameworks is None else frameworks.get(key)
        if actual is None:
            why = "was not recorded in the snapshot" if frameworks is None else "is not present"
            ok, msg = False, f"{where}: framework {key} {why}; the image needs {describe_pin(pin)}"
        else:
            try:
                # '2.5.1+cu124' -> '2.5.1': the local build tag is not part of the version order.
                ok = pin_satisfied(actual.split("+")[0], pin)
                msg = f"{where}: {key} {actual} {'meets' if ok else 'does not meet'} {describe_pin(pin)}"
            except ValueError as exc:
                ok, msg = False, f"{where}: cannot compare {key}: {exc}"
        checks.append(
            ConformanceCheck(
                name=f"framework:{key}",
                category="frameworks",
                expected=describe_pin(pin),
                actual=actual,
                passed=ok,
                message=msg,
            )
        )
    return checks


def _clock_note(idle: bool, ok: bool, ratio: float, minimum: float) -> str:
    if idle and ratio < minimum:
        return "; the GPU is idle, so a low clock is its power-saving state"
    return "" if ok else f", below {minimum:.0%} on a busy GPU"
