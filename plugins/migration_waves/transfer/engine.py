"""Copy engine: list both sides, plan (copy / skip / delete with a reason), act, verify.

- One read of the source: each file is streamed to the target and hashed on the way.
- Atomic placement (see `atomic.py`): a crash never leaves a partial file under its final name.
- A source file that changes while it is read is retried, then reported unstable and never
  recorded in the target manifest.
- Skip decisions use size + mtime. Object stores do not keep the source mtime on the copy, so
  the plan compares the source against the previous verified target manifest (which records the
  source mtime at copy time) when one is given, and against the target's own listing otherwise.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from migration_waves.transfer.atomic import staged_write, stale_temp, supports_mtime, temp_name
from migration_waves.transfer.errors import (
    DeleteLimitExceeded,
    PathCollision,
    SourceNotFound,
    TransferError,
)
from migration_waves.transfer.listing import (
    SPECIAL_MARK,
    SYMLINK_MARK,
    TEMP_MARK,
    folder_key,
    list_local_in_child,
    selector,
)
from migration_waves.transfer.manifest import (
    CHUNK_SIZE,
    LinkListing,
    LinkPolicy,
    Listing,
    Manifest,
    ManifestEntry,
    Row,
    hash_file,
    hash_local_file,
    hasher,
    info_mtime,
    is_local,
    is_plain_local,
    join,
    link_digest,
    list_files,
    list_links,
    local_buffer,
    real_url,
    strip_root,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fsspec import AbstractFileSystem

# Two mtimes closer than this are "the same": float seconds lose sub-microsecond precision on
# the way through os.utime/stat, and some stores round to milliseconds.
MTIME_TOLERANCE_S = 0.002
UNSTABLE_RETRIES = 2  # a file that changes while read is tried 1 + 2 times
SHOW_PATHS = 5  # paths named in one reason sentence
SKIP_REASON = "same size and mtime"

Action = Literal["copy", "skip", "delete"]


class PlanItem(BaseModel):
    """What the engine will do with one path, and why."""

    path: str
    action: Action
    reason: str
    size: int = 0
    mtime: float | None = None


class TransferPlan(BaseModel):
    """Per-path actions for one dataset, decided before anything moves.

    Copies and deletes are PlanItems; skips are kept as compact (path, size, mtime) rows, because
    on an incremental sync they are nearly every file and one object per file would cost more
    than the listing itself. `of("skip")` and `all_items()` build their PlanItems on demand.
    """

    dataset: str
    items: list[PlanItem] = Field(default_factory=list, description="every copy and delete")
    skips: list[tuple[str, int, float]] = Field(default_factory=list, description="(path, size, mtime)")
    racy: list[str] = Field(
        default_factory=list, description="skips size and mtime cannot vouch for: digests are compared"
    )
    extra_kept: list[str] = Field(
        default_factory=list, description="target files not in the source, kept because delete is off"
    )

    def of(self, action: Action) -> list[PlanItem]:
        """Items with one action."""
        if action == "skip":
            return [
                PlanItem(path=p, action="skip", reason=SKIP_REASON, size=size, mtime=mtime)
                for p, size, mtime in self.skips
            ]
        return [i for i in self.items if i.action == action]

    def all_items(self) -> list[PlanItem]:
        """Every item, skips included, sorted by path (deletes after the source paths)."""
        return sorted([*self.of("copy"), *self.of("skip")], key=_item_path) + self.of("delete")

    @property
    def bytes_to_copy(self) -> int:
        """Bytes the copies will move."""
        return sum(i.size for i in self.items if i.action == "copy")

    def counts(self) -> dict[str, int]:
        """Number of items per action."""
        return {
            "copy": sum(1 for i in self.items if i.action == "copy"),
            "skip": len(self.skips),
            "delete": sum(1 for i in self.items if i.action == "delete"),
        }


def _item_path(item: PlanItem) -> str:
    return item.path


class FileError(BaseModel):
    """A file that could not be copied or deleted."""

    path: str
    error: str


class TransferResult(BaseModel):
    """What a copy run did, with the manifest of what is now at the target."""

    dataset: str
    dry_run: bool
    source: str
    target: str
    plan: list[PlanItem]
    extra_kept: list[str] = Field(default_factory=list)
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0
    files_moved: int = Field(default=0, description="copies made within the target (moved or known content)")
    dirs_created: int = Field(default=0, description="empty source folders made at a local target")
    files_deleted: int = 0
    skips: list[tuple[str, int, float]] = Field(
        default_factory=list, exclude=True, description="(path, size, mtime) of every skipped file"
    )
    mismatched: list[str] = Field(
        default_factory=list, description="placed, but read back different from what was sent (verify_placed)"
    )
    not_read_back: list[str] = Field(
        default_factory=list,
        description="placed and journaled, but the read-back failed (store unreachable): the next run checks",
    )
    unstable: list[str] = Field(default_factory=list)
    errors: list[FileError] = Field(default_factory=list)
    links_skipped: list[str] = Field(
        default_factory=list, description="source symlinks left out, with why (policy, loop, broken)"
    )
    target_manifest: Manifest | None = None
    duration_s: float = 0.0
    passed: bool
    reasons: list[str] = Field(default_factory=list)


class VerifyResult(BaseModel):
    """A read-back of the target compared with the expected manifest."""

    dataset: str
    target: str
    algorithm: str
    missing: list[str] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)
    size_mismatch: list[str] = Field(default_factory=list)
    digest_mismatch: list[str] = Field(default_factory=list)
    files_verified: int = 0
    bytes_verified: int = 0
    duration_s: float = 0.0
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    observed: Manifest | None = Field(
        default=None, description="what the read-back found at the target (digests of the target's bytes)"
    )


class _SourceChanged(Exception):
    """The source file changed while it was read (internal: triggers a retry)."""


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - loop always returns


def _some(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:SHOW_PATHS])
    return shown + (f" and {len(paths) - SHOW_PATHS} more" if len(paths) > SHOW_PATHS else "")


def _source_rows(source: Manifest | Sequence[ManifestEntry] | Listing) -> list[tuple[str, int, float]]:
    """(path, size, mtime) rows sorted by path, from a Manifest, entries or a listing."""
    if isinstance(source, Manifest):
        rows = list(zip(source.paths, source.sizes, source.mtimes, strict=True))
    elif isinstance(source, list) and all(type(row) is tuple for row in source[:1]):
        rows = list(source)  # a listing: already (path, size, mtime) tuples
    else:
        rows = [
            (i.path, i.size, i.mtime) if isinstance(i, ManifestEntry) else (i[0], int(i[1]), float(i[2]))
            for i in source
        ]
    rows.sort()  # by path: paths are unique, the other fields never decide
    return rows


def _row_path(row: tuple[Any, ...]) -> str:
    return row[0]


def same_paths(left: Listing, right: Listing) -> bool:
    """Whether two listings name the same paths in the same order (two sorted listings of one tree)."""
    return len(left) == len(right) and list(map(_row_path, left)) == list(map(_row_path, right))


def _split_unchanged(
    src: Listing, dst: Listing, must_copy: set[str]
) -> tuple[Listing, Listing, Iterable[tuple[str, int, float]]]:
    """(source rows that differ from the target's, source rows that are identical, target rows left).

    Two sorted listings of the same paths (no file added or removed since the last run) are
    compared position by position, one tuple comparison per row; otherwise by set intersection.
    Paths are unique on each side, so a target row left over can only share its path with a
    source row that differs. Set operations between two sets reuse the hashes the sets hold (a
    tuple's hash is not cached: hashing 100,000 of them again costs more than the comparison).
    """
    if len(src) == len(dst):
        diff = [i for i, (a, b) in enumerate(zip(src, dst, strict=True)) if a != b]
        if all(src[i][0] == dst[i][0] for i in diff):  # aligned: every position holds one path
            if must_copy:
                diff = sorted({*diff, *(i for i, row in enumerate(src) if row[0] in must_copy)})
            if not diff:
                return [], src, []
            skips: Listing = []
            start = 0
            for i in diff:
                skips.extend(src[start:i])
                start = i + 1
            skips.extend(src[start:])
            return [src[i] for i in diff], skips, [dst[i] for i in diff]
    src_set, dst_set = set(src), set(dst)
    same = src_set & dst_set
    if must_copy:
        same = {row for row in same if row[0] not in must_copy}
    rest = sorted(src_set - same)
    changed = {row[0] for row in rest}  # strings cache their hash: cheap to test 100,000 paths
    return rest, ([row for row in src if row[0] not in changed] if rest else src), dst_set - same


def plan_transfer(
    source: Manifest | Sequence[ManifestEntry] | Listing,
    dst_listing: Listing,
    *,
    delete: bool,
    max_delete: int,
    dataset: str,
    previous: Manifest | None = None,
    dst_keeps_mtime: bool = False,
    recopy: Iterable[str] = (),
    racy_after: float | None = None,
    dst_mtime_precision: float = MTIME_TOLERANCE_S,
) -> TransferPlan:
    """Decide copy / skip / delete per path.

    `source` is a Manifest or a listing of (path, size, mtime); `dst_listing` lists the target.
    `dst_keeps_mtime` says the target holds the source mtime (local disk: the engine sets it
    before placing), so the target's own size and mtime decide, as rsync does. Otherwise (object
    stores: a target mtime is the upload time) `previous`, the last verified manifest of this
    target, is the reference: its mtimes are the source mtimes at copy time. Paths in `recopy`
    (they failed verification at the target) are copied whatever their size and mtime say.

    Size and mtime cannot tell two versions apart when the source changed within its mtime
    precision of the moment the previous run listed it (same size, same tick). Those paths
    (source mtime at or after `racy_after`) are planned as skips with reason "racy" and
    `copy_tree` compares their digests before trusting the skip.
    Raises DeleteLimitExceeded before anything moves when deletions would exceed `max_delete`.
    """
    src = _source_rows(source)
    prev = previous.index() if previous is not None else {}
    must_copy = set(recopy)
    items: list[PlanItem] = []
    skips: list[tuple[str, int, float]] = []
    racy: list[str] = []
    tol = MTIME_TOLERANCE_S

    def copy(rel: str, size: int, mtime: float, reason: str) -> None:
        items.append(PlanItem(path=rel, action="copy", reason=reason, size=size, mtime=mtime))

    rest = src
    unmatched: Iterable[tuple[str, int, float]] = dst_listing
    if dst_keeps_mtime:
        # The common case of an incremental sync: the target holds the same path with the same
        # size and mtime (the engine copied it there). Only the other rows are looked at one by one.
        rest, skips, unmatched = _split_unchanged(src, dst_listing, must_copy)
        if racy_after is not None:
            racy.extend(row[0] for row in skips if row[2] >= racy_after)
    dst = {rel: (size, mtime) for rel, size, mtime in unmatched}
    decided = len(skips)
    for rel, size, mtime in rest:
        there = dst.get(rel)
        if there is None:
            copy(rel, size, mtime, "new")
            continue
        if rel in must_copy:
            copy(rel, size, mtime, "failed verification")
            continue
        dst_size, dst_mtime = there
        if dst_size != size:
            copy(rel, size, mtime, "size differs")
            continue
        if dst_keeps_mtime:
            if abs(dst_mtime - mtime) > tol:
                copy(rel, size, mtime, "mtime newer" if mtime > dst_mtime else "mtime differs")
                continue
        else:
            ref = prev.get(rel)
            if ref is not None:
                if ref[1] != size:
                    copy(rel, size, mtime, "size differs")
                    continue
                if mtime > ref[2] + tol:
                    copy(rel, size, mtime, "mtime newer")
                    continue
                if mtime < ref[2] - tol:
                    # an older source (restored from backup) is still a different version
                    copy(rel, size, mtime, "mtime differs")
                    continue
            elif mtime > dst_mtime + max(tol, dst_mtime_precision):
                # no reference: the target's mtime is its upload time, only a newer source is a
                # change (by more than the store's timestamp precision: S3 keeps whole seconds)
                copy(rel, size, mtime, "mtime newer")
                continue
        skips.append((rel, size, mtime))
        if racy_after is not None and mtime >= racy_after:
            racy.append(rel)
    if decided and len(skips) > decided:
        skips.sort()  # the loop appended its skips after the early ones
    extra = sorted(set(dst).difference(row[0] for row in rest))
    plan = TransferPlan.model_construct(dataset=dataset, items=items, skips=skips, extra_kept=[])
    plan.racy = racy
    if delete:
        if len(extra) > max_delete:
            raise DeleteLimitExceeded(dataset, len(extra), max_delete, extra)
        items.extend(
            PlanItem(path=rel, action="delete", reason="not in source", size=dst[rel][0], mtime=dst[rel][1])
            for rel in extra
        )
    else:
        plan.extra_kept = extra
    return plan


def _stat(fs: AbstractFileSystem, path: str, local: bool) -> tuple[int, float]:
    if local:
        st = os.stat(path)
        return st.st_size, st.st_mtime
    # listings are cached by some backends (s3fs dircache); a stale answer would hide a change
    fs.invalidate_cache(path)
    info = fs.info(path)
    return int(info.get("size") or 0), info_mtime(info)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _copy_local(
    src_path: str,
    dst_path: str,
    algorithm: str,
    mtime_ns: int | None,
    throttle: Callable[[int], None] | None,
) -> tuple[str, str, int]:
    """Local to local: one reused 1 MiB buffer, hashed and written from the same memory.

    The copy goes to a hidden temp name in the target folder, gets the source mtime, and is
    renamed over the final name only when complete (atomic.py explains the placement rules).
    """
    tmp = temp_name(dst_path)
    h = hasher(algorithm)
    buf, view = local_buffer()
    n = 0
    fin = os.open(src_path, os.O_RDONLY)
    try:
        try:
            fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(dst_path), exist_ok=True)
            fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            while got := os.readv(fin, [buf]):
                if throttle is not None:
                    throttle(got)
                chunk = view[:got]
                h.update(chunk)
                _write_all(fout, chunk)
                n += got
        finally:
            os.close(fout)
        # the source's own nanoseconds: the target's mtime then reads back as exactly the same float
        ns = os.fstat(fin).st_mtime_ns if mtime_ns is None else mtime_ns
        os.utime(tmp, ns=(ns, ns))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        os.close(fin)
        raise
    os.close(fin)
    return tmp, h.hexdigest(), n


def _file_in_the_way(rel: str, dst_path: str) -> TransferError:
    """The error for a copy whose target folder is a file (NotADirectoryError on placement)."""
    blocker = parent = os.path.dirname(dst_path)
    while parent and parent != os.path.dirname(parent):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            blocker = parent
            break
        parent = os.path.dirname(parent)
    return TransferError(
        f"{rel}: the target holds a file {blocker} where the source has a folder; sync with --delete "
        "(delete: true) to replace it, or move that file away at the target, and re-run"
    )


def _copy_one(
    src_fs: AbstractFileSystem,
    src_path: str,
    dst_fs: AbstractFileSystem,
    dst_path: str,
    rel: str,
    algorithm: str,
    throttle: Callable[[int], None] | None = None,
    proven: set[str] | None = None,
) -> ManifestEntry:
    """Stream one file source -> target while hashing; place it only if the source held still.

    `proven` collects paths whose upload reply already proves the stored bytes (see below).
    """
    src_local, dst_local = is_plain_local(src_fs), is_plain_local(dst_fs)
    if dst_local and os.path.isdir(dst_path) and not os.path.islink(dst_path):
        raise TransferError(
            f"{rel}: the target holds a folder where the source has a file; a sync with --delete "
            "(delete: true) replaces it unless it holds files out of scope (excluded): move those "
            "away at the target, and re-run"
        )
    for _attempt in range(1 + UNSTABLE_RETRIES):
        if src_local and dst_local:
            before = os.stat(src_path)
            tmp, digest, n = _copy_local(src_path, dst_path, algorithm, before.st_mtime_ns, throttle)
            after = os.stat(src_path)
            if (after.st_size, after.st_mtime_ns) != (
                before.st_size,
                before.st_mtime_ns,
            ) or n != before.st_size:
                os.unlink(tmp)
                continue
            try:
                os.replace(tmp, dst_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return ManifestEntry(path=rel, size=n, mtime=before.st_mtime, digest=digest, algorithm=algorithm)
        size, mtime = _stat(src_fs, src_path, src_local)
        if size <= SINGLE_PUT_MAX and _is_s3(dst_fs):
            # S3 and a file that fits one request: one PUT of the whole body (the object
            # appears complete or not at all). S3 answers it with the ETag, which for a
            # single-part upload is the MD5 of the bytes it stored: with --checksum md5 that
            # proves the object, with no HEAD or download after it.
            if src_local:
                with open(src_path, "rb") as fin:
                    data = fin.read()
            else:
                data = src_fs.cat_file(src_path)
            if throttle is not None:
                throttle(len(data))
            h = hasher(algorithm)
            h.update(data)
            after = _stat(src_fs, src_path, src_local)
            if after[0] != size or abs(after[1] - mtime) > MTIME_TOLERANCE_S or len(data) != size:
                continue
            reply = dst_fs.pipe_file(dst_path, data)
            digest = h.hexdigest()
            if proven is not None and algorithm == "md5" and isinstance(reply, dict):
                etag = str(reply.get("ETag") or "").strip('"')
                if etag == digest:
                    proven.add(rel)
            return ManifestEntry(path=rel, size=size, mtime=mtime, digest=digest, algorithm=algorithm)
        try:
            with staged_write(dst_fs, dst_path, mtime=mtime) as out:
                h = hasher(algorithm)
                n = 0
                with src_fs.open(src_path, "rb") as fin:
                    while chunk := fin.read(CHUNK_SIZE):
                        if throttle is not None:
                            throttle(len(chunk))
                        h.update(chunk)
                        out.write(chunk)
                        n += len(chunk)
                after = _stat(src_fs, src_path, src_local)
                # raising inside staged_write discards the staged copy: nothing gets placed
                if after[0] != size or abs(after[1] - mtime) > MTIME_TOLERANCE_S or n != size:
                    raise _SourceChanged(f"{rel}: {size} B/{mtime} before, {after[0]} B/{after[1]} after")
        except _SourceChanged:
            continue
        return ManifestEntry(path=rel, size=n, mtime=mtime, digest=h.hexdigest(), algorithm=algorithm)
    raise _SourceChanged(rel)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


Collector = Callable[[], tuple[Listing, list[str], list[str]]]


def _list_both(
    src_fs: AbstractFileSystem,
    src_base: str,
    dst_fs: AbstractFileSystem,
    dst_base: str,
    include: Sequence[str],
    exclude: Sequence[str],
    links: LinkPolicy,
    skipped: list[str],
    parallel: bool,
    prelisted: tuple[Collector, Collector] | None = None,
    empty_dirs: list[str] | None = None,
    dst_symlinks: list[str] | None = None,
    dst_temps: list[str] | None = None,
    dst_empty_dirs: list[str] | None = None,
) -> tuple[Listing, Listing]:
    """Source and target listings (the source's empty folders go to `empty_dirs`, a local
    target's to `dst_empty_dirs`).

    The link policy is the source's: a target is always listed without following its symlinks
    (their paths go to `dst_symlinks`), so nothing is ever read or written through one.
    `prelisted`: (source, target) collectors of listings already running in child processes
    (the CLI starts them before it imports the engine). With `parallel`, a local target is listed
    in a child process while this process lists the source.
    """
    dst_skipped: list[str] = []
    if prelisted is not None:
        src_collect, dst_collect = prelisted
        try:
            src_listing, src_skipped, src_empty = src_collect()
        finally:
            dst_listing, dst_skipped, dst_empty = dst_collect()  # always reaped, even when the source failed
        skipped.extend(src_skipped)
        if empty_dirs is not None:
            empty_dirs.extend(src_empty)
        if dst_empty_dirs is not None:
            dst_empty_dirs.extend(dst_empty)
    else:
        collect = (
            list_local_in_child(dst_base, include, exclude, "skip", sort=True)
            if parallel and is_local(dst_fs)
            else None
        )
        # following links, the walk never enters the target (a link to it, or to a folder above it)
        avoid = folder_key(dst_base) if links == "follow" and is_local(dst_fs) else frozenset()
        try:
            src_listing = list_files(
                src_fs, src_base, include, exclude, links=links, skipped=skipped, empty_dirs=empty_dirs,
                avoid=avoid,
            )  # fmt: skip
        except BaseException:
            if collect is not None:
                collect()
            raise
        if collect is not None:
            dst_listing, dst_skipped, dst_empty = collect()
            if dst_empty_dirs is not None:
                dst_empty_dirs.extend(dst_empty)
        else:
            dst_listing = list_files(
                dst_fs,
                dst_base,
                include,
                exclude,
                links="skip",
                skipped=dst_skipped,
                empty_dirs=dst_empty_dirs,
            )
    if dst_symlinks is not None:  # and fifos, sockets, devices: nothing is written through them either
        dst_symlinks.extend(s[: -len(SYMLINK_MARK)] for s in dst_skipped if s.endswith(SYMLINK_MARK))
        dst_symlinks.extend(s[: -len(SPECIAL_MARK)] for s in dst_skipped if s.endswith(SPECIAL_MARK))
    if dst_temps is not None:
        dst_temps.extend(s[: -len(TEMP_MARK)] for s in dst_skipped if s.endswith(TEMP_MARK))
    return src_listing, dst_listing


def _symlinks_in_the_way(dst_symlinks: list[str], src_listing: Listing) -> list[str]:
    """Target symlinks standing where the source has a file or a folder (sorted)."""
    if not dst_symlinks:
        return []
    paths = {row[0] for row in src_listing}
    folders = _folders_above(paths)
    return sorted(link for link in dst_symlinks if link in paths or link in folders)


def copy_tree(
    src_fs: AbstractFileSystem,
    src_root: str,
    dst_fs: AbstractFileSystem,
    dst_root: str,
    *,
    dataset: str,
    algorithm: str = "blake3",
    delete: bool = False,
    max_delete: int = 100,
    dry_run: bool = False,
    transfers: int = 4,
    previous: Manifest | Callable[[], Manifest | None] | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_delete_pct: float | None = None,
    on_copied: Callable[[ManifestEntry], None] | None = None,
    on_plan: Callable[[TransferPlan], None] | None = None,
    throttle: Callable[[int], None] | None = None,
    check_names: bool = True,
    recopy: Iterable[str] = (),
    links: LinkPolicy = "skip",
    manifest_scope: Literal["all", "changed"] = "all",
    plan_detail: bool = True,
    detect_moves: bool | None = None,
    parallel_listing: bool = False,
    last_listed_at: float | None = None,
    verify_placed: bool = False,
    prelisted: tuple[Collector, Collector] | None = None,
) -> TransferResult:
    """Copy a tree from one fsspec filesystem to another: plan, then copy, then delete.

    Returns a TransferResult whose `target_manifest` lists what is now at the target with the
    digests computed while streaming (skipped files carry the previous digest, or are read back
    when there is none); with `manifest_scope="changed"` it lists only the files placed by this
    run (the CLI keeps the rest in its state store). Raises SourceNotFound for a missing or empty
    source, DeleteLimitExceeded when the plan would delete more than `max_delete` files (or, with
    `max_delete_pct`, more than that percentage of the target's files, whichever is lower), and
    PathCollision when source paths cannot be held apart at the target (`check_names`); all before
    anything moves.

    `previous` is the last verified manifest of the target (or a function that loads it, called
    only when the run needs it). `on_copied` is called with each file's entry right after it is
    placed (the resume journal), `on_plan(plan)` once the plan stands, before anything moves
    (progress), `throttle(nbytes)` before each chunk is written (bandwidth limit). `links`:
    local source symlinks are skipped, followed (loops detected and skipped; see list_files) or,
    with "copy", recreated at the target as symlinks with the same text (rsync -l: never followed;
    placed after the files, updated when the text differs, deleted with `delete`; manifest rows
    carry `link_digest`). "copy" needs a local target: another raises TransferError up front.
    `plan_detail=False` leaves skips out of `result.plan` (counted only). `detect_moves`: a new
    path whose content is already at the target under another path (moved, renamed, or an
    artifact identical to an earlier one) is copied within the target instead of sent again;
    the default does it where that saves sending bytes (local source, remote target).
    `parallel_listing` lists a local target in a forked child while the source is listed (for a
    single-threaded process such as the CLI); `prelisted` hands in (source, target) listings a
    caller already started in child processes (local to local). `last_listed_at` (default:
    `previous.listed_at`) is when the previous run listed the source: files whose mtime is
    within the source's mtime precision of it get their digests compared before a skip.
    `verify_placed` reads each placed file back right after placing it; one that differs is in
    `mismatched`, not the manifest.
    Per-file failures do not raise: they are in `errors` / `unstable` and `passed` is False.
    """
    started = time.perf_counter()
    listed_at = time.time()
    hasher(algorithm)  # fail fast on an unknown algorithm
    src_base, dst_base = strip_root(src_fs, src_root), strip_root(dst_fs, dst_root)
    src_url, dst_url = src_fs.unstrip_protocol(src_base), dst_fs.unstrip_protocol(dst_base)
    src_local, dst_local = is_local(src_fs), is_local(dst_fs)
    if links == "copy" and not dst_local:
        raise TransferError(
            f"dataset {dataset}: links: copy recreates the source's symlinks as symlinks, and the "
            f"target {dst_url} cannot hold symlinks (only a local target can); nothing was moved. "
            "Use links: skip to leave them out or links: follow to copy what they point to "
            "(--links skip|follow on the command line)"
        )

    if not (os.path.exists(src_base) if src_local else src_fs.exists(src_base)):
        raise SourceNotFound(dataset, src_url, "does not exist")
    src_real, dst_real = real_url(src_fs, src_base), real_url(dst_fs, dst_base)
    if (
        src_real == dst_real
        or dst_real.startswith(src_real.rstrip("/") + "/")
        or src_real.startswith(dst_real.rstrip("/") + "/")
    ):
        resolved = "" if (src_real, dst_real) == (src_url, dst_url) else f" ({src_real} and {dst_real})"
        raise TransferError(
            f"dataset {dataset}: source {src_url} and target {dst_url} overlap{resolved} (one is inside "
            "the other, symlinks resolved); copy to a folder outside the source"
        )
    links_skipped: list[str] = []
    empty_dirs: list[str] = []
    dst_symlinks: list[str] = []
    dst_temps: list[str] = []
    dst_empty_dirs: list[str] = []
    src_listing, dst_listing = _list_both(
        src_fs,
        src_base,
        dst_fs,
        dst_base,
        include,
        exclude,
        links,
        links_skipped,
        parallel_listing,
        prelisted,
        empty_dirs,
        dst_symlinks,
        dst_temps,
        dst_empty_dirs,
    )
    if not src_listing:
        detail = "holds no files"
        if include or exclude:
            detail += f" matching include={list(include)} exclude={list(exclude)}"
        raise SourceNotFound(dataset, src_url, detail)
    # A target that already lists every source path under exactly that name (an incremental sync
    # with nothing added) holds them apart, whatever it folds: nothing to check, and no probe of
    # the target (which would touch its folder) either.
    if check_names and not same_paths(src_listing, dst_listing):
        from migration_waves.transfer.names import capabilities, find_collisions

        backslash = not dst_local and any("\\" in row[0] for row in src_listing)
        caps = capabilities(dst_fs, dst_base, backslash=backslash)
        held = {row[0] for row in dst_listing}
        collisions = find_collisions((row[0] for row in src_listing), caps, held=held)
        if collisions:
            raise PathCollision(dataset, dst_url, collisions)
    limit = None  # how the cap is worded when the percentage decides it
    if max_delete_pct is not None:
        by_pct = math.floor(len(dst_listing) * max_delete_pct / 100)
        if by_pct < max_delete:
            max_delete = by_pct
            limit = f"max_delete={max_delete_pct:g}% of the target's {len(dst_listing)} files ({by_pct})"

    loaded: list[Manifest | None] = []

    def prior() -> Manifest | None:
        if not loaded:
            value = previous() if callable(previous) else previous
            loaded.append(value if value is not None and value.algorithm == algorithm else None)
        return loaded[0]

    keeps_mtime = supports_mtime(dst_fs)
    ref = None if keeps_mtime and manifest_scope == "changed" else prior()
    if last_listed_at is None and ref is not None:
        last_listed_at = ref.listed_at
    racy_after = (
        None if last_listed_at is None else last_listed_at - listing_mtime_precision(src_fs, src_listing)
    )
    try:
        plan = plan_transfer(
            src_listing,
            dst_listing,
            delete=delete,
            max_delete=max_delete,
            dataset=dataset,
            previous=ref,
            dst_keeps_mtime=keeps_mtime,
            recopy=recopy,
            racy_after=racy_after,
            dst_mtime_precision=source_mtime_precision(dst_fs),
        )
        link_plan = None
        if links == "copy":
            link_plan = _plan_links(
                plan, src_fs, src_base, dst_fs, dst_base, src_listing, include, exclude, delete, max_delete
            )
    except DeleteLimitExceeded as exc:
        if limit is None:
            raise
        raise DeleteLimitExceeded(dataset, exc.would_delete, max_delete, exc.sample, limit) from None
    result = TransferResult(
        dataset=dataset,
        dry_run=dry_run,
        source=src_url,
        target=dst_url,
        plan=[],
        extra_kept=plan.extra_kept,
        links_skipped=links_skipped,
        passed=True,
    )
    if links_skipped:
        result.reasons.append(
            f"dataset {dataset}: {len(links_skipped)} paths not copied (symlinks with links={links}, "
            f"names reserved for in-flight files, special files): {_some(links_skipped)}"
            + (
                "; use links: follow (--links follow) to copy what links point to"
                if links == "skip" and any(p.endswith(SYMLINK_MARK) for p in links_skipped)
                else ""
            )
        )
    if manifest_scope == "all" and plan.skips:
        # A skip that no verified manifest vouches for (no state yet, another algorithm, an
        # earlier run's unknown file) is settled by digests of both sides before anything is
        # recorded: a target that merely looks the same must not be written down as verified.
        vouched = prior()
        known = vouched.index() if vouched is not None else {}
        racy = set(plan.racy)
        for rel, size, mtime in plan.skips:
            row = known.get(rel)
            if rel not in racy and (row is None or row[1] != size or abs(row[2] - mtime) > MTIME_TOLERANCE_S):
                plan.racy.append(rel)
    if plan.racy:
        _settle_racy(plan, src_fs, src_base, dst_fs, dst_base, algorithm, transfers)
    if detect_moves is None:
        detect_moves = src_local and not dst_local
    moves: dict[str, str] = {}
    if detect_moves and any(i.reason == "new" for i in plan.items):
        moves = _find_moves(plan, prior(), dst_listing, src_fs, src_base, algorithm, transfers)
    counts = plan.counts()
    result.plan = plan.all_items() if plan_detail or dry_run else [i for i in plan.items]
    result.bytes_skipped = sum(row[1] for row in plan.skips)
    result.skips = plan.skips
    if link_plan is not None and link_plan.any():
        result.plan = link_plan.add_to(result.plan, detail=plan_detail or dry_run)
        result.bytes_skipped += sum(item.size for item, _ in link_plan.skips)
        result.reasons.append(link_plan.describe(dataset))
    # A target symlink (or fifo, socket, device) where the source has a file or a folder would
    # have the copy written through it, wherever it points. With --delete, and in scope, the link
    # itself is replaced (what it points to is left alone); otherwise what would go through it
    # fails, named, and nothing is written there.
    in_the_way = (
        _symlinks_in_the_way(dst_symlinks, src_listing) if links != "copy" and is_plain_local(dst_fs) else []
    )
    blocked: list[str] = []
    if in_the_way:
        in_scope = selector(include, exclude)
        blocked = [p for p in in_the_way if not (delete and in_scope(p))]
        in_the_way = [p for p in in_the_way if p not in set(blocked)]
    if in_the_way:
        result.reasons.append(
            f"dataset {dataset}: {len(in_the_way)} symlinks or special files at the target stand where the "
            f"source has a file or a folder: {_some(in_the_way)}; "
            + ("they would be replaced" if dry_run else "replaced (what they point to is untouched)")
        )
    if dry_run:
        result.reasons.append(
            f"dataset {dataset}: dry run; would copy {counts['copy']} files "
            f"({human_bytes(plan.bytes_to_copy)}), skip {counts['skip']}, delete {counts['delete']} "
            f"from {src_url} to {dst_url}"
        )
        result.duration_s = round(time.perf_counter() - started, 3)
        return result

    if link_plan is not None and link_plan.cleared:
        result.files_deleted += _clear_links(link_plan, dst_base, dataset)
    for link in in_the_way:
        os.unlink(join(dst_base, link))  # the link, not what it points to
    if is_plain_local(dst_fs):
        # temp files of runs on this host that are gone (kill -9, a crash): never data, removed
        for rel in dst_temps:
            if stale_temp(rel):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(join(dst_base, rel))
    copies = plan.of("copy")
    if blocked:
        held = _under(blocked, copies)
        for item in held:
            stands = next(b for b in blocked if item.path == b or item.path.startswith(b + "/"))
            result.errors.append(
                FileError(
                    path=item.path,
                    error=f"the target holds a symlink or special file at {stands} where the source has "
                    "a file or a folder; nothing is written through it: sync with --delete (delete: "
                    "true) to replace it (an excluded one stays), or remove it at the target",
                )
            )
        held_ids = {id(i) for i in held}
        copies = [i for i in copies if id(i) not in held_ids]
    if on_plan is not None:
        on_plan(plan)
    copied: list[ManifestEntry] = []
    deletes = plan.of("delete")
    if deletes and copies and is_plain_local(dst_fs):
        # A path that changed between file and folder: the target's old file (or folder) stands
        # where the new shape goes, and no copy can land until it is gone. With --delete those
        # deletions run first (rsync does the same); the rest still wait for the copies.
        clearing = _in_the_way(deletes, copies)
        if clearing:
            for item in clearing:
                try:
                    os.unlink(join(dst_base, item.path))
                    result.files_deleted += 1
                except OSError as exc:
                    result.errors.append(FileError(path=item.path, error=f"delete failed: {_describe(exc)}"))
            _prune_emptied_dirs(dst_base, _folders_of(i.path for i in clearing), src_listing, empty_dirs)
            done = {i.path for i in clearing}
            deletes = [i for i in deletes if i.path not in done]
    if delete and copies and is_plain_local(dst_fs):
        # a folder (empty, or emptied above) where the source now has a file goes too; one that
        # still holds files (out of scope: excluded) stays, and that copy fails naming it
        for item in copies:
            folder = join(dst_base, item.path)
            if os.path.isdir(folder) and not os.path.islink(folder):
                _remove_empty_tree(folder)

    dst_plain = is_plain_local(dst_fs)
    proven: set[str] = set()  # uploads whose reply proved the stored bytes (S3 single PUT + md5)

    breaker = _Breaker(max(FAILURES_IN_A_ROW, 2 * transfers))

    def run_copy(item: PlanItem) -> tuple[PlanItem, ManifestEntry | None, BaseException | None, bool | None]:
        if breaker.open:
            return item, None, TransferError(breaker.why), False
        try:
            if item.path in moves:
                entry = _copy_within(
                    dst_fs, dst_base, moves[item.path], item, algorithm, src_fs, join(src_base, item.path)
                )
            else:
                entry = _copy_one(
                    src_fs,
                    join(src_base, item.path),
                    dst_fs,
                    join(dst_base, item.path),
                    item.path,
                    algorithm,
                    throttle,
                    proven,
                )
            if on_copied is not None:
                on_copied(entry)
        except NotADirectoryError as exc:  # a file at the target where the source has a folder
            problem = _file_in_the_way(item.path, join(dst_base, item.path)) if dst_plain else exc
            breaker.failed(problem)
            return item, None, problem, False
        except Exception as exc:  # one bad file must not stop the others; it is reported
            breaker.failed(exc)
            return item, None, exc, False
        breaker.succeeded()
        if not verify_placed:
            return item, entry, None, True
        if item.path in proven:
            return item, entry, None, True
        target = join(dst_base, item.path)
        try:
            if not dst_plain and provider_digest_matches(dst_fs, target, entry):
                return item, entry, None, True
            # read back now, while the file is hot in the page cache (or just uploaded)
            back = hash_local_file(target, algorithm) if dst_plain else hash_file(dst_fs, target, algorithm)
        except FileNotFoundError:
            back = ("", -1)  # gone right after placement: not what was sent
        except Exception as exc:  # the store did not answer: placed and journaled, verified later
            return item, entry, exc, None
        return item, entry, None, back == (entry.digest, entry.size)

    def run_batch(
        batch: list[PlanItem],
    ) -> list[tuple[PlanItem, ManifestEntry | None, BaseException | None, bool | None]]:
        return [run_copy(item) for item in batch]

    # Small files go to the workers in batches: one task per file costs more than copying 4 KiB.
    # Local to local, small new files take one lane of their own: their copy is mostly short
    # syscalls, and threads doing those in parallel fight over the GIL (more threads, slower).
    # Small files that replace older versions (an incremental sync) take two lanes: the kernel
    # then spends longer per file (the old inode is freed), time that overlaps without the GIL
    # (measured: 4-5% off a 1% sync of 100,000 files). Big files run on the other workers,
    # hashing and writing 1 MiB at a time without the GIL. Path order, not biggest first: a run
    # interrupted again and again (a flaky link, kill -9) still completes its small files each
    # time instead of restarting the same big ones.
    if is_plain_local(src_fs) and is_plain_local(dst_fs) and transfers > 1:
        small = [i for i in copies if i.size < LOCAL_SMALL_FILE]
        big = [i for i in copies if i.size >= LOCAL_SMALL_FILE]
        lanes = 2 if sum(1 for i in small if i.reason != "new") * 2 > len(small) else 1
        tasks = [small[i::lanes] for i in range(lanes) if small[i::lanes]] + list(_batches(big, transfers))
    else:
        tasks = list(_batches(copies, max(1, transfers)))
    with ThreadPoolExecutor(max_workers=max(1, transfers)) as pool:
        for done in pool.map(run_batch, tasks):
            for item, entry, exc, same in done:
                if entry is not None:
                    if same:
                        copied.append(entry)
                    elif same is None:
                        result.not_read_back.append(item.path)
                        result.errors.append(
                            FileError(path=item.path, error=f"placed, read-back failed: {_describe(exc)}")
                        )
                    else:
                        result.mismatched.append(item.path)
                elif isinstance(exc, _SourceChanged):
                    result.unstable.append(item.path)
                else:
                    result.errors.append(FileError(path=item.path, error=_describe(exc or RuntimeError())))
    result.unstable.sort()
    result.files_moved = sum(1 for e in copied if e.path in moves)

    rows: list[Row] = [(e.path, e.size, e.mtime, e.digest) for e in copied]
    result.files_skipped = len(plan.skips)
    if manifest_scope == "all":
        rows.extend(_skipped_rows(plan, prior(), dst_fs, dst_base, algorithm, transfers))
    if link_plan is not None and link_plan.any():
        placed_links = _place_links(link_plan, dst_base, algorithm, on_copied, result)
        copied.extend(placed_links)
        # every link has a row, whatever the scope: a link is re-read each run anyway (no journal
        # replay needed), and the state then always holds the links a resumed run left unrecorded
        rows.extend((e.path, e.size, e.mtime, e.digest) for e in placed_links)
        rows.extend(link_plan.skip_rows(algorithm))
        result.files_skipped += len(link_plan.skips)

    # Deletions run last and only after every copy succeeded: a run that failed half-way must not
    # also remove the old copies of what it could not replace.
    if deletes and (result.errors or result.unstable):
        result.reasons.append(
            f"dataset {dataset}: {len(deletes)} deletions held back because copies failed; "
            "they run on the next successful sync"
        )
    else:
        for item in deletes:
            try:
                dst_fs.rm_file(join(dst_base, item.path))
                result.files_deleted += 1
            except Exception as exc:
                result.errors.append(FileError(path=item.path, error=f"delete failed: {_describe(exc)}"))
        if is_plain_local(dst_fs) and deletes:
            _prune_emptied_dirs(dst_base, _folders_of(i.path for i in deletes), src_listing, empty_dirs)
        if delete and is_plain_local(dst_fs) and dst_empty_dirs:
            # empty folders that left the source go too (rsync --delete); in scope only
            in_scope = selector(include, exclude)
            _prune_emptied_dirs(dst_base, dst_empty_dirs, src_listing, empty_dirs, in_scope)
    if is_plain_local(dst_fs):
        # empty source folders exist at a local target too (rsync -a); object stores have no
        # folders, and a zero-byte "name/" marker would read as a file to some tools: none is made
        for rel in empty_dirs:
            folder = join(dst_base, rel)
            if not os.path.isdir(folder):
                os.makedirs(folder, exist_ok=True)
                result.dirs_created += 1

    result.files_copied = len(copied)
    result.bytes_copied = sum(e.size for e in copied)
    result.target_manifest = Manifest.from_rows(dst_url, algorithm, rows)
    result.target_manifest.listed_at = listed_at
    result.duration_s = round(time.perf_counter() - started, 3)
    result.passed = not result.errors and not result.unstable and not result.mismatched
    moved = f" ({result.files_moved} of them copied within the target: moved or identical content)"
    result.reasons.insert(
        0,
        f"dataset {dataset}: copied {result.files_copied} files ({human_bytes(result.bytes_copied)})"
        f"{moved if result.files_moved else ''}, skipped {result.files_skipped}, deleted "
        f"{result.files_deleted} from {src_url} to {dst_url} in {result.duration_s:.2f} s",
    )
    if result.unstable:
        result.reasons.append(
            f"dataset {dataset}: {len(result.unstable)} files changed while being read "
            f"({1 + UNSTABLE_RETRIES} tries each) and were not recorded as copied: {_some(result.unstable)}; "
            "freeze writes to the source (or exclude files still being written) and re-run"
        )
    if result.mismatched:
        result.reasons.append(
            f"dataset {dataset}: {len(result.mismatched)} files read back at the target differ from what "
            f"was sent: {_some(result.mismatched)}; re-run to send them again"
        )
    if result.errors:
        first = result.errors[0]
        result.reasons.append(
            f"dataset {dataset}: {len(result.errors)} files failed: {_some([e.path for e in result.errors])} "
            f"(first error: {first.error}); no partial file was left under a final name, re-run to resume"
        )
    return result


def _under(paths: list[str], items: list[PlanItem]) -> list[PlanItem]:
    """The items at one of `paths` or below it."""
    at = set(paths)

    def hit(rel: str) -> bool:
        if rel in at:
            return True
        cut = rel.find("/")
        while cut != -1:
            if rel[:cut] in at:
                return True
            cut = rel.find("/", cut + 1)
        return False

    return [item for item in items if hit(item.path)]


def _in_the_way(deletes: list[PlanItem], copies: list[PlanItem]) -> list[PlanItem]:
    """Deletions of target files that stand where a copy must go: a file `a` where the source now
    has `a/b`, or a file `a/b` inside a folder `a` where the source now has a file `a`."""
    targets = [i.path for i in copies]
    folders = _folders_above(targets)
    below = {id(item) for item in _under(targets, deletes)}
    return [item for item in deletes if item.path in folders or id(item) in below]


def _folders_above(paths: Iterable[str]) -> set[str]:
    """Every folder that holds one of `paths`, at any depth."""
    folders: set[str] = set()
    for rel in paths:
        cut = rel.rfind("/")
        while cut > 0 and rel[:cut] not in folders:
            folders.add(rel[:cut])
            cut = rel.rfind("/", 0, cut)
    return folders


def _remove_empty_tree(folder: str) -> None:
    """Remove `folder` and the folders below it, as far as they hold no files (rmdir only)."""
    for root, dirs, _files in os.walk(folder, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, name))
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def _folders_of(paths: Iterable[str]) -> set[str]:
    """The folders holding `paths` (relative; top-level paths have none)."""
    return {p.rsplit("/", 1)[0] for p in paths if "/" in p}


def _prune_emptied_dirs(
    dst_base: str,
    folders: Iterable[str],
    src_listing: Listing,
    empty_dirs: list[str],
    in_scope: Callable[[str], bool] | None = None,
) -> None:
    """Remove target `folders` (and their parents) left empty that the source does not have.

    rsync --delete does the same. Only empty folders go (rmdir). `in_scope` (the run's
    include/exclude): a folder it leaves out is never removed.
    """
    keep = set(empty_dirs) | _folders_above(row[0] for row in src_listing)
    for folder in sorted(set(folders), key=len, reverse=True):  # deepest first
        while folder and folder not in keep and (in_scope is None or in_scope(folder)):
            try:
                os.rmdir(join(dst_base, folder))  # only succeeds on an empty folder
            except OSError:
                break
            folder = folder.rsplit("/", 1)[0] if "/" in folder else ""


FAILURES_IN_A_ROW = 16  # storage errors in a row (at least 2 per worker) that stop a run early


class _Breaker:
    """Stops a run once the target (or source) store keeps failing: an outage, not a bad file.

    Without it every remaining file would go through the client's full retries (seconds each:
    hours for a large tree). Source changes and refused input do not count; a success resets it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.streak = 0
        self.open = False
        self.why = ""
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, _SourceChanged | TransferError):
            return
        with self._lock:
            self.streak += 1
            if self.streak >= self.limit and not self.open:
                self.open = True
                self.why = (
                    f"not attempted: {self.streak} files failed in a row (last: {_describe(exc)}); "
                    "the store looks unreachable, re-run when it answers again"
                )

    def succeeded(self) -> None:
        with self._lock:
            self.streak = 0


SINGLE_PUT_MAX = 48 * 1024 * 1024  # object stores: up to this size one PUT (s3fs buffers 50 MiB anyway)
BATCH_FILES = 64  # files per worker task at most
LOCAL_SMALL_FILE = 1024 * 1024  # local to local, files below this size share one worker
BATCH_BYTES = 16 * 1024 * 1024  # bytes per worker task at most (one big file is a batch of its own)


def _is_s3(fs: AbstractFileSystem) -> bool:
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return bool(protocols & {"s3", "s3a"})


def provider_digest_matches(fs: AbstractFileSystem, path: str, entry: ManifestEntry) -> bool:
    """Whether the store's own digest of the object proves it holds exactly `entry`'s bytes.

    Only digests the store computes over the bytes it received, of the same algorithm: the ETag
    of a single-part S3 upload is its MD5 (not so for a multipart upload, "...-N", or SSE-KMS
    objects, whose ETag then simply does not match); GCS keeps md5Hash (absent on composite
    objects) and crc32c for every object. False means "not proven": read the object back.
    fsspec's `checksum()` is not used: it hashes the listing metadata, not the content.
    """
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if entry.algorithm not in ("md5", "crc32c") or not protocols & {"s3", "s3a", "gs", "gcs"}:
        return False
    fs.invalidate_cache(path)
    info = fs.info(path)
    if int(info.get("size") or -1) != entry.size:
        return False
    if protocols & {"s3", "s3a"}:
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        return entry.algorithm == "md5" and "-" not in etag and etag == entry.digest
    import base64

    stored = info.get("md5Hash") if entry.algorithm == "md5" else info.get("crc32c")
    if not stored:
        return False
    try:
        return base64.b64decode(stored).hex() == entry.digest
    except ValueError:
        return False


def _batches(items: list[PlanItem], workers: int) -> Iterator[list[PlanItem]]:
    """Consecutive items grouped into worker tasks, small enough that the workers stay balanced."""
    per_task = max(1, min(BATCH_FILES, len(items) // (workers * 4) or 1))
    batch: list[PlanItem] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= per_task or size + item.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


def source_mtime_precision(fs: AbstractFileSystem) -> float:
    """How far apart two writes must be for this filesystem's mtimes to tell them apart (seconds).

    Local filesystems stamp mtimes from a coarse kernel clock (one timer tick, up to 10 ms);
    object stores keep whole seconds (S3 LastModified) or milliseconds (GCS).
    """
    return 0.02 if is_local(fs) else 1.0


def listing_mtime_precision(fs: AbstractFileSystem, listing: Listing) -> float:
    """`source_mtime_precision`, widened to 2 s for a local tree whose mtimes are all whole seconds.

    ext3, NFS and SMB mounts keep whole seconds and FAT two: a same-size edit in the second the
    previous run listed the tree would look unchanged. A tree unpacked from an archive looks the
    same and only gets a few more digest comparisons; on a nanosecond filesystem the check stops
    at the first fractional mtime.
    """
    base = source_mtime_precision(fs)
    if is_local(fs) and listing and all(row[2].is_integer() for row in listing):
        return max(base, 2.0)
    return base


def _settle_racy(
    plan: TransferPlan,
    src_fs: AbstractFileSystem,
    src_base: str,
    dst_fs: AbstractFileSystem,
    dst_base: str,
    algorithm: str,
    workers: int,
) -> None:
    """Compare source and target digests of each racy skip; a difference turns the skip into a copy."""

    def one(rel: str) -> tuple[str, bool]:
        try:
            a = hash_file(src_fs, join(src_base, rel), algorithm)
            b = hash_file(dst_fs, join(dst_base, rel), algorithm)
        except FileNotFoundError:
            return rel, True
        return rel, a != b

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        changed = {rel for rel, differs in pool.map(one, plan.racy) if differs}
    if not changed:
        return
    keep = []
    for row in plan.skips:
        if row[0] in changed:
            plan.items.append(
                PlanItem(
                    path=row[0],
                    action="copy",
                    reason="same size and mtime, different digest",
                    size=row[1],
                    mtime=row[2],
                )
            )
        else:
            keep.append(row)
    plan.skips = keep


def _find_moves(
    plan: TransferPlan,
    ref: Manifest | None,
    dst_listing: Listing,
    src_fs: AbstractFileSystem,
    src_base: str,
    algorithm: str,
    workers: int,
) -> dict[str, str]:
    """New paths whose content the target already holds: {new path: target path with that content}.

    Candidates are new source files with the size of a file the last verified manifest vouches
    for and that is still at the target with that size; their source is hashed (a local read)
    and matched by digest. The copy within the target is read back like any other copy.
    A target file this run overwrites is no origin: the copies run concurrently, so the copy
    within could read its new content (a checkpoint renamed away and replaced at the same size).
    """
    if ref is None:
        return {}
    there = {rel: size for rel, size, _ in dst_listing}
    overwritten = {i.path for i in plan.items if i.action == "copy"}
    by_size: dict[int, dict[str, str]] = {}
    for path, size, _mtime, digest in ref.rows():
        if size > 0 and there.get(path) == size and path not in overwritten:
            by_size.setdefault(size, {}).setdefault(digest, path)
    candidates = [i for i in plan.items if i.reason == "new" and i.size in by_size]
    if not candidates:
        return {}

    def one(item: PlanItem) -> tuple[str, str | None]:
        try:
            digest = hash_file(src_fs, join(src_base, item.path), algorithm)[0]
        except OSError:
            return item.path, None
        return item.path, by_size[item.size].get(digest)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = {rel: origin for rel, origin in pool.map(one, candidates) if origin is not None}
    for item in plan.items:
        if item.path in found:
            item.reason = f"content already at the target as {found[item.path]!r}: copied there"
    return found


def _copy_within(
    dst_fs: AbstractFileSystem,
    dst_base: str,
    origin: str,
    item: PlanItem,
    algorithm: str,
    src_fs: AbstractFileSystem,
    src_path: str,
) -> ManifestEntry:
    """Copy `origin` to `item.path` inside the target (server-side on object stores).

    The source is hashed again after the copy: a file that changed since it was matched is
    reported unstable, never recorded with the digest it had when matched.
    """
    size, mtime = _stat(src_fs, src_path, is_plain_local(src_fs))
    if size != item.size or item.mtime is None or abs(mtime - item.mtime) > MTIME_TOLERANCE_S:
        raise _SourceChanged(item.path)
    target = join(dst_base, item.path)
    if is_plain_local(dst_fs):
        tmp = temp_name(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            import shutil

            shutil.copyfile(join(dst_base, origin), tmp)
            ns = int(mtime * 1_000_000_000)
            os.utime(tmp, ns=(ns, ns))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    else:
        dst_fs.cp_file(join(dst_base, origin), target)
    digest, n = hash_file(src_fs, src_path, algorithm)
    after = _stat(src_fs, src_path, is_plain_local(src_fs))
    if after != (size, mtime) or n != size:
        raise _SourceChanged(item.path)
    return ManifestEntry(path=item.path, size=n, mtime=mtime, digest=digest, algorithm=algorithm)


def _skipped_rows(
    plan: TransferPlan,
    ref: Manifest | None,
    dst_fs: AbstractFileSystem,
    dst_base: str,
    algorithm: str,
    workers: int,
) -> list[Row]:
    """Manifest rows of the skipped files: the previous digest where it stands for this version
    (same size and source mtime), else a read-back of the target, so every row holds a real digest.
    """
    prev = ref.index() if ref is not None else {}
    rows: list[Row] = []
    to_hash: list[tuple[str, int, float]] = []
    for rel, size, mtime in plan.skips:
        known = prev.get(rel)
        if known is not None and known[1] == size and abs(known[2] - mtime) <= MTIME_TOLERANCE_S:
            rows.append((rel, size, mtime, known[3]))
        else:
            to_hash.append((rel, size, mtime))

    def rehash(row: tuple[str, int, float]) -> Row:
        return row[0], row[1], row[2], hash_file(dst_fs, join(dst_base, row[0]), algorithm)[0]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rows.extend(pool.map(rehash, to_hash))
    return rows


@dataclass
class _LinkPlan:
    """What links="copy" does with symlinks; kept apart from the file plan (links are not streamed).

    Deletes of target links not in the source are also in the file plan's items (the file
    deletions remove them, after the copies, under the same cap and hold-back rules).
    """

    place: list[tuple[PlanItem, str]] = field(default_factory=list)  # new or changed: (item, link text)
    skips: list[tuple[PlanItem, str]] = field(default_factory=list)  # same text at the target
    deletes: list[PlanItem] = field(default_factory=list)  # target links not in the source (delete on)
    cleared: list[PlanItem] = field(default_factory=list)  # target links where the source has a folder

    def any(self) -> bool:
        return bool(self.place or self.skips or self.deletes or self.cleared)

    def add_to(self, items: list[PlanItem], *, detail: bool) -> list[PlanItem]:
        """The reported plan with the links in it (path order, deletes last, as `all_items`)."""
        extra = [i for i, _ in self.place] + self.cleared + ([i for i, _ in self.skips] if detail else [])
        return sorted([*items, *extra], key=lambda i: (i.action == "delete", i.path))

    def describe(self, dataset: str) -> str:
        removed = len(self.deletes) + len(self.cleared)
        return (
            f"dataset {dataset}: symlinks kept as links (links=copy): {len(self.place)} new or changed, "
            f"{len(self.skips)} unchanged, {removed} to remove"
        )

    def skip_rows(self, algorithm: str) -> list[Row]:
        rows: list[Row] = []
        for item, text in self.skips:
            digest, size = link_digest(text, algorithm)
            rows.append((item.path, size, item.mtime or 0.0, digest))
        return rows


def _parents(paths: Iterable[str]) -> set[str]:
    """Every folder above the given relative paths ("a/b/c" -> "a", "a/b")."""
    out: set[str] = set()
    for path in paths:
        cut = path.rfind("/")
        while cut > 0:
            parent = path[:cut]
            if parent in out:
                break  # its own parents are in already
            out.add(parent)
            cut = parent.rfind("/")
    return out


def _plan_links(
    plan: TransferPlan,
    src_fs: AbstractFileSystem,
    src_base: str,
    dst_fs: AbstractFileSystem,
    dst_base: str,
    src_listing: Listing,
    include: Sequence[str],
    exclude: Sequence[str],
    delete: bool,
    max_delete: int,
) -> _LinkPlan:
    """Decide place / skip / delete per symlink (links="copy"), and fit the file plan around them.

    A link replaces a target file of its path (rsync -l): that file is neither deleted nor "kept".
    A target link where the source has a file is replaced by the file's copy; one where the source
    has a folder is removed before any file is written (a write through it would land wherever
    it points). Raises DeleteLimitExceeded when file and link deletions together pass `max_delete`.
    """
    src_links: LinkListing = list_links(src_fs, src_base, include, exclude)
    dst_links: LinkListing = list_links(dst_fs, dst_base, include, exclude)
    links = _LinkPlan()
    at_src = {rel for rel, _, _ in src_links}
    there = {rel: text for rel, text, _ in dst_links}
    for rel, text, mtime in src_links:
        size = len(os.fsencode(text))
        old = there.get(rel)
        if old == text:
            item = PlanItem(path=rel, action="skip", reason="same symlink text", size=size, mtime=mtime)
            links.skips.append((item, text))
        else:
            reason = "new symlink" if old is None else "symlink text differs"
            item = PlanItem(path=rel, action="copy", reason=reason, size=size, mtime=mtime)
            links.place.append((item, text))
    if at_src:
        plan.items = [i for i in plan.items if not (i.action == "delete" and i.path in at_src)]
        plan.extra_kept = [p for p in plan.extra_kept if p not in at_src]
    src_files = {row[0] for row in src_listing}
    folders = _parents([*src_files, *at_src]) if dst_links else set()
    kept: list[str] = []
    for rel, text, mtime in dst_links:
        if rel in at_src or rel in src_files:
            continue
        item = PlanItem(path=rel, action="delete", reason="", size=len(os.fsencode(text)), mtime=mtime)
        if rel in folders:
            item.reason = "symlink at the target where the source has a folder: replaced by the folder"
            links.cleared.append(item)
        elif delete:
            item.reason = "symlink not in source"
            links.deletes.append(item)
        else:
            kept.append(rel)
    if links.deletes:
        doomed = [i.path for i in plan.items if i.action == "delete"] + [i.path for i in links.deletes]
        if len(doomed) > max_delete:
            raise DeleteLimitExceeded(plan.dataset, len(doomed), max_delete, sorted(doomed))
        plan.items.extend(links.deletes)
    if kept:
        plan.extra_kept = sorted([*plan.extra_kept, *kept])
    return links


def _clear_links(links: _LinkPlan, dst_base: str, dataset: str) -> int:
    """Remove target links that stand where the source has a folder, before any file is copied."""
    for item in links.cleared:
        try:
            os.unlink(join(dst_base, item.path))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise TransferError(
                f"dataset {dataset}: the target's symlink {item.path!r} stands where the source has a "
                f"folder and could not be removed ({_describe(exc)}); no file was copied. Remove it, "
                "then re-run"
            ) from exc
    return len(links.cleared)


def _place_link(target: str, text: str, mtime: float | None) -> None:
    """Put a symlink holding `text` at `target` atomically: made under a temp name, then renamed
    over the file or link there. A folder there is refused (a rename cannot replace it)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(target).st_mode):
            raise TransferError(
                f"{target} is a folder at the target where the source has a symlink; "
                "remove the folder (or move it aside) and re-run"
            )
    tmp = temp_name(target)
    try:
        os.symlink(text, tmp)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(text, tmp)
    try:
        if mtime is not None and os.utime in os.supports_follow_symlinks:
            ns = int(mtime * 1_000_000_000)
            os.utime(tmp, ns=(ns, ns), follow_symlinks=False)  # the link's own time, as rsync -lt
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _place_links(
    links: _LinkPlan,
    dst_base: str,
    algorithm: str,
    on_copied: Callable[[ManifestEntry], None] | None,
    result: TransferResult,
) -> list[ManifestEntry]:
    """Place the new and changed links, read each back; failures go to `result` like files'."""
    placed: list[ManifestEntry] = []
    for item, text in links.place:
        target = join(dst_base, item.path)
        try:
            _place_link(target, text, item.mtime)
            if os.readlink(target) != text:
                result.mismatched.append(item.path)
                continue
            digest, size = link_digest(text, algorithm)
            entry = ManifestEntry(
                path=item.path, size=size, mtime=item.mtime or 0.0, digest=digest, algorithm=algorithm
            )
            if on_copied is not None:
                on_copied(entry)
        except Exception as exc:  # one bad link must not stop the others; it is reported
            result.errors.append(FileError(path=item.path, error=_describe(exc)))
            continue
        placed.append(entry)
    return placed


def verify_tree(
    dst_fs: AbstractFileSystem,
    dst_root: str,
    expected: Manifest,
    *,
    dataset: str,
    workers: int = 4,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    links: LinkPolicy = "skip",
) -> VerifyResult:
    """Read the target back and compare it with `expected`: missing, extra, size and digest mismatches.

    With links="copy" a target symlink is compared by its text (`link_digest`), never followed.
    An empty expected manifest fails (nothing was verified).
    """
    started = time.perf_counter()
    base = strip_root(dst_fs, dst_root)
    url = dst_fs.unstrip_protocol(base)
    want = expected.by_path()
    found: LinkListing | None = [] if links == "copy" else None
    listing = {
        rel: (size, mtime)
        for rel, size, mtime in list_files(dst_fs, base, include, exclude, links=links, links_found=found)
    }
    link_text = {rel: text for rel, text, _ in found or ()}
    for rel, text, mtime in found or ():
        listing[rel] = (len(os.fsencode(text)), mtime)
    present = {rel: size for rel, (size, _) in listing.items()}
    result = VerifyResult(dataset=dataset, target=url, algorithm=expected.algorithm, passed=False)
    result.missing = sorted(set(want) - set(present))
    result.extra = sorted(set(present) - set(want))
    both = sorted(set(want) & set(present))
    result.size_mismatch = [p for p in both if present[p] != want[p].size]
    # Every file at the target is read back, extras and size mismatches too, so the observed
    # manifest is an independent account of the target for Great Expectations to compare.
    observed: list[ManifestEntry] = []

    def one(rel: str) -> tuple[str, str | None, int]:
        if rel in link_text:  # a link kept as a link: its text is its content
            digest, n = link_digest(link_text[rel], expected.algorithm)
            return rel, digest, n
        try:
            digest, n = hash_file(dst_fs, join(base, rel), expected.algorithm)
        except FileNotFoundError:  # removed between listing and reading
            return rel, None, 0
        return rel, digest, n

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for rel, digest, n in pool.map(one, sorted(present)):
            if digest is None:
                if rel in want:
                    result.missing.append(rel)
                continue
            observed.append(
                ManifestEntry(
                    path=rel,
                    size=n,
                    mtime=listing[rel][1] or 0.0,
                    digest=digest,
                    algorithm=expected.algorithm,
                )
            )
            if rel not in want or rel in result.size_mismatch:
                continue
            if digest != want[rel].digest or n != want[rel].size:
                result.digest_mismatch.append(rel)
            else:
                result.files_verified += 1
                result.bytes_verified += n
    result.observed = Manifest(root=url, algorithm=expected.algorithm, entries=observed)
    result.missing.sort()
    result.duration_s = round(time.perf_counter() - started, 3)

    problems = [
        ("missing at the target", result.missing),
        ("at the target but not in the manifest", result.extra),
        ("with a different size", result.size_mismatch),
        (f"with a different {expected.algorithm} digest", result.digest_mismatch),
    ]
    for label, paths in problems:
        if paths:
            result.reasons.append(f"dataset {dataset}: {len(paths)} files {label} in {url}: {_some(paths)}")
    if result.extra:
        result.reasons.append(
            f"dataset {dataset}: a sync with --delete (delete: true) removes the extra files; a copy, "
            "or a sync without it, keeps them"
        )
    if not want:
        result.reasons.append(f"dataset {dataset}: the expected manifest is empty; nothing was verified")
    result.passed = bool(want) and not any(paths for _, paths in problems)
    if result.passed:
        result.reasons.append(
            f"dataset {dataset}: {result.files_verified} files ({human_bytes(result.bytes_verified)}) in "
            f"{url} match the manifest ({expected.algorithm}) in {result.duration_s:.2f} s"
        )
    return result


__all__ = [
    "DeleteLimitExceeded",
    "FileError",
    "PathCollision",
    "PlanItem",
    "SourceNotFound",
    "TransferError",
    "TransferPlan",
    "TransferResult",
    "VerifyResult",
    "copy_tree",
    "plan_transfer",
    "verify_tree",
]
