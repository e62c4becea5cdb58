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

import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from migration_waves.transfer.atomic import staged_write, supports_mtime
from migration_waves.transfer.errors import (
    DeleteLimitExceeded,
    PathCollision,
    SourceNotFound,
    TransferError,
)
from migration_waves.transfer.manifest import (
    CHUNK_SIZE,
    LinkPolicy,
    Listing,
    Manifest,
    ManifestEntry,
    hash_file,
    hasher,
    info_mtime,
    join,
    list_files,
    strip_root,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fsspec import AbstractFileSystem

# Two mtimes closer than this are "the same": float seconds lose sub-microsecond precision on
# the way through os.utime/stat, and some stores round to milliseconds.
MTIME_TOLERANCE_S = 0.002
UNSTABLE_RETRIES = 2  # a file that changes while read is tried 1 + 2 times
SHOW_PATHS = 5  # paths named in one reason sentence

Action = Literal["copy", "skip", "delete"]


class PlanItem(BaseModel):
    """What the engine will do with one path, and why."""

    path: str
    action: Action
    reason: str
    size: int = 0
    mtime: float | None = None


class TransferPlan(BaseModel):
    """Per-path actions for one dataset, decided before anything moves."""

    dataset: str
    items: list[PlanItem] = Field(default_factory=list)
    extra_kept: list[str] = Field(
        default_factory=list, description="target files not in the source, kept because delete is off"
    )

    def of(self, action: Action) -> list[PlanItem]:
        """Items with one action."""
        return [i for i in self.items if i.action == action]

    @property
    def bytes_to_copy(self) -> int:
        """Bytes the copies will move."""
        return sum(i.size for i in self.of("copy"))

    def counts(self) -> dict[str, int]:
        """Number of items per action."""
        return {a: len(self.of(a)) for a in ("copy", "skip", "delete")}


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
    files_deleted: int = 0
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


def _normalise_source(source: Manifest | Sequence[ManifestEntry] | Listing) -> dict[str, tuple[int, float]]:
    rows: dict[str, tuple[int, float]] = {}
    items: Any = source.entries if isinstance(source, Manifest) else source
    for item in items:
        if isinstance(item, ManifestEntry):
            rows[item.path] = (item.size, item.mtime)
        else:
            rel, size, mtime = item
            rows[rel] = (int(size), float(mtime))
    return rows


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
) -> TransferPlan:
    """Decide copy / skip / delete per path.

    `source` is a Manifest or a listing of (path, size, mtime); `dst_listing` lists the target.
    `previous` is the last verified manifest of this target: its mtimes are the source mtimes at
    copy time, the only reliable reference on object stores. `dst_keeps_mtime` says the target
    holds the source mtime (local disk: the engine sets it before placing), so a target file with
    the source's size and mtime is current even where `previous` is older (a run killed between
    placing a file and recording it). Paths in `recopy` (they failed verification at the target)
    are copied whatever their size and mtime say. Raises DeleteLimitExceeded before
    anything moves when the deletions would exceed `max_delete`.
    """
    src = _normalise_source(source)
    dst = {rel: (size, mtime) for rel, size, mtime in dst_listing}
    prev = previous.by_path() if previous is not None else {}
    must_copy = set(recopy)
    items: list[PlanItem] = []
    for rel in sorted(src):
        size, mtime = src[rel]

        def item(action: Action, reason: str, rel: str = rel, size: int = size, mtime: float = mtime) -> None:
            items.append(PlanItem(path=rel, action=action, reason=reason, size=size, mtime=mtime))

        if rel not in dst:
            item("copy", "new")
            continue
        if rel in must_copy:
            item("copy", "failed verification")
            continue
        dst_size, dst_mtime = dst[rel]
        if dst_size != size:
            item("copy", "size differs")
            continue
        ref = prev.get(rel)
        if dst_keeps_mtime and abs(dst_mtime - mtime) <= MTIME_TOLERANCE_S:
            item("skip", "same size and mtime")
        elif ref is not None:
            if ref.size != size:
                item("copy", "size differs")
            elif mtime > ref.mtime + MTIME_TOLERANCE_S:
                item("copy", "mtime newer")
            elif mtime < ref.mtime - MTIME_TOLERANCE_S:
                # an older source (restored from backup) is still a different version
                item("copy", "mtime differs")
            else:
                item("skip", "same size and mtime")
        elif mtime > dst_mtime + MTIME_TOLERANCE_S:
            item("copy", "mtime newer")
        else:
            # without a previous manifest the target's own mtime is the reference: on a local
            # target the engine set it to the source mtime; on an object store it is the upload time
            item("skip", "same size and mtime")
    extra = sorted(set(dst) - set(src))
    plan = TransferPlan(dataset=dataset)
    if delete:
        if len(extra) > max_delete:
            raise DeleteLimitExceeded(dataset, len(extra), max_delete, extra)
        items.extend(
            PlanItem(path=rel, action="delete", reason="not in source", size=dst[rel][0], mtime=dst[rel][1])
            for rel in extra
        )
    else:
        plan.extra_kept = extra
    plan.items = items
    return plan


def _stat(fs: AbstractFileSystem, path: str) -> tuple[int, float]:
    # listings are cached by some backends (s3fs dircache); a stale answer would hide a change
    fs.invalidate_cache(path)
    info = fs.info(path)
    return int(info.get("size") or 0), info_mtime(info)


def _copy_one(
    src_fs: AbstractFileSystem,
    src_path: str,
    dst_fs: AbstractFileSystem,
    dst_path: str,
    rel: str,
    algorithm: str,
    throttle: Callable[[int], None] | None = None,
) -> ManifestEntry:
    """Stream one file source -> target while hashing; place it only if the source held still."""
    for _attempt in range(1 + UNSTABLE_RETRIES):
        size, mtime = _stat(src_fs, src_path)
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
                after = _stat(src_fs, src_path)
                # raising inside staged_write discards the staged copy: nothing gets placed
                if after[0] != size or abs(after[1] - mtime) > MTIME_TOLERANCE_S or n != size:
                    raise _SourceChanged(f"{rel}: {size} B/{mtime} before, {after[0]} B/{after[1]} after")
        except _SourceChanged:
            continue
        return ManifestEntry(path=rel, size=n, mtime=mtime, digest=h.hexdigest(), algorithm=algorithm)
    raise _SourceChanged(rel)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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
    previous: Manifest | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_delete_pct: float | None = None,
    on_copied: Callable[[ManifestEntry], None] | None = None,
    on_plan: Callable[[TransferPlan], None] | None = None,
    throttle: Callable[[int], None] | None = None,
    check_names: bool = True,
    recopy: Iterable[str] = (),
    links: LinkPolicy = "skip",
) -> TransferResult:
    """Copy a tree from one fsspec filesystem to another: plan, then copy, then delete.

    Returns a TransferResult whose `target_manifest` lists what is now at the target with the
    digests computed while streaming (skipped files carry the previous digest, or are read back
    when there is none). Raises SourceNotFound for a missing or empty source and
    DeleteLimitExceeded when the plan would delete more than `max_delete` files (or, with
    `max_delete_pct`, more than that percentage of the target's files, whichever is lower), and
    PathCollision when source paths cannot be held apart at the target (`check_names`); all before
    anything moves. `on_copied` is called with each file's entry right after it is placed (the
    resume journal), `on_plan(plan)` once the plan stands, before anything moves (progress),
    `throttle(nbytes)` before each chunk is written (bandwidth limit). `links`:
    local source symlinks are skipped or followed (loops detected and skipped; see list_files).
    Per-file failures do not raise: they are in `errors` / `unstable` and `passed` is False.
    """
    started = time.perf_counter()
    hasher(algorithm)  # fail fast on an unknown algorithm
    src_base, dst_base = strip_root(src_fs, src_root), strip_root(dst_fs, dst_root)
    src_url, dst_url = src_fs.unstrip_protocol(src_base), dst_fs.unstrip_protocol(dst_base)

    if not src_fs.exists(src_base):
        raise SourceNotFound(dataset, src_url, "does not exist")
    links_skipped: list[str] = []
    src_listing = list_files(src_fs, src_base, include, exclude, links=links, skipped=links_skipped)
    if not src_listing:
        detail = "holds no files"
        if include or exclude:
            detail += f" matching include={list(include)} exclude={list(exclude)}"
        raise SourceNotFound(dataset, src_url, detail)
    if check_names:
        from migration_waves.transfer.names import capabilities, find_collisions

        collisions = find_collisions((rel for rel, _, _ in src_listing), capabilities(dst_fs, dst_base))
        if collisions:
            raise PathCollision(dataset, dst_url, collisions)
    dst_listing = list_files(dst_fs, dst_base, include, exclude, links=links)
    if max_delete_pct is not None:
        max_delete = min(max_delete, math.floor(len(dst_listing) * max_delete_pct / 100))
    plan = plan_transfer(
        src_listing,
        dst_listing,
        delete=delete,
        max_delete=max_delete,
        dataset=dataset,
        previous=previous,
        dst_keeps_mtime=supports_mtime(dst_fs),
        recopy=recopy,
    )
    result = TransferResult(
        dataset=dataset,
        dry_run=dry_run,
        source=src_url,
        target=dst_url,
        plan=plan.items,
        extra_kept=plan.extra_kept,
        links_skipped=links_skipped,
        passed=True,
    )
    if links_skipped:
        result.reasons.append(
            f"dataset {dataset}: {len(links_skipped)} symlinks not copied (links={links}): "
            f"{_some(links_skipped)}"
            + ("; use links: follow to copy what they point to" if links == "skip" else "")
        )
    counts = plan.counts()
    if dry_run:
        result.reasons.append(
            f"dataset {dataset}: dry run; would copy {counts['copy']} files "
            f"({human_bytes(plan.bytes_to_copy)}), skip {counts['skip']}, delete {counts['delete']} "
            f"from {src_url} to {dst_url}"
        )
        result.duration_s = round(time.perf_counter() - started, 3)
        return result

    copies = plan.of("copy")
    if on_plan is not None:
        on_plan(plan)
    copied: list[ManifestEntry] = []

    def run_copy(item: PlanItem) -> tuple[PlanItem, ManifestEntry | None, BaseException | None]:
        try:
            entry = _copy_one(
                src_fs,
                join(src_base, item.path),
                dst_fs,
                join(dst_base, item.path),
                item.path,
                algorithm,
                throttle,
            )
            if on_copied is not None:
                on_copied(entry)
            return item, entry, None
        except Exception as exc:  # one bad file must not stop the others; it is reported
            return item, None, exc

    with ThreadPoolExecutor(max_workers=max(1, transfers)) as pool:
        for item, entry, exc in pool.map(run_copy, copies):
            if entry is not None:
                copied.append(entry)
            elif isinstance(exc, _SourceChanged):
                result.unstable.append(item.path)
            else:
                result.errors.append(FileError(path=item.path, error=_describe(exc or RuntimeError())))

    # Skipped files: carry the digest of the previous verified manifest; with none (first run
    # over a pre-seeded target) read the target back, so every entry holds a real content digest.
    prev = previous.by_path() if previous is not None and previous.algorithm == algorithm else {}
    skips = plan.of("skip")
    # the previous digest stands only for the same version: same size and same source mtime
    to_hash = [
        i
        for i in skips
        if i.path not in prev
        or prev[i.path].size != i.size
        or (i.mtime is not None and abs(prev[i.path].mtime - i.mtime) > MTIME_TOLERANCE_S)
    ]

    def rehash(item: PlanItem) -> tuple[str, str]:
        return item.path, hash_file(dst_fs, join(dst_base, item.path), algorithm)[0]

    with ThreadPoolExecutor(max_workers=max(1, transfers)) as pool:
        read_back = dict(pool.map(rehash, to_hash))
    skipped = [
        ManifestEntry(
            path=i.path,
            size=i.size,
            mtime=i.mtime if i.mtime is not None else prev[i.path].mtime,
            digest=read_back[i.path] if i.path in read_back else prev[i.path].digest,
            algorithm=algorithm,
        )
        for i in skips
    ]

    # Deletions run last and only after every copy succeeded: a run that failed half-way must not
    # also remove the old copies of what it could not replace.
    deletes = plan.of("delete")
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

    result.files_copied = len(copied)
    result.bytes_copied = sum(e.size for e in copied)
    result.files_skipped = len(skipped)
    entries = sorted(copied + skipped, key=lambda e: e.path)
    result.target_manifest = Manifest(root=dst_url, algorithm=algorithm, entries=entries)
    result.duration_s = round(time.perf_counter() - started, 3)
    result.passed = not result.errors and not result.unstable
    result.reasons.insert(
        0,
        f"dataset {dataset}: copied {result.files_copied} files ({human_bytes(result.bytes_copied)}), "
        f"skipped {result.files_skipped}, deleted {result.files_deleted} from {src_url} to {dst_url} "
        f"in {result.duration_s:.2f} s",
    )
    if result.unstable:
        result.reasons.append(
            f"dataset {dataset}: {len(result.unstable)} files changed while being read "
            f"({1 + UNSTABLE_RETRIES} tries each) and were not recorded as copied: {_some(result.unstable)}; "
            "freeze writes to the source (or exclude files still being written) and re-run"
        )
    if result.errors:
        first = result.errors[0]
        result.reasons.append(
            f"dataset {dataset}: {len(result.errors)} files failed: {_some([e.path for e in result.errors])} "
            f"(first error: {first.error}); no partial file was left under a final name, re-run to resume"
        )
    return result


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

    An empty expected manifest fails (nothing was verified).
    """
    started = time.perf_counter()
    base = strip_root(dst_fs, dst_root)
    url = dst_fs.unstrip_protocol(base)
    want = expected.by_path()
    listing = {
        rel: (size, mtime) for rel, size, mtime in list_files(dst_fs, base, include, exclude, links=links)
    }
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
