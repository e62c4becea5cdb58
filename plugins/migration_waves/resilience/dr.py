"""Disaster-recovery drill: restore from the cloud copy to an on-prem scratch location, fail over, time it.

``run_dr_drill(spec, scratch, resolve=...)``, for one wave spec:

1. for each dataset (or the ones asked for), takes its **cloud copy** (the dataset's target) and
   copies it with the transfer engine (hash while streaming, atomic placement) into
   ``<scratch>/<dataset>/``, then reads the restored files back and compares them with the
   digests of the copy (``verify_tree``). A ``checkpoint`` dataset restores only its newest
   ``step-N`` checkpoint, and that checkpoint's own manifest (sha256 per file) is checked too;
2. fails the inference route over to the restored (on-prem) side: each inference workload's router
   sends 100% of traffic to its baseline (on-prem) backend, read back from the router; by default
   the previous split is put back afterwards (``failback``), because a drill must not leave
   production failed over;
3. judges **time** (drill start -> data restored and verified -> route switched) against the wave's
   RTO, and **data age** (now minus the newest restored file's mtime at the cloud copy, i.e. how
   much recent work the cloud copy would lose) against the RPO. Data age is judged for classes that
   change (mutable, checkpoint, telemetry); an immutable dataset is old by design, so its age is
   reported but not judged.

What the failover proves in the demo: the router switch and its timing. The demo's on-prem
inference service serves its own model files; it is not reloaded from the restored scratch copy.

Filesystems come from a ``resolve`` callable (the Airflow layer passes one that honours
connections; ``local_resolver`` handles local paths), so this module never imports Airflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from migration_waves.resilience.checkpoints import CHECKPOINT_RE, verify_checkpoint
from migration_waves.spec.models import DatasetClass, ResolvedLocation, WaveSpec

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from migration_waves.canary.router import Router

Resolver = Callable[[ResolvedLocation], "tuple[AbstractFileSystem, str]"]
#: Classes whose cloud copy must be recent: their age is judged against the RPO.
AGE_JUDGED = frozenset({DatasetClass.MUTABLE, DatasetClass.CHECKPOINT, DatasetClass.TELEMETRY})


class DatasetRestore(BaseModel):
    """One dataset restored from its cloud copy."""

    dataset: str
    dataset_class: str
    source: str = Field(description="the cloud copy")
    target: str = Field(description="the scratch (on-prem) location")
    selected: str | None = Field(default=None, description="checkpoint dataset: the checkpoint restored")
    files: int = 0
    bytes: int = 0
    copy_s: float = 0.0
    verify_s: float = 0.0
    files_verified: int = 0
    newest_mtime: float | None = Field(default=None, description="newest restored file, at the cloud copy")
    data_age_s: float | None = None
    age_judged: bool = False
    passed: bool = False
    reasons: list[str] = Field(default_factory=list)


class FailoverRecord(BaseModel):
    """The route of one inference workload switched to the restored (on-prem) side."""

    workload: str
    router: str
    before_pct: int | None = Field(default=None, description="candidate (cloud) share before the drill")
    after_pct: int | None = Field(default=None, description="candidate share after failover, read back")
    switch_s: float | None = None
    failed_back_to: int | None = None
    passed: bool = False
    reasons: list[str] = Field(default_factory=list)


class DrReport(BaseModel):
    """Evidence of one DR drill of a wave."""

    wave: str
    started_at: str
    scratch: str
    rto_s: float
    rpo_s: float
    datasets: list[DatasetRestore] = Field(default_factory=list)
    failovers: list[FailoverRecord] = Field(default_factory=list)
    time_to_restore_s: float | None = None
    time_to_recover_s: float | None = Field(default=None, description="start -> restored, verified, routed")
    worst_data_age_s: float | None = Field(default=None, description="oldest judged dataset's data age")
    passed: bool = False
    reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    summary: str = ""
    table: str = ""


def local_resolver(location: ResolvedLocation) -> tuple[AbstractFileSystem, str]:
    """Filesystem for a local path or file:// URL; anything else needs the Airflow layer's connections."""
    from fsspec.implementations.local import LocalFileSystem

    url = location.url
    if "://" in url and not url.startswith(("file://", "local://")):
        raise ValueError(
            f"site {location.site}: {url} is not local; run the DR drill from Airflow (dr_drill DAG), "
            "which resolves the site's connection"
        )
    return LocalFileSystem(), url.split("://", 1)[-1]


def newest_checkpoint(fs: AbstractFileSystem, root: str) -> str | None:
    """Name of the newest ``step-N`` entry (highest step) directly under ``root``."""
    try:
        names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return None
    steps = [(int(m.group(1)), n) for n in names if (m := CHECKPOINT_RE.match(n))]
    return max(steps)[1] if steps else None


def run_dr_drill(
    spec: WaveSpec,
    scratch: str | Path,
    *,
    resolve: Resolver,
    datasets: Sequence[str] | None = None,
    router_for: Callable[[Any], Router] | None = None,
    failover: bool = True,
    failback: bool = True,
    now: Callable[[], float] = time.time,
) -> DrReport:
    """Restore the wave's datasets from the cloud copy into ``scratch``, fail routes over, judge RTO/RPO.

    ``router_for(workload)`` gives the router of an inference workload; without one the failover
    is a reason to fail (a drill never passes silently without it), unless ``failover=False`` asks
    for a restore-only drill, which the report notes. ``now`` is the clock used for data age.
    """
    from fsspec.implementations.local import LocalFileSystem

    from migration_waves.transfer.engine import copy_tree, verify_tree
    from migration_waves.transfer.manifest import list_files

    started = time.perf_counter()
    rto_s, rpo_s = spec.targets.rto_minutes * 60, spec.targets.rpo_minutes * 60
    scratch_path = Path(scratch).resolve()
    report = DrReport(
        wave=spec.wave, started_at=datetime.now(UTC).isoformat(), scratch=str(scratch_path),
        rto_s=rto_s, rpo_s=rpo_s,
    )  # fmt: skip
    wanted = list(datasets) if datasets else [d.name for d in spec.datasets]
    unknown = sorted(set(wanted) - {d.name for d in spec.datasets})
    if unknown:
        raise ValueError(
            f"wave {spec.wave}: no dataset named {', '.join(unknown)}; "
            f"choose from {', '.join(d.name for d in spec.datasets)}"
        )
    local = LocalFileSystem()

    for ds in (d for d in spec.datasets if d.name in wanted):
        loc = spec.location(ds.target)
        src_fs, src_root = resolve(loc)
        dst_root = str(scratch_path / ds.name)
        rec = DatasetRestore(
            dataset=ds.name, dataset_class=ds.class_.value, source=loc.url, target=dst_root,
            age_judged=ds.class_ in AGE_JUDGED,
        )  # fmt: skip
        report.datasets.append(rec)
        include = list(ds.include)
        if ds.class_ == DatasetClass.CHECKPOINT:
            rec.selected = newest_checkpoint(src_fs, src_root)
            if rec.selected is None:
                rec.reasons.append(
                    f"dataset {ds.name}: no step-N checkpoint in the cloud copy {loc.url}; nothing to restore"
                )
                continue
            include = [f"{rec.selected}/*", rec.selected]
        try:
            t0 = time.perf_counter()
            copied = copy_tree(
                src_fs, src_root, local, dst_root, dataset=ds.name, algorithm=ds.checksum.value,
                include=include, exclude=ds.exclude,
            )  # fmt: skip
            rec.copy_s = round(time.perf_counter() - t0, 4)
        except ValueError as exc:  # SourceNotFound and friends carry the dataset and URL
            rec.reasons.append(f"dataset {ds.name}: restore from {loc.url} failed: {exc}")
            continue
        rec.reasons += copied.reasons if not copied.passed else []
        manifest = copied.target_manifest
        if manifest is None or not copied.passed:
            rec.reasons.append(f"dataset {ds.name}: the restore copy did not complete")
            continue
        rec.files, rec.bytes = len(manifest.entries), manifest.total_bytes
        t0 = time.perf_counter()
        verified = verify_tree(
            local, dst_root, manifest, dataset=ds.name, include=include, exclude=ds.exclude
        )
        rec.verify_s = round(time.perf_counter() - t0, 4)
        rec.files_verified = verified.files_verified
        if not verified.passed:
            rec.reasons += [
                f"dataset {ds.name}: restored copy does not verify: {r}" for r in verified.reasons
            ]
        if rec.selected is not None:
            problem = verify_checkpoint(Path(dst_root) / rec.selected)
            if problem is not None:
                rec.reasons.append(f"dataset {ds.name}: restored checkpoint is not usable: {problem}")
        listing = list_files(src_fs, src_root, include, ds.exclude)
        mtimes = [m for _, _, m in listing if m]
        if mtimes:
            rec.newest_mtime = max(mtimes)
            rec.data_age_s = round(max(now() - rec.newest_mtime, 0.0), 3)
            if rec.age_judged and rec.data_age_s > rpo_s:
                rec.reasons.append(
                    f"dataset {ds.name}: the cloud copy's newest data is {rec.data_age_s:,.0f} s old, "
                    f"over the RPO of {rpo_s:g} s; sync it more often"
                )
        rec.passed = not rec.reasons
    report.time_to_restore_s = round(time.perf_counter() - started, 4)

    inference = spec.inference_workloads
    if inference and not failover:
        report.notes.append(f"route failover of {len(inference)} inference workload(s) skipped by request")
    elif inference and router_for is None:
        report.reasons.append(
            f"wave {spec.wave}: {len(inference)} inference workload(s) but no router given; "
            "the route failover was not exercised"
        )
    for wl in inference if failover and router_for is not None else []:
        report.failovers.append(_failover(wl, router_for(wl), failback))  # type: ignore[misc]
    report.time_to_recover_s = round(time.perf_counter() - started, 4)

    for rec in report.datasets:
        report.reasons += rec.reasons
    for fo in report.failovers:
        report.reasons += fo.reasons
    ages = [r.data_age_s for r in report.datasets if r.age_judged and r.data_age_s is not None]
    report.worst_data_age_s = max(ages) if ages else None
    if report.time_to_recover_s > rto_s:
        report.reasons.append(
            f"wave {spec.wave}: DR restore and failover took {report.time_to_recover_s:.2f} s, "
            f"over the RTO of {rto_s:g} s"
        )
    if not report.datasets:
        report.reasons.append(f"wave {spec.wave}: no dataset to restore")
    report.passed = not report.reasons
    report.table = render_table(report)
    files = sum(r.files for r in report.datasets)
    age = "n/a" if report.worst_data_age_s is None else f"{report.worst_data_age_s:,.0f} s"
    report.summary = (
        f"wave {spec.wave}: DR drill {'passed' if report.passed else 'FAILED'}: {files} file(s) of "
        f"{len(report.datasets)} dataset(s) restored and verified, {len(report.failovers)} route(s) failed "
        f"over in {report.time_to_recover_s:.2f} s (RTO {rto_s:g} s); oldest data {age} (RPO {rpo_s:g} s)"
    )
    return report


def _failover(wl: Any, router: Router, failback: bool) -> FailoverRecord:
    from migration_waves.canary.router import RouterError, restore_baseline

    rec = FailoverRecord(workload=wl.name, router=repr(router))
    try:
        t0 = time.perf_counter()
        rec.before_pct = router.get_candidate_weight()
        # The restored side is the on-prem baseline: all traffic to it, read back from the router.
        rollback = restore_baseline(router)
        rec.switch_s = round(time.perf_counter() - t0, 4)
        rec.after_pct = rollback.after_pct
        if not rollback.passed:
            rec.reasons += [f"workload {wl.name}: {r}" for r in rollback.reasons]
        if failback and rec.before_pct:
            rec.failed_back_to = router.set_candidate_weight(rec.before_pct)
    except RouterError as exc:
        rec.reasons.append(f"workload {wl.name}: failover through {router!r} failed: {exc}")
    rec.passed = not rec.reasons
    return rec


def render_table(report: DrReport) -> str:
    """Datasets and routes as a Markdown table for the evidence pack."""
    lines = [
        "| dataset | class | restored | files | MiB | copy s | verify s | data age s | vs RPO | verdict |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report.datasets:
        age = "-" if r.data_age_s is None else f"{r.data_age_s:,.0f}"
        judged = (
            "<= " if r.data_age_s is not None and r.data_age_s <= report.rpo_s else "> "
        ) + f"{report.rpo_s:g}"
        cells = [
            r.dataset, r.dataset_class, r.selected or "all", str(r.files), f"{r.bytes / 2**20:,.2f}",
            f"{r.copy_s:.3f}", f"{r.verify_s:.3f}", age, judged if r.age_judged else "not judged",
            "pass" if r.passed else "FAIL",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    for f in report.failovers:
        lines.append(
            f"| route {f.workload} | failover | cloud {f.before_pct}% -> {f.after_pct}% | | | "
            f"{f.switch_s or 0:.3f} | | | | {'pass' if f.passed else 'FAIL'} |"
        )
    return "\n".join(lines)
