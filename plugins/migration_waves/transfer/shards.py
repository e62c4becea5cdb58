"""Split a dataset into shards balanced by bytes, and merge the shards' manifests back into one.

A large dataset's seed is copied by N mapped Airflow tasks (dynamic task mapping), one per
shard. The split is a pure function of the source listing: the same tree always gives the same
shards, every path is in exactly one shard, and the byte totals of any two shards differ by at
most the size of the largest file (greedy largest-first onto the lightest shard).
"""

from __future__ import annotations

import glob
import hashlib
import heapq
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from migration_waves.transfer.errors import TransferError
from migration_waves.transfer.manifest import Listing, Manifest, ManifestEntry


class Shard(BaseModel):
    """The files one mapped copy task moves."""

    index: int = Field(ge=0)
    paths: list[str] = Field(description="relative paths, sorted")
    bytes: int = Field(ge=0)


class ShardPlan(BaseModel):
    """A dataset's split: the shards, and an id that changes whenever the split would."""

    dataset: str
    plan_id: str = Field(description="digest of the shards' paths; names the shard manifests of this split")
    shards: list[Shard]

    @property
    def total_bytes(self) -> int:
        """Bytes over all shards."""
        return sum(s.bytes for s in self.shards)

    @property
    def paths(self) -> list[str]:
        """Every path of the plan, sorted."""
        return sorted(p for s in self.shards for p in s.paths)


def split_into_shards(listing: Listing, n: int, *, dataset: str) -> ShardPlan:
    """Split (path, size, mtime) rows into at most `n` shards balanced by bytes.

    Largest files first (ties by path), each onto the shard with the fewest bytes so far (ties:
    fewer files, then lower index); shards stay non-empty, so fewer files than `n` give fewer
    shards. Deterministic: the result depends only on the paths and sizes.
    """
    if n < 1:
        raise ValueError(f"dataset {dataset}: shards must be at least 1, not {n}")
    rows = sorted(((rel, int(size)) for rel, size, _ in listing), key=lambda r: (-r[1], r[0]))
    if len({rel for rel, _ in rows}) != len(rows):
        raise TransferError(f"dataset {dataset}: the listing names a path twice; cannot shard it")
    count = min(n, len(rows))
    heap = [(0, 0, i) for i in range(count)]  # (bytes, files, index): the lightest shard on top
    paths: list[list[str]] = [[] for _ in range(count)]
    totals = [0] * count
    for rel, size in rows:
        total, files, i = heapq.heappop(heap)
        paths[i].append(rel)
        totals[i] = total + size
        heapq.heappush(heap, (total + size, files + 1, i))
    shards = [Shard(index=i, paths=sorted(paths[i]), bytes=totals[i]) for i in range(count)]
    digest = hashlib.sha256()
    for shard in shards:
        digest.update("\0".join(shard.paths).encode("utf-8", "surrogateescape") + b"\1")
    return ShardPlan(dataset=dataset, plan_id=digest.hexdigest()[:16], shards=shards)


def shard_include(shard: Shard) -> list[str]:
    """include patterns that select exactly the shard's paths, whatever characters they hold.

    glob.escape makes `*`, `?` and `[` literal for fnmatch; list_files looks such exact patterns
    up in a set, so a shard of many files selects in one pass.
    """
    return [glob.escape(p) for p in shard.paths]


def merge_shard_manifests(
    plan: ShardPlan, manifests: Sequence[Manifest | None], *, root: str, algorithm: str
) -> Manifest:
    """One manifest of the dataset from its shards' manifests, checked against the plan.

    Raises TransferError naming the shards when one has no manifest, a manifest holds a path of
    another shard or none of the plan's, a path is in two manifests, or a planned path is missing.
    """
    if len(manifests) != len(plan.shards):
        raise TransferError(
            f"dataset {plan.dataset}: {len(manifests)} shard manifests for {len(plan.shards)} planned shards"
        )
    missing_shards = [s.index for s, m in zip(plan.shards, manifests, strict=True) if m is None]
    if missing_shards:
        raise TransferError(
            f"dataset {plan.dataset}: shard(s) {_listed(missing_shards)} left no manifest; clear their copy "
            "tasks (or the dataset's seed) and run them again"
        )
    entries: dict[str, ManifestEntry] = {}
    problems: list[str] = []
    for shard, manifest in zip(plan.shards, manifests, strict=True):
        assert manifest is not None  # checked above
        if manifest.algorithm != algorithm:
            problems.append(f"shard {shard.index} is {manifest.algorithm}, not {algorithm}")
            continue
        own = set(shard.paths)
        for entry in manifest.entries:
            if entry.path not in own:
                problems.append(f"shard {shard.index} holds {entry.path!r}, which is not its own")
            elif entry.path in entries:
                problems.append(f"{entry.path!r} is in two shard manifests")
            else:
                entries[entry.path] = entry
    absent = sorted(set(plan.paths) - set(entries))
    if absent:
        problems.append(f"{len(absent)} planned file(s) in no shard manifest: {_listed(absent)}")
    if problems:
        shown = "; ".join(problems[:5])
        raise TransferError(f"dataset {plan.dataset}: the shard manifests do not add up: {shown}")
    return Manifest(root=root, algorithm=algorithm, entries=[entries[p] for p in sorted(entries)])


def _listed(items: Iterable[object], limit: int = 5) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
