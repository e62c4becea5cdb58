"""Manifests: content digests, listings, Parquet round trips (real files in tmp_path, memory://)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import blake3
import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from migration_waves.transfer.manifest import (
    CHUNK_SIZE,
    Manifest,
    build_manifest,
    hasher,
    info_mtime,
    list_files,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def local() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("file")


@pytest.fixture
def mem_root() -> Iterator[str]:
    # MemoryFileSystem's store is process-global: give each test its own prefix and clean it up
    root = f"/mw-{uuid.uuid4().hex[:8]}"
    yield root
    fs = MemoryFileSystem()
    for key in [k for k in fs.store if k.startswith(root + "/")]:
        del fs.store[key]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_digests_match_hashlib_and_blake3_across_chunk_boundaries(tmp_path: Path, local) -> None:
    big = os.urandom(CHUNK_SIZE + 12345)  # crosses one 8 MiB chunk boundary
    files = {"big.bin": big, "empty": b"", "sub/small.txt": b"hello\n"}
    for rel, data in files.items():
        _write(tmp_path / "src" / rel, data)
    expected = {
        "sha256": lambda d: hashlib.sha256(d).hexdigest(),
        "md5": lambda d: hashlib.md5(d).hexdigest(),
        "blake3": lambda d: blake3.blake3(d).hexdigest(),
    }
    for algorithm, reference in expected.items():
        manifest = build_manifest(local, str(tmp_path / "src"), algorithm=algorithm, workers=2)
        assert [e.path for e in manifest.entries] == sorted(files)
        for entry in manifest.entries:
            assert entry.digest == reference(files[entry.path]), (algorithm, entry.path)
            assert entry.size == len(files[entry.path])
            assert entry.algorithm == algorithm
        assert manifest.total_bytes == sum(len(d) for d in files.values())
        assert manifest.root == f"file://{tmp_path / 'src'}"


def test_unknown_algorithm_is_rejected_with_the_choices(tmp_path: Path, local) -> None:
    with pytest.raises(ValueError, match=r"crc32.*blake3, sha256, md5"):
        build_manifest(local, str(tmp_path), algorithm="crc32")
    with pytest.raises(ValueError, match="unknown checksum algorithm"):
        hasher("sha1")


def test_list_files_skips_dirs_and_temp_files_and_applies_patterns(tmp_path: Path, local) -> None:
    for rel in ["a.bin", "logs/x.log", "logs/y.txt", "deep/er/z.bin", "sub/.a.bin.mwpart-0123abcd"]:
        _write(tmp_path / rel, rel.encode())
    (tmp_path / "empty-dir").mkdir()
    rels = [r for r, _, _ in list_files(local, str(tmp_path))]
    assert rels == ["a.bin", "deep/er/z.bin", "logs/x.log", "logs/y.txt"]
    # fnmatch on the relative path: "*" crosses folders
    assert [r for r, _, _ in list_files(local, str(tmp_path), include=["*.bin"])] == [
        "a.bin",
        "deep/er/z.bin",
    ]
    assert [r for r, _, _ in list_files(local, str(tmp_path), exclude=["logs/*"])] == [
        "a.bin",
        "deep/er/z.bin",
    ]
    size_mtime = {r: (s, m) for r, s, m in list_files(local, str(tmp_path) + "/")}
    assert size_mtime["a.bin"] == (5, pytest.approx(os.stat(tmp_path / "a.bin").st_mtime))
    assert list_files(local, str(tmp_path / "does-not-exist")) == []


def test_memory_listing_reads_mtime_and_ignores_markers(mem_root: str) -> None:
    fs = MemoryFileSystem()
    fs.pipe(f"{mem_root}/data/a.bin", b"abc")
    fs.makedirs(f"{mem_root}/data/emptydir", exist_ok=True)
    listing = list_files(fs, f"memory://{mem_root}/data")
    assert [(r, s) for r, s, _ in listing] == [("a.bin", 3)]
    assert listing[0][2] > 1_600_000_000  # a real epoch timestamp from the "created" field


def test_info_mtime_understands_each_backend_shape() -> None:
    from datetime import UTC, datetime

    ts = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info_mtime({"mtime": 12.5}) == 12.5  # local
    assert info_mtime({"LastModified": ts}) == ts.timestamp()  # s3fs
    assert info_mtime({"updated": "2026-01-02T03:04:05Z"}) == ts.timestamp()  # gcs json
    assert info_mtime({"created": 7.0}) == 7.0  # memory find()
    assert info_mtime({}) == 0.0


def test_parquet_round_trip_local_and_memory(tmp_path: Path, local, mem_root: str) -> None:
    _write(tmp_path / "src" / "naïve name #1 %.txt", b"x" * 10)
    _write(tmp_path / "src" / "b.bin", b"y" * 3)
    manifest = build_manifest(local, str(tmp_path / "src"), algorithm="sha256")
    out = str(tmp_path / "state" / "manifest.parquet")
    manifest.write_parquet(local, out)
    assert not [p for p in os.listdir(tmp_path / "state") if ".mwpart-" in p]  # temp was renamed
    back = Manifest.read_parquet(local, out)
    assert back == manifest
    frame = back.to_frame()
    assert list(frame.columns) == ["path", "size", "mtime", "digest", "algorithm"]
    assert frame["size"].sum() == 13

    mem = MemoryFileSystem()
    mem.makedirs(f"{mem_root}/state", exist_ok=True)
    manifest.write_parquet(mem, f"{mem_root}/state/m.parquet")
    assert Manifest.read_parquet(mem, f"{mem_root}/state/m.parquet").by_path() == manifest.by_path()


def test_reading_a_foreign_parquet_says_what_it_is(tmp_path: Path, local) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="not a migration-waves manifest"):
        Manifest.read_parquet(local, str(tmp_path / "other.parquet"))
