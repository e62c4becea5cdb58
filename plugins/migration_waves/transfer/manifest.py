"""Manifests: what a tree holds, file by file, with content digests.

A manifest is the unit the rest of the project reasons about: the copy engine plans against the
last verified one, Great Expectations validates source against target, and the state store keeps
them as Parquet. Digests are always computed from file contents, never from store metadata
(an S3 multipart ETag or fsspec's `checksum()` is not a content digest).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from migration_waves.transfer.errors import TransferError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from fsspec import AbstractFileSystem

CHUNK_SIZE = 8 * 1024 * 1024  # 8 MiB: large enough to stream fast, small enough to keep memory flat
ALGORITHMS = ("blake3", "sha256", "md5", "xxh128", "crc32c")
TEMP_MARKER = ".mwpart-"  # our own in-flight files are named .<name>.mwpart-<uuid>

Listing = list[tuple[str, int, float]]
LinkPolicy = Literal["skip", "follow"]
LINK_POLICIES: tuple[str, ...] = ("skip", "follow")


class Hasher(Protocol):
    """The part of hashlib's interface the engine uses (blake3 has the same shape)."""

    def update(self, data: bytes, /) -> Any: ...

    def hexdigest(self) -> str: ...


class _Crc32c:
    """CRC32C (Castagnoli) with hashlib's shape; hex of the 4 big-endian bytes, as GCS's crc32c."""

    def __init__(self) -> None:
        import google_crc32c

        self._c = google_crc32c.Checksum()

    def update(self, data: bytes, /) -> None:
        self._c.update(data)

    def hexdigest(self) -> str:
        return bytes(self._c.digest()).hex()


def hasher(algorithm: str) -> Hasher:
    """A fresh incremental hasher for one of ALGORITHMS ("blake3", "sha256", "md5", "xxh128", "crc32c")."""
    if algorithm == "blake3":
        import blake3

        # single-threaded per file (the default): the engine already hashes files on a thread pool
        return blake3.blake3()
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "md5":
        # md5 only as a content fingerprint some stores publish, not for security
        return hashlib.md5(usedforsecurity=False)
    if algorithm == "xxh128":
        import xxhash

        # fast non-cryptographic fingerprint (xxh3, 128 bits): catches corruption, not tampering
        return xxhash.xxh3_128()
    if algorithm == "crc32c":
        return _Crc32c()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


class ManifestEntry(BaseModel):
    """One file: its path relative to the manifest root (posix), size, mtime and content digest."""

    path: str
    size: int = Field(ge=0)
    mtime: float = Field(description="epoch seconds; for a target, the source mtime recorded at copy time")
    digest: str
    algorithm: str


class Manifest(BaseModel):
    """Every file under a root with its content digest."""

    root: str
    algorithm: str
    entries: list[ManifestEntry] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def total_bytes(self) -> int:
        """Sum of file sizes."""
        return sum(e.size for e in self.entries)

    def by_path(self) -> dict[str, ManifestEntry]:
        """Entries keyed by relative path."""
        return {e.path: e for e in self.entries}

    def to_frame(self) -> pd.DataFrame:
        """A pandas frame with columns path, size, mtime, digest, algorithm (one row per file)."""
        import pandas as pd

        columns = ["path", "size", "mtime", "digest", "algorithm"]
        frame = pd.DataFrame([e.model_dump() for e in self.entries], columns=columns)
        return frame.astype({"path": "object", "size": "int64", "mtime": "float64", "digest": "object"})

    def write_parquet(self, fs: AbstractFileSystem, path: str) -> str:
        """Write the manifest as Parquet (root, algorithm and created_at in the schema metadata).

        The file is staged and placed atomically, so a reader never sees half a manifest.
        Returns the path written.
        """
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        from migration_waves.transfer.atomic import staged_write

        table = pa.table(
            {
                "path": pa.array([e.path for e in self.entries], pa.string()),
                "size": pa.array([e.size for e in self.entries], pa.int64()),
                "mtime": pa.array([e.mtime for e in self.entries], pa.float64()),
                "digest": pa.array([e.digest for e in self.entries], pa.string()),
                "algorithm": pa.array([e.algorithm for e in self.entries], pa.string()),
            }
        )
        meta = {
            b"migration_waves.root": self.root.encode(),
            b"migration_waves.algorithm": self.algorithm.encode(),
            b"migration_waves.created_at": self.created_at.isoformat().encode(),
        }
        table = table.replace_schema_metadata(meta)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        with staged_write(fs, path) as out:
            out.write(buf.getvalue())
        return path

    @classmethod
    def read_parquet(cls, fs: AbstractFileSystem, path: str) -> Manifest:
        """Read a manifest written by `write_parquet`."""
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as f:
            # ParquetFile, not read_table: read_table imports pyarrow.dataset (~0.3 s of CLI startup)
            table = pq.ParquetFile(f).read()
        meta = table.schema.metadata or {}
        if b"migration_waves.algorithm" not in meta:
            raise ValueError(
                f"{path} is not a migration-waves manifest (no migration_waves.* schema metadata); "
                "write it with Manifest.write_parquet"
            )
        rows = table.to_pylist()
        return cls(
            root=meta[b"migration_waves.root"].decode(),
            algorithm=meta[b"migration_waves.algorithm"].decode(),
            created_at=datetime.fromisoformat(meta[b"migration_waves.created_at"].decode()),
            entries=[ManifestEntry(**row) for row in rows],
        )


def strip_root(fs: AbstractFileSystem, root: str) -> str:
    """The root as the filesystem names it internally, without protocol or trailing slash."""
    stripped = fs._strip_protocol(root)
    return stripped.rstrip("/") or "/"


def join(root: str, relpath: str) -> str:
    """Join a stripped root and a relative posix path."""
    return posixpath.join(root, relpath) if root != "/" else "/" + relpath


def is_temp_name(relpath: str) -> bool:
    """True for our own in-flight files (`.<name>.mwpart-<uuid>`)."""
    base = posixpath.basename(relpath)
    return base.startswith(".") and TEMP_MARKER in base


def info_mtime(info: dict[str, Any]) -> float:
    """Modification time (epoch seconds) from an fsspec info dict, whatever the backend calls it.

    local: mtime (float); s3: LastModified (datetime); gcs: mtime/updated; memory: created.
    """
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def _selected(relpath: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    # fnmatchcase: the same answer on every OS; note that "*" also matches "/" here
    if include and not any(fnmatch.fnmatchcase(relpath, pat) for pat in include):
        return False
    return not any(fnmatch.fnmatchcase(relpath, pat) for pat in exclude)


def _walk_local(base: str, links: LinkPolicy, skipped: list[str] | None) -> list[tuple[str, int, float]]:
    """(relative path, size, mtime) of the regular files under a local folder, per the link policy.

    fsspec's local find follows directory symlinks without loop checks (a link to an ancestor
    nests until the kernel's ELOOP, two such links grow the walk exponentially); this walk knows
    the (device, inode) of every folder on the way down, so a link back to one of them is a loop,
    is skipped, and the walk always ends. A link to a folder elsewhere is followed (rsync -L).
    """
    root_stat = os.stat(base)
    out: list[tuple[str, int, float]] = []
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (base, "", frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    ]
    while stack:
        folder, prefix, ancestors = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            rel = prefix + entry.name
            try:
                link = entry.is_symlink()
                if link and links == "skip":
                    if skipped is not None:
                        skipped.append(f"{rel} (symlink)")
                    continue
                st = entry.stat(follow_symlinks=link)  # a followed link: what it points to
            except OSError:  # dangling link, or one the kernel refuses to resolve (ELOOP)
                if skipped is not None:
                    skipped.append(f"{rel} (broken symlink)")
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    if skipped is not None:
                        skipped.append(f"{rel} (symlink loop)")
                    continue
                stack.append((entry.path, rel + "/", ancestors | {key}))
            elif stat.S_ISREG(st.st_mode):
                out.append((rel, int(st.st_size), float(st.st_mtime)))
    return out


def list_files(
    fs: AbstractFileSystem,
    root: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    links: LinkPolicy = "skip",
    skipped: list[str] | None = None,
) -> Listing:
    """Files under `root` as (relative posix path, size, mtime), sorted by path.

    Directory markers (zero-byte keys ending in "/", "directory" entries) and our own temp files
    are ignored; include/exclude are fnmatch patterns on the relative path. A missing root gives [].
    On local disk symlinks are skipped (`links="skip"`) or followed (`"follow"`, with loop
    detection); what was left out is appended to `skipped` ("path (why)"). Object stores have none.
    """
    if links not in LINK_POLICIES:
        raise ValueError(f"unknown symlink policy {links!r}; use one of {', '.join(LINK_POLICIES)}")
    base = strip_root(fs, root)
    if _is_local(fs):
        if os.path.isfile(base):
            raise TransferError(
                f"{root} is a file, not a folder; point the dataset at the folder that holds it"
            )
        if not os.path.isdir(base):
            return []
        rows = [
            (rel, size, mtime)
            for rel, size, mtime in _walk_local(base, links, skipped)
            if not is_temp_name(rel) and _selected(rel, include, exclude)
        ]
        rows.sort(key=lambda row: row[0])
        return rows
    try:
        found = fs.find(base, detail=True, withdirs=False)
    except FileNotFoundError:
        return []
    prefix = base.rstrip("/") + "/"
    out: Listing = []
    for name, info in found.items():
        if info.get("type") == "directory" or name.endswith("/"):
            continue
        name = name.rstrip("/")
        if name == base:
            raise TransferError(
                f"{root} is a file, not a folder; point the dataset at the folder that holds it"
            )
        if not name.startswith(prefix):
            continue
        rel = name[len(prefix) :]
        if not rel or is_temp_name(rel) or not _selected(rel, include, exclude):
            continue
        out.append((rel, int(info.get("size") or 0), info_mtime(info)))
    out.sort(key=lambda row: row[0])
    return out


def _is_local(fs: AbstractFileSystem) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def hash_file(fs: AbstractFileSystem, path: str, algorithm: str) -> tuple[str, int]:
    """Digest and byte count of one file, read in 8 MiB chunks."""
    h = hasher(algorithm)
    n = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def hash_listing(
    fs: AbstractFileSystem,
    root: str,
    listing: Iterable[tuple[str, int, float]],
    algorithm: str,
    workers: int = 4,
) -> list[ManifestEntry]:
    """Hash every listed file on a thread pool (hashlib and blake3 release the GIL on big buffers)."""
    base = strip_root(fs, root)
    rows = list(listing)

    def one(row: tuple[str, int, float]) -> ManifestEntry:
        rel, _size, mtime = row
        digest, n = hash_file(fs, join(base, rel), algorithm)
        return ManifestEntry(path=rel, size=n, mtime=mtime, digest=digest, algorithm=algorithm)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, rows))


def build_manifest(
    fs: AbstractFileSystem,
    root: str,
    algorithm: str = "blake3",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    workers: int = 4,
    links: LinkPolicy = "skip",
) -> Manifest:
    """List `root` and hash every file's contents into a Manifest (entries sorted by path)."""
    hasher(algorithm)  # fail fast on an unknown algorithm, before any I/O
    listing = list_files(fs, root, include, exclude, links=links)
    entries = hash_listing(fs, root, listing, algorithm, workers)
    return Manifest(root=fs.unstrip_protocol(strip_root(fs, root)), algorithm=algorithm, entries=entries)
