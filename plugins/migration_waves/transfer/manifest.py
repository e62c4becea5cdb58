"""Manifests: what a tree holds, file by file, with content digests.

A manifest is the unit the rest of the project reasons about: the copy engine plans against the
last verified one, Great Expectations validates source against target, and the state store keeps
them as Parquet. Digests are always computed from file contents, never from store metadata
(an S3 multipart ETag or fsspec's `checksum()` is not a content digest).
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field, model_validator

from migration_waves.transfer.errors import TransferError
from migration_waves.transfer.listing import (  # the listing half of this module's API, re-exported
    LINK_POLICIES as LINK_POLICIES,
)
from migration_waves.transfer.listing import TEMP_MARKER as TEMP_MARKER
from migration_waves.transfer.listing import LinkListing as LinkListing
from migration_waves.transfer.listing import LinkPolicy as LinkPolicy
from migration_waves.transfer.listing import Listing as Listing
from migration_waves.transfer.listing import _walk_local
from migration_waves.transfer.listing import is_temp_name as is_temp_name
from migration_waves.transfer.listing import list_local_rows as list_local_rows
from migration_waves.transfer.listing import select_links as select_links
from migration_waves.transfer.listing import selector as selector

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from fsspec import AbstractFileSystem

CHUNK_SIZE = 8 * 1024 * 1024  # 8 MiB: large enough to stream fast, small enough to keep memory flat
LOCAL_BUFFER = 1024 * 1024  # local reads: 1 MiB stays in the CPU cache between read, hash and write
PARALLEL_HASH_MIN = 16 * 1024 * 1024  # blake3 spreads one file over several cores from this size
ALGORITHMS = ("blake3", "sha256", "md5", "xxh128", "crc32c")
LINK_DIGEST_PREFIX = b"symlink:"  # a link's digest covers this prefix and its text, never what it points to


class Hasher(Protocol):
    """The part of hashlib's interface the engine uses (blake3 has the same shape)."""

    def update(self, data: bytes | memoryview, /) -> Any: ...

    def hexdigest(self) -> str: ...


class _Crc32c:
    """CRC32C (Castagnoli) with hashlib's shape; hex of the 4 big-endian bytes, as GCS's crc32c."""

    def __init__(self) -> None:
        import google_crc32c

        self._c = google_crc32c.Checksum()

    def update(self, data: bytes | memoryview, /) -> None:
        # google_crc32c's C extension takes bytes only (not a view of a reused buffer)
        self._c.update(data.tobytes() if isinstance(data, memoryview) else data)

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


def link_digest(text: str, algorithm: str) -> tuple[str, int]:
    """Digest and size of a symlink kept as a link (links="copy"): its text, not what it points to.

    The digest is over b"symlink:" + the text's bytes and the size is the text's byte count, so a
    regular file holding the same text has the same size but another digest, and one holding
    "symlink:" + the text has the same digest but another size: neither passes for the link.
    """
    data = os.fsencode(text)
    h = hasher(algorithm)
    h.update(LINK_DIGEST_PREFIX + data)
    return h.hexdigest(), len(data)


class ManifestEntry(BaseModel):
    """One file: its path relative to the manifest root (posix), size, mtime and content digest."""

    path: str
    size: int = Field(ge=0)
    mtime: float = Field(description="epoch seconds; for a target, the source mtime recorded at copy time")
    digest: str
    algorithm: str


Row = tuple[str, int, float, str]  # path, size, mtime, digest


class Manifest(BaseModel):
    """Every file under a root with its content digest, held as columns.

    Columns (not one object per file) keep a 1,000,000-file manifest to about 200 MB and make
    Parquet reads and writes column copies. `entries` gives the per-file view where it is handy;
    `Manifest(entries=[...])` is accepted too.
    """

    root: str
    algorithm: str
    paths: list[str] = Field(default_factory=list)
    sizes: list[int] = Field(default_factory=list)
    mtimes: list[float] = Field(default_factory=list)
    digests: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    listed_at: float | None = Field(
        default=None, description="epoch s when the source was listed for the run that made this manifest"
    )

    @model_validator(mode="before")
    @classmethod
    def _entries_to_columns(cls, data: Any) -> Any:
        if isinstance(data, dict) and "entries" in data:
            data = dict(data)
            rows = [e if isinstance(e, ManifestEntry) else ManifestEntry(**e) for e in data.pop("entries")]
            data["paths"] = [e.path for e in rows]
            data["sizes"] = [e.size for e in rows]
            data["mtimes"] = [e.mtime for e in rows]
            data["digests"] = [e.digest for e in rows]
        return data

    @model_validator(mode="after")
    def _same_lengths(self) -> Manifest:
        if not len(self.paths) == len(self.sizes) == len(self.mtimes) == len(self.digests):
            raise ValueError("manifest columns paths, sizes, mtimes and digests must have the same length")
        if any(s < 0 for s in self.sizes):
            raise ValueError("manifest sizes must be >= 0")
        return self

    @classmethod
    def from_rows(cls, root: str, algorithm: str, rows: Iterable[Row], *, sort: bool = True) -> Manifest:
        """Build from trusted (path, size, mtime, digest) rows without per-row validation."""
        data = sorted(rows, key=_first) if sort else list(rows)
        return cls.model_construct(
            root=root,
            algorithm=algorithm,
            paths=[r[0] for r in data],
            sizes=[r[1] for r in data],
            mtimes=[r[2] for r in data],
            digests=[r[3] for r in data],
            created_at=datetime.now(UTC),
            listed_at=None,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def rows(self) -> Iterator[Row]:
        """(path, size, mtime, digest) per file, in manifest order."""
        return zip(self.paths, self.sizes, self.mtimes, self.digests, strict=True)

    @property
    def entries(self) -> list[ManifestEntry]:
        """One ManifestEntry per file (built on each call: prefer `rows()` for large manifests)."""
        return [
            ManifestEntry(path=p, size=s, mtime=m, digest=d, algorithm=self.algorithm)
            for p, s, m, d in self.rows()
        ]

    @property
    def total_bytes(self) -> int:
        """Sum of file sizes."""
        return sum(self.sizes)

    def by_path(self) -> dict[str, ManifestEntry]:
        """Entries keyed by relative path."""
        return {e.path: e for e in self.entries}

    def index(self) -> dict[str, Row]:
        """Rows keyed by relative path (cheaper than `by_path` on large manifests)."""
        return {r[0]: r for r in self.rows()}

    def without(self, paths: Iterable[str]) -> Manifest:
        """A copy without the given paths."""
        drop = set(paths)
        return Manifest.from_rows(
            self.root, self.algorithm, (r for r in self.rows() if r[0] not in drop), sort=False
        )

    def to_frame(self) -> pd.DataFrame:
        """A pandas frame with columns path, size, mtime, digest, algorithm (one row per file)."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "path": pd.Series(self.paths, dtype="object"),
                "size": pd.Series(self.sizes, dtype="int64"),
                "mtime": pd.Series(self.mtimes, dtype="float64"),
                "digest": pd.Series(self.digests, dtype="object"),
                "algorithm": pd.Series([self.algorithm] * len(self.paths), dtype="object"),
            }
        )
        return frame

    def write_parquet(self, fs: AbstractFileSystem, path: str) -> str:
        """Write the manifest as Parquet (root, algorithm and created_at in the schema metadata).

        The file is staged and placed atomically, so a reader never sees half a manifest.
        Returns the path written.
        """
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        from migration_waves.transfer.atomic import staged_write

        try:
            path_column = pa.array(self.paths, pa.string())
            encoding = b"utf-8"
        except UnicodeEncodeError:
            # a local name that is not UTF-8 (its bytes surrogate-escaped in Python): Parquet
            # strings must be UTF-8, so the paths go in as their exact bytes
            path_column = pa.array([os.fsencode(p) for p in self.paths], pa.binary())
            encoding = b"bytes"
        table = pa.table(
            {
                "path": path_column,
                "size": pa.array(self.sizes, pa.int64()),
                "mtime": pa.array(self.mtimes, pa.float64()),
                "digest": pa.array(self.digests, pa.string()),
                # one dictionary-encoded value: costs nothing, keeps each row self-describing for GX
                "algorithm": pa.DictionaryArray.from_arrays(
                    pa.array([0] * len(self.paths), pa.int32()), pa.array([self.algorithm], pa.string())
                ),
            }
        )
        meta = {
            b"migration_waves.root": self.root.encode(),
            b"migration_waves.algorithm": self.algorithm.encode(),
            b"migration_waves.created_at": self.created_at.isoformat().encode(),
            b"migration_waves.path_encoding": encoding,
        }
        if self.listed_at is not None:
            meta[b"migration_waves.listed_at"] = repr(self.listed_at).encode()
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
            table = pq.ParquetFile(f).read(columns=["path", "size", "mtime", "digest"])
        meta = table.schema.metadata or {}
        if b"migration_waves.algorithm" not in meta:
            raise ValueError(
                f"{path} is not a migration-waves manifest (no migration_waves.* schema metadata); "
                "write it with Manifest.write_parquet"
            )
        return cls.model_construct(
            root=meta[b"migration_waves.root"].decode(),
            algorithm=meta[b"migration_waves.algorithm"].decode(),
            created_at=datetime.fromisoformat(meta[b"migration_waves.created_at"].decode()),
            listed_at=float(meta[b"migration_waves.listed_at"])
            if b"migration_waves.listed_at" in meta
            else None,
            paths=_paths(table.column("path")),
            sizes=table.column("size").to_pylist(),
            mtimes=table.column("mtime").to_pylist(),
            digests=table.column("digest").to_pylist(),
        )


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _paths(column: Any) -> list[str]:
    """A Parquet path column as Python paths: UTF-8 strings, or exact bytes (surrogate-escaped)."""
    import pyarrow as pa

    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return [os.fsdecode(b) for b in column.to_pylist()]
    return column.to_pylist()


def strip_root(fs: AbstractFileSystem, root: str) -> str:
    """The root as the filesystem names it internally, without protocol or trailing slash."""
    stripped = fs._strip_protocol(root)
    return stripped.rstrip("/") or "/"


def join(root: str, relpath: str) -> str:
    """Join a stripped root and a relative posix path."""
    return posixpath.join(root, relpath) if root != "/" else "/" + relpath


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


def list_links(
    fs: AbstractFileSystem, root: str, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> LinkListing:
    """The symlinks under a local `root` as (relative path, link text, mtime), sorted, never followed.

    A walk for the links alone (no stat per regular file). Object stores hold no symlinks: [].
    """
    if not is_local(fs):
        return []
    base = strip_root(fs, root)
    if not os.path.isdir(base):
        return []
    found: LinkListing = []
    _walk_local(base, "copy", None, found, files=False)
    return select_links(found, include, exclude)


def list_files(
    fs: AbstractFileSystem,
    root: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    links: LinkPolicy = "skip",
    skipped: list[str] | None = None,
    links_found: LinkListing | None = None,
    empty_dirs: list[str] | None = None,
    avoid: frozenset[tuple[int, int]] = frozenset(),
) -> Listing:
    """Files under `root` as (relative posix path, size, mtime), sorted by path.

    Directory markers (zero-byte keys ending in "/", "directory" entries) and our own temp files
    are ignored; include/exclude are fnmatch patterns on the relative path. A missing root gives [].
    On local disk symlinks are skipped (`links="skip"`), followed (`"follow"`, with loop
    detection) or, with `"copy"`, kept as links: never followed, left out of the rows and appended
    to `links_found` as (path, link text, mtime), sorted. What was left out is appended to
    `skipped` ("path (why)"). Object stores have no symlinks. Empty local folders in scope go to
    `empty_dirs` (object stores have no folders: their zero-byte markers are not reported).
    `avoid`: local folders (listing.folder_key) a followed link must not lead into (the target).
    """
    if links not in LINK_POLICIES:
        raise ValueError(f"unknown symlink policy {links!r}; use one of {', '.join(LINK_POLICIES)}")
    base = strip_root(fs, root)
    if is_local(fs):
        return list_local_rows(
            base,
            include,
            exclude,
            links,
            skipped,
            links_found=links_found,
            empty_dirs=empty_dirs,
            avoid=avoid,
        )
    try:
        found = fs.find(base, detail=True, withdirs=False)
    except FileNotFoundError:
        return []
    prefix = base.rstrip("/") + "/"
    selected = selector(include, exclude)
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
        if not rel or is_temp_name(rel) or not selected(rel):
            continue
        out.append((rel, int(info.get("size") or 0), info_mtime(info)))
    out.sort(key=lambda row: row[0])
    return out


def is_plain_local(fs: AbstractFileSystem) -> bool:
    """Exactly fsspec's local filesystem: file I/O may bypass it with os-level calls.

    A subclass may change how files are opened (fault injection, auditing): it keeps fsspec's path.
    """
    return type(fs) is _local_fs_class()


def is_local(fs: AbstractFileSystem) -> bool:
    """Whether `fs` is the local disk (listings walk it with os.scandir)."""
    return isinstance(fs, _local_fs_class())


def real_url(fs: AbstractFileSystem, base: str) -> str:
    """The URL of `base` with local symlinks resolved: what overlap checks must compare.

    `copy src link/inner`, where `link` points at `src`, writes into the source all the same.
    """
    return fs.unstrip_protocol(os.path.realpath(base) if is_local(fs) else base)


@functools.cache
def _local_fs_class() -> type:
    # imported on first use (fsspec costs ~0.1 s), then a plain lookup on every file of a copy
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem


_buffers = threading.local()


def _thread_buffer(name: str, size: int) -> tuple[bytearray, memoryview]:
    pair = getattr(_buffers, name, None)
    if pair is None:
        buf = bytearray(size)
        pair = (buf, memoryview(buf))
        setattr(_buffers, name, pair)
    return pair


def local_buffer() -> tuple[bytearray, memoryview]:
    """This thread's reusable 1 MiB I/O buffer (allocating one per file costs more than a small copy)."""
    return _thread_buffer("small", LOCAL_BUFFER)


def hash_file(fs: AbstractFileSystem, path: str, algorithm: str) -> tuple[str, int]:
    """Digest and byte count of one file (local files take the fast path of `hash_local_file`)."""
    if is_plain_local(fs):
        return hash_local_file(fs._strip_protocol(path), algorithm)
    h = hasher(algorithm)
    n = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def hash_local_file(path: str, algorithm: str) -> tuple[str, int]:
    """Digest and byte count of a local file.

    Reads go into one reused per-thread buffer (1 MiB; 16 MiB for big files, which blake3 hashes
    on several cores); hashers release the GIL on big buffers. Memory stays flat whatever the
    file size. The byte count is what was read and hashed.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if algorithm == "blake3" and size >= PARALLEL_HASH_MIN:
            import blake3

            # big files: 16 MiB reads hashed on several cores at once (a memory map would be
            # simpler but counts the whole file in the process's RSS)
            h = blake3.blake3(max_threads=blake3.blake3.AUTO)
            buf, view = _big_buffer()
        else:
            h = hasher(algorithm)
            buf, view = local_buffer()
        n = 0
        while got := os.readv(fd, [buf]):
            h.update(view[:got])
            n += got
    finally:
        os.close(fd)
    return h.hexdigest(), n


def _big_buffer() -> tuple[bytearray, memoryview]:
    return _thread_buffer("big", PARALLEL_HASH_MIN)


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
    """List `root` and hash every file's contents into a Manifest (entries sorted by path).

    With links="copy" each symlink is an entry too, with the digest and size of `link_digest`.
    """
    hasher(algorithm)  # fail fast on an unknown algorithm, before any I/O
    found: LinkListing | None = [] if links == "copy" else None
    listing = list_files(fs, root, include, exclude, links=links, links_found=found)
    entries = hash_listing(fs, root, listing, algorithm, workers)
    if found:
        for rel, text, mtime in found:
            digest, size = link_digest(text, algorithm)
            entries.append(
                ManifestEntry(path=rel, size=size, mtime=mtime, digest=digest, algorithm=algorithm)
            )
        entries.sort(key=lambda e: e.path)
    return Manifest(root=fs.unstrip_protocol(strip_root(fs, root)), algorithm=algorithm, entries=entries)
