"""One copy / sync / verify run between two URLs, as the `migration-waves` CLI does it.

Wraps the engine with what a standalone run needs: filesystems from URLs, the resume journal
in the state store, a bandwidth limit, a read-back of every file placed this run (and of files
an interrupted run placed but never read back), the verified manifest, and one summary.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from migration_waves.transfer.engine import (
    Collector,
    FileError,
    PlanItem,
    copy_tree,
    human_bytes,
    verify_tree,
)
from migration_waves.transfer.errors import TransferError
from migration_waves.transfer.manifest import (
    LinkPolicy,
    Manifest,
    build_manifest,
    hash_file,
    is_local,
    join,
    real_url,
    strip_root,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fsspec import AbstractFileSystem

    from migration_waves.transfer.journal import Journal

Mode = Literal["copy", "sync", "verify"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?\s*(?:/s)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_rate(text: str) -> float:
    """'10M' -> 10 MiB/s; '512k', '1.5G', '800' (bytes/s). Units are binary, as rclone's."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise TransferError(
            f"--bwlimit {text!r}: use a positive rate such as 800, 512K, 10M or 1.5G (bytes/s)"
        )
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_max_delete(text: str) -> tuple[int, float | None]:
    """'100' -> (100, None); '10%' -> (huge, 10.0)."""
    t = text.strip()
    try:
        if t.endswith("%"):
            pct = float(t[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return 2**62, pct
        n = int(t)
        if n < 0:
            raise ValueError
        return n, None
    except ValueError:
        raise TransferError(
            f"--max-delete {text!r}: use a file count (100) or a percentage of the target's files (10%)"
        ) from None


class RateLimiter:
    """A token bucket shared by all transfer threads: at most `rate` bytes/s on average."""

    def __init__(self, rate: float, burst_s: float = 0.25) -> None:
        self.rate = rate
        self.capacity = max(rate * burst_s, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, nbytes: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= nbytes  # may go negative: the debt is slept off below
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class RunSummary(BaseModel):
    """What one CLI run did; `passed` only when everything in scope was verified."""

    mode: Mode
    source: str
    target: str
    algorithm: str
    dry_run: bool = False
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0
    files_deleted: int = 0
    bytes_deleted: int = 0
    files_verified: int = 0
    bytes_verified: int = 0
    mismatched: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)
    unstable: list[str] = Field(default_factory=list)
    errors: list[FileError] = Field(default_factory=list)
    extra_kept: int = 0
    dirs_created: int = Field(default=0, description="empty source folders made at a local target")
    files_moved: int = Field(
        default=0, description="copied within the target: moved, renamed or known content"
    )
    plan: list[PlanItem] | None = None
    state_dir: str | None = None
    manifest: str | None = None
    duration_s: float = 0.0
    passed: bool = False
    reasons: list[str] = Field(default_factory=list)


# Every object is verified by the engine (read back, or a provider digest of the same
# algorithm), so the SDK's own payload SHA-256 (botocore signs the body over plain HTTP) and its
# default CRC32 would be two more passes over every byte. A user's own s3 config_kwargs win.
S3_CONFIG_DEFAULTS: dict[str, Any] = {
    "s3": {"payload_signing_enabled": False},
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


def open_url(url: str) -> tuple[AbstractFileSystem, str]:
    """(filesystem, stripped root) for a plain path or an fsspec URL."""
    import fsspec

    options: dict[str, Any] = {}
    if url.split("://", 1)[0] in ("s3", "s3a"):
        configured = fsspec.config.conf.get("s3", {}).get("config_kwargs") or {}
        options["config_kwargs"] = {**S3_CONFIG_DEFAULTS, **configured}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except (ValueError, ImportError) as exc:  # an unknown scheme, or its package is not installed
        raise TransferError(f"{url!r}: {exc}; use a local path or a file://, s3:// or gs:// URL") from None
    return fs, strip_root(fs, root)


def _inside(inner: str, outer: str) -> bool:
    """Whether URL `inner` is `outer` or lies below it."""
    outer = outer.rstrip("/")
    return inner.rstrip("/") == outer or inner.startswith(outer + "/")


def refuse_overlap(src_url: str, dst_url: str, state_url: str | None = None) -> None:
    """Raise TransferError when source and target (or the state store) overlap.

    A target inside its source would be copied into itself again on every run; a source inside
    its target would be deleted by --delete; a state store inside either would be copied or
    deleted with the data.
    """
    if _inside(dst_url, src_url) or _inside(src_url, dst_url):
        raise TransferError(
            f"source {src_url} and target {dst_url} overlap (one is inside the other, symlinks resolved); "
            "copy to a folder outside the source"
        )
    if state_url is not None:
        for name, url in (("source", src_url), ("target", dst_url)):
            if _inside(state_url, url):
                raise TransferError(
                    f"the state store {state_url} is inside the {name} {url}; point --state outside "
                    "both (default ~/.local/state/migration-waves)"
                )


def _read_back(
    fs: AbstractFileSystem, base: str, want: dict[str, tuple[int, str]], algorithm: str, workers: int
) -> tuple[list[str], int]:
    """Hash `want` ({path: (size, digest)}) at the target; (paths whose bytes differ, bytes read)."""

    def one(rel: str) -> tuple[str, bool, int]:
        try:
            digest, n = hash_file(fs, join(base, rel), algorithm)
        except Exception:  # gone, or the store unreachable: not verified, read again next run
            return rel, False, 0
        return rel, (n, digest) == want[rel], n

    bad: list[str] = []
    total = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for rel, ok, n in pool.map(one, sorted(want)):
            total += n
            if not ok:
                bad.append(rel)
    return bad, total


def run_transfer(
    source: str,
    target: str,
    *,
    mode: Literal["copy", "sync"] = "copy",
    algorithm: str = "blake3",
    transfers: int = 4,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    delete: bool = False,
    max_delete: str = "50%",
    dry_run: bool = False,
    state: str | None = None,
    manifest_out: str | None = None,
    bwlimit: str | None = None,
    links: LinkPolicy = "skip",
    prelisted: tuple[Collector, Collector] | None = None,
) -> RunSummary:
    """Copy (never deletes) or sync (deletes target-only files when `delete`) `source` to `target`.

    Every file placed by this run, and every file an interrupted earlier run placed without
    reading it back, is read back at the target. Raises TransferError (and its subclasses
    SourceNotFound, DeleteLimitExceeded, PathCollision) before anything moves.
    """
    started = time.perf_counter()
    if delete and mode != "sync":
        raise TransferError("--delete only applies to `sync`; `copy` never deletes at the target")
    count_cap, pct_cap = parse_max_delete(max_delete)
    throttle = RateLimiter(parse_rate(bwlimit)) if bwlimit else None
    src_fs, src_base = open_url(source)
    dst_fs, dst_base = open_url(target)
    # symlinks resolved: `copy src link/inner` with `link` -> `src` still writes into the source,
    # and two spellings of one pair share one journal and one lock
    src_real, dst_real = real_url(src_fs, src_base), real_url(dst_fs, dst_base)
    journal = _journal(state, src_real, dst_real)
    out = _checked_output(manifest_out, src_real, dst_real)  # all refused before anything moves
    if not dry_run:
        try:
            journal.lock()
        except OSError as exc:
            raise TransferError(
                f"the state store {journal.fs.unstrip_protocol(journal.root)} cannot be written "
                f"({type(exc).__name__}: {exc}); point --state at a writable folder"
            ) from None
    try:
        return _run_locked(
            journal, src_fs, src_base, dst_fs, dst_base, started, mode=mode, algorithm=algorithm,
            transfers=transfers, include=include, exclude=exclude, delete=delete, count_cap=count_cap,
            pct_cap=pct_cap, dry_run=dry_run, manifest_out=out, throttle=throttle, links=links,
            prelisted=prelisted,
        )  # fmt: skip
    finally:
        journal.unlock()


def _run_locked(
    journal: Journal,
    src_fs: AbstractFileSystem,
    src_base: str,
    dst_fs: AbstractFileSystem,
    dst_base: str,
    started: float,
    *,
    mode: Literal["copy", "sync"],
    algorithm: str,
    transfers: int,
    include: Sequence[str],
    exclude: Sequence[str],
    delete: bool,
    count_cap: int,
    pct_cap: float | None,
    dry_run: bool,
    manifest_out: tuple[AbstractFileSystem, str] | None,
    throttle: RateLimiter | None,
    links: LinkPolicy,
    prelisted: tuple[Collector, Collector] | None,
) -> RunSummary:
    from migration_waves.transfer.atomic import supports_mtime

    src_url, dst_url = src_fs.unstrip_protocol(src_base), dst_fs.unstrip_protocol(dst_base)
    unverified = journal.unverified(algorithm)
    interrupted = bool(journal.loaded_journals)
    recopy = journal.recopy()
    # A local target keeps the source mtimes, so its own listing decides and the run records only
    # what it changed; elsewhere (object stores) the previous manifest is the reference, and with
    # --manifest-out the whole manifest is wanted: then the run builds it complete.
    complete = bool(manifest_out) or not supports_mtime(dst_fs)

    result = copy_tree(
        src_fs,
        src_base,
        dst_fs,
        dst_base,
        dataset=mode,
        algorithm=algorithm,
        delete=delete,
        max_delete=count_cap,
        max_delete_pct=pct_cap,
        dry_run=dry_run,
        transfers=transfers,
        previous=lambda: journal.previous(algorithm),
        include=include,
        exclude=exclude,
        on_copied=None if dry_run else journal.record,
        throttle=throttle,
        links=links,
        recopy=recopy,
        manifest_scope="all" if complete else "changed",
        plan_detail=dry_run,
        parallel_listing=True,
        last_listed_at=journal.listed_at(algorithm),
        verify_placed=True,
        prelisted=prelisted,
    )
    summary = RunSummary(
        mode=mode,
        source=src_url,
        target=dst_url,
        algorithm=algorithm,
        dry_run=dry_run,
        unstable=result.unstable,
        errors=result.errors,
        extra_kept=len(result.extra_kept),
        files_moved=result.files_moved,
        dirs_created=result.dirs_created,
        state_dir=journal.fs.unstrip_protocol(journal.dir),
    )
    copies = [i for i in result.plan if i.action == "copy"]
    deletes = [i for i in result.plan if i.action == "delete"]
    if dry_run:
        summary.plan = result.plan
        summary.files_copied = len(copies)
        summary.bytes_copied = sum(i.size for i in copies)
        summary.files_skipped = len(result.plan) - len(copies) - len(deletes)
        summary.bytes_skipped = result.bytes_skipped
        summary.files_deleted = len(deletes)
        summary.bytes_deleted = sum(i.size for i in deletes)
        summary.passed = True
        summary.reasons = list(result.reasons)
        summary.duration_s = round(time.perf_counter() - started, 3)
        return summary

    journal.close()
    manifest = result.target_manifest
    assert manifest is not None  # always set on a real run
    placed = {i.path for i in copies}
    # read back: the engine read back each file it placed; here, files an interrupted run placed
    # and never read back (skipped now by size and mtime: the journal has their digests)
    want: dict[str, tuple[int, str]] = {}
    stale = {p: (e.size, e.digest) for p, e in unverified.items() if p not in placed}
    if stale:
        skipped = {row[0] for row in result.skips}
        want = {p: v for p, v in stale.items() if p in skipped}
    stale_bad, _ = _read_back(dst_fs, dst_base, want, algorithm, transfers)
    mismatched = sorted([*stale_bad, *result.mismatched])
    summary.mismatched = mismatched
    summary.files_copied = result.files_copied
    summary.bytes_copied = result.bytes_copied
    summary.files_skipped = result.files_skipped
    summary.bytes_skipped = result.bytes_skipped
    summary.files_deleted = result.files_deleted
    summary.bytes_deleted = sum(i.size for i in deletes)
    # placed files that read back wrong are not in files_copied; skipped ones are taken off here
    bad = set(stale_bad)
    summary.files_verified = result.files_copied + result.files_skipped - len(bad)
    summary.bytes_verified = result.bytes_copied + result.bytes_skipped - sum(want[p][0] for p in bad)
    summary.reasons = list(result.reasons)
    # what the next run must send again: what read back wrong now, and what an earlier verify
    # flagged that this run did not replace (it failed, or was not in scope)
    failed = {*result.mismatched, *(e.path for e in result.errors), *result.unstable}
    pending = sorted({*mismatched, *(set(recopy) - (placed - failed))})
    if pending != sorted(recopy):
        journal.set_recopy(pending)
    if mismatched:
        summary.reasons.append(
            f"{len(mismatched)} files read back at {dst_url} differ from what was sent: "
            f"{', '.join(mismatched[:5])}; re-run: the next run sends them again"
        )
    summary.passed = result.passed and not stale_bad
    deleted = [i.path for i in deletes]
    # an unchanged tree leaves the state as it is: no write at all on a no-op sync
    changed = bool(placed or deleted or interrupted or want or recopy) or not journal.info()
    if summary.passed and changed:
        vouched = manifest
        if stale and not complete:
            rows = list(vouched.rows()) + [
                (p, e.size, e.mtime, e.digest) for p, e in unverified.items() if p in want
            ]
            vouched = Manifest.from_rows(manifest.root, algorithm, rows)
        journal.commit(vouched, deleted, complete=complete, listed_at=manifest.listed_at)
    if manifest_out is not None:
        out_fs, out_path = manifest_out
        try:
            manifest.write_parquet(out_fs, out_path)
            summary.manifest = out_fs.unstrip_protocol(out_path)
        except Exception as exc:  # the copy itself is verified and recorded; only this file failed
            summary.passed = False
            summary.reasons.append(
                f"the manifest could not be written to {out_fs.unstrip_protocol(out_path)} "
                f"({type(exc).__name__}: {exc}); the copy itself is verified and recorded in the state: "
                "re-run with a writable --manifest-out (nothing is sent again)"
            )
    summary.duration_s = round(time.perf_counter() - started, 3)
    return summary


def _journal(state: str | None, src_real: str, dst_real: str) -> Journal:
    """The pair's journal in the state store, refused (TransferError) where it cannot be kept."""
    from migration_waves.transfer.journal import Journal, default_state_url

    if state is not None and not state.strip():
        raise TransferError(
            "--state is empty: give a folder or an fsspec URL, or leave it out for the default"
        )
    journal = Journal(state or default_state_url(), src_real, dst_real)
    refuse_overlap(src_real, dst_real, real_url(journal.fs, journal.root))
    if is_local(journal.fs):
        what = f"--state {state}" if state else f"the state store {journal.root} ($MIGRATION_WAVES_STATE)"
        _refuse_unwritable(journal.root, what, "a folder (made if missing)", folder=True)
    return journal


def _refuse_unwritable(path: str, what: str, wanted: str, *, folder: bool) -> None:
    """A local path a run will write: what is there (or the nearest folder above) must take it."""
    if os.path.lexists(path):
        # a manifest is written beside and renamed over: never over a device, a link or a folder
        fits = os.path.isdir(path) if folder else os.path.isfile(path) and not os.path.islink(path)
        if not fits:
            raise TransferError(f"{what}: {path} exists and is not {wanted}; give another path")
    above = path if folder else os.path.dirname(path)
    while above and not os.path.exists(above):
        above = os.path.dirname(above)
    if above and not os.path.isdir(above):
        raise TransferError(f"{what}: {above} is a file, not a folder; point it at {wanted}")
    if above and not os.access(above, os.W_OK):
        raise TransferError(f"{what}: {above} is not writable; point it at {wanted} you can write")


def _checked_output(url: str | None, src_real: str, dst_real: str) -> tuple[AbstractFileSystem, str] | None:
    """--manifest-out, opened and checked before anything moves (never inside source or target)."""
    if url is None:
        return None
    if not url.strip():
        raise TransferError("--manifest-out is empty: give a path or an fsspec URL for the manifest")
    fs, path = open_url(url)
    real = real_url(fs, path)
    for name, tree in (("source", src_real), ("target", dst_real)):
        if _inside(real, tree):
            raise TransferError(
                f"--manifest-out {url} is inside the {name} {tree}: it would overwrite or join the "
                "data; write it outside both"
            )
    if is_local(fs):
        _refuse_unwritable(
            path, f"--manifest-out {url}", "a regular file (a manifest to replace)", folder=False
        )
    return fs, path


def run_verify(
    source: str,
    target: str,
    *,
    algorithm: str = "blake3",
    transfers: int = 4,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    manifest_out: str | None = None,
    links: LinkPolicy = "skip",
    state: str | None = None,
) -> RunSummary:
    """Hash both trees (source read, target read back) and compare them path by path.

    Files found missing or different are recorded in the pair's state, so the next copy or sync
    of the same source and target sends them again even where size and mtime look unchanged.
    """
    from migration_waves.transfer.errors import SourceNotFound

    started = time.perf_counter()
    src_fs, src_base = open_url(source)
    dst_fs, dst_base = open_url(target)
    src_url, dst_url = src_fs.unstrip_protocol(src_base), dst_fs.unstrip_protocol(dst_base)
    src_real, dst_real = real_url(src_fs, src_base), real_url(dst_fs, dst_base)
    journal = _journal(state, src_real, dst_real)
    out = _checked_output(manifest_out, src_real, dst_real)
    if not src_fs.exists(src_base):
        raise SourceNotFound("verify", src_url, "does not exist")
    expected = build_manifest(src_fs, src_base, algorithm, include, exclude, workers=transfers, links=links)
    check = verify_tree(
        dst_fs,
        dst_base,
        expected,
        dataset="verify",
        workers=transfers,
        include=include,
        exclude=exclude,
        links=links,
    )
    summary = RunSummary(
        mode="verify",
        source=src_url,
        target=dst_url,
        algorithm=algorithm,
        files_verified=check.files_verified,
        bytes_verified=check.bytes_verified,
        mismatched=sorted(check.digest_mismatch + check.size_mismatch),
        missing=check.missing,
        extra=check.extra,
        passed=check.passed,
        reasons=check.reasons,
    )
    bad = sorted({*check.digest_mismatch, *check.size_mismatch, *check.missing})
    if bad or journal.recopy():
        journal.set_recopy(bad)
        if bad:
            summary.reasons.append(
                f"the next copy or sync of {src_url} to {dst_url} with this state store "
                f"({journal.fs.unstrip_protocol(journal.root)}: the same --state) sends these "
                f"{len(bad)} files again"
            )
    if out is not None and check.observed is not None:
        out_fs, out_path = out
        check.observed.write_parquet(out_fs, out_path)
        summary.manifest = out_fs.unstrip_protocol(out_path)
    summary.duration_s = round(time.perf_counter() - started, 3)
    return summary


def describe(summary: RunSummary) -> str:
    """One line for humans."""
    if summary.mode == "verify":
        return (
            f"verify: {summary.files_verified} files ({human_bytes(summary.bytes_verified)}) match, "
            f"mismatched {len(summary.mismatched)}, missing {len(summary.missing)}, extra "
            f"{len(summary.extra)} in {summary.duration_s:.2f} s: {'OK' if summary.passed else 'FAILED'}"
        )
    verb = "would copy" if summary.dry_run else "copied"
    return (
        f"{summary.mode}: {verb} {summary.files_copied} files ({human_bytes(summary.bytes_copied)}), "
        f"skipped {summary.files_skipped}, deleted {summary.files_deleted}, verified "
        f"{summary.files_verified} ({human_bytes(summary.bytes_verified)}), mismatched "
        f"{len(summary.mismatched)}, missing {len(summary.missing)}, unstable {len(summary.unstable)}, "
        f"errors {len(summary.errors)} in {summary.duration_s:.2f} s: {'OK' if summary.passed else 'FAILED'}"
    )


def as_json(summary: RunSummary) -> dict[str, Any]:
    """JSON-safe dict of the summary (plan only on a dry run)."""
    data = summary.model_dump(mode="json")
    if data.get("plan") is None:
        data.pop("plan", None)
    return data
