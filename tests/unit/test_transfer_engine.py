"""Copy engine on real local files and fsspec memory://: plan, copy, skip, delete, verify, crash, unstable."""

from __future__ import annotations

import gc
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from migration_waves.transfer.atomic import placement, staged_write
from migration_waves.transfer.engine import (
    DeleteLimitExceeded,
    SourceNotFound,
    TransferError,
    copy_tree,
    plan_transfer,
    verify_tree,
)
from migration_waves.transfer.manifest import Manifest, ManifestEntry, build_manifest

pytestmark = pytest.mark.unit

LOCAL = fsspec.filesystem("file")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    _write(root / "a.txt", b"alpha\n")
    _write(root / "models/weights.bin", os.urandom(300_000))
    _write(root / "models/config.json", b'{"layers": 3}')
    return root


@pytest.fixture
def mem_root() -> Iterator[str]:
    # MemoryFileSystem's store is process-global: a private prefix per test, removed afterwards
    root = f"/mw-{uuid.uuid4().hex[:8]}"
    yield root
    store = MemoryFileSystem.store
    for key in [k for k in store if k.startswith(root + "/")]:
        del store[key]


# --- copy, re-run, change, delete -------------------------------------------------------------


def test_copy_then_unchanged_rerun_copies_nothing(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    first = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="corpus", algorithm="sha256")
    assert first.passed, first.reasons
    assert (first.files_copied, first.files_skipped) == (3, 0)
    assert first.bytes_copied == sum(len(d) for d in _tree(src).values())
    assert _tree(dst) == _tree(src)
    assert {p.reason for p in first.plan} == {"new"}
    # mtime preserved on the local target, so even without a previous manifest nothing is re-copied
    assert os.stat(dst / "a.txt").st_mtime == pytest.approx(os.stat(src / "a.txt").st_mtime, abs=1e-6)
    # digests computed while streaming equal an independent read of the source
    assert first.target_manifest.by_path() == {
        e.path: e for e in build_manifest(LOCAL, str(src), algorithm="sha256").entries
    }

    for previous in (None, first.target_manifest):
        again = copy_tree(
            LOCAL, str(src), LOCAL, str(dst), dataset="corpus", algorithm="sha256", previous=previous
        )
        assert again.passed and again.files_copied == 0 and again.files_skipped == 3
        assert {(p.action, p.reason) for p in again.plan} == {("skip", "same size and mtime")}
        assert again.target_manifest.by_path() == first.target_manifest.by_path()


def test_changed_files_are_recopied_with_a_reason(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    first = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="corpus")
    (src / "a.txt").write_bytes(b"alpha, longer\n")  # size differs
    cfg = src / "models/config.json"
    cfg.write_bytes(b'{"layers": 4}')  # same size ...
    st = os.stat(cfg)
    os.utime(cfg, (st.st_atime, st.st_mtime + 10))  # ... newer mtime
    second = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="corpus", previous=first.target_manifest)
    reasons = {p.path: (p.action, p.reason) for p in second.plan}
    assert reasons == {
        "a.txt": ("copy", "size differs"),
        "models/config.json": ("copy", "mtime newer"),
        "models/weights.bin": ("skip", "same size and mtime"),
    }
    assert second.files_copied == 2 and second.files_skipped == 1
    assert _tree(dst) == _tree(src)
    assert verify_tree(LOCAL, str(dst), second.target_manifest, dataset="corpus").passed


def test_delete_only_when_asked_and_limit_enforced_before_anything_moves(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="features")
    (src / "a.txt").unlink()
    (src / "models/config.json").unlink()
    _write(src / "new.txt", b"new")

    kept = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="features")
    assert kept.files_deleted == 0 and kept.extra_kept == ["a.txt", "models/config.json"]
    assert (dst / "a.txt").exists()
    (dst / "new.txt").unlink()

    with pytest.raises(DeleteLimitExceeded) as info:
        copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="features", delete=True, max_delete=1)
    message = str(info.value)
    assert "dataset features" in message and "delete 2 target files" in message and "max_delete=1" in message
    assert isinstance(info.value, TransferError) and isinstance(info.value, ValueError)
    assert (dst / "a.txt").exists() and not (dst / "new.txt").exists()  # nothing moved

    done = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="features", delete=True, max_delete=2)
    assert done.passed and done.files_deleted == 2 and done.files_copied == 1
    assert {p.path: p.reason for p in done.plan if p.action == "delete"} == {
        "a.txt": "not in source",
        "models/config.json": "not in source",
    }
    assert _tree(dst) == _tree(src)


def test_dry_run_plans_and_writes_nothing(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    result = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="corpus", dry_run=True)
    assert result.dry_run and result.files_copied == 0 and result.target_manifest is None
    assert [p.action for p in result.plan] == ["copy"] * 3
    assert "would copy 3 files" in result.reasons[0]
    assert not dst.exists()


def test_plan_uses_previous_manifest_when_target_mtime_is_upload_time() -> None:
    # object stores: the target's mtime is when the upload happened, not the source's mtime
    previous = Manifest(
        root="s3://bucket/x",
        algorithm="blake3",
        entries=[ManifestEntry(path="m.bin", size=5, mtime=100.0, digest="ab" * 32, algorithm="blake3")],
    )
    target = [("m.bin", 5, 5000.0)]
    same = plan_transfer(
        [("m.bin", 5, 100.0)], target, delete=False, max_delete=0, dataset="d", previous=previous
    )
    assert (same.all_items()[0].action, same.all_items()[0].reason) == ("skip", "same size and mtime")
    newer = plan_transfer(
        [("m.bin", 5, 200.0)], target, delete=False, max_delete=0, dataset="d", previous=previous
    )
    assert (newer.all_items()[0].action, newer.all_items()[0].reason) == ("copy", "mtime newer")
    restored = plan_transfer(
        [("m.bin", 5, 50.0)], target, delete=False, max_delete=0, dataset="d", previous=previous
    )
    assert restored.all_items()[0].action == "copy"
    # without the previous manifest a source changed before the upload would be missed: that is
    # why the operators pass the last verified manifest
    blind = plan_transfer([("m.bin", 5, 200.0)], target, delete=False, max_delete=0, dataset="d")
    assert blind.all_items()[0].action == "skip"


# --- verify ------------------------------------------------------------------------------------


def test_flipped_byte_in_target_fails_verify_naming_the_file(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    result = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="corpus")
    ok = verify_tree(LOCAL, str(dst), result.target_manifest, dataset="corpus")
    assert ok.passed and ok.files_verified == 3 and ok.bytes_verified == result.bytes_copied

    data = bytearray((dst / "models/weights.bin").read_bytes())
    data[1234] ^= 0x01
    (dst / "models/weights.bin").write_bytes(bytes(data))
    (dst / "a.txt").unlink()
    _write(dst / "stray.tmp", b"?")
    bad = verify_tree(LOCAL, str(dst), result.target_manifest, dataset="corpus")
    assert not bad.passed
    assert bad.digest_mismatch == ["models/weights.bin"]
    assert bad.missing == ["a.txt"] and bad.extra == ["stray.tmp"]
    text = " ".join(bad.reasons)
    assert "dataset corpus" in text and "models/weights.bin" in text and "a.txt" in text


def test_verify_of_an_empty_manifest_fails(tmp_path: Path) -> None:
    empty = Manifest(root="file:///x", algorithm="blake3")
    result = verify_tree(LOCAL, str(tmp_path), empty, dataset="corpus")
    assert not result.passed and "nothing was verified" in result.reasons[0]


# --- crash mid-copy ----------------------------------------------------------------------------


class _CrashingReader(io.RawIOBase):
    """Returns `limit` bytes of the real file, then raises like a dropped NFS mount would."""

    def __init__(self, inner: Any, limit: int, on_crash: Any) -> None:
        self.inner, self.limit, self.on_crash, self.given = inner, limit, on_crash, 0

    def read(self, n: int = -1) -> bytes:
        if self.given >= self.limit:
            self.on_crash()
            raise OSError(5, "simulated I/O error mid-copy")
        chunk = self.inner.read(min(n if n > 0 else self.limit, self.limit - self.given))
        self.given += len(chunk)
        return chunk

    def close(self) -> None:
        self.inner.close()
        super().close()


class CrashingLocalFS(LocalFileSystem):
    """Local disk whose reads of one file fail after a partial read."""

    cachable = False

    def __init__(self, crash_suffix: str, limit: int, on_crash: Any) -> None:
        super().__init__()
        self.crash_suffix, self.limit, self.on_crash = crash_suffix, limit, on_crash

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super()._open(path, mode, **kwargs)
        if "r" in mode and path.endswith(self.crash_suffix):
            return _CrashingReader(f, self.limit, self.on_crash)
        return f


def test_crash_mid_copy_leaves_no_final_named_partial_file_and_rerun_completes(
    src: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "dst"
    # an older complete copy is already at the target: the crash must not damage it either
    old = b"old complete version"
    _write(dst / "models/weights.bin", old)
    seen_at_crash: list[list[str]] = []

    def snapshot() -> None:
        seen_at_crash.append(sorted(os.listdir(dst / "models")))

    crashing = CrashingLocalFS("models/weights.bin", 100_000, snapshot)
    result = copy_tree(crashing, str(src), LOCAL, str(dst), dataset="corpus", transfers=1)
    assert not result.passed
    assert [e.path for e in result.errors] == ["models/weights.bin"]
    assert "simulated I/O error" in result.errors[0].error
    assert "models/weights.bin" in " ".join(result.reasons)
    # at the moment of the crash the partial bytes lived under a temp name ...
    assert any(".weights.bin.mwpart-" in name for name in seen_at_crash[0])
    # ... and afterwards the temp is gone and the final name still holds the old complete file
    assert sorted(os.listdir(dst / "models")) == ["config.json", "weights.bin"]
    assert (dst / "models/weights.bin").read_bytes() == old
    assert "models/weights.bin" not in result.target_manifest.by_path()

    rerun = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="corpus", previous=result.target_manifest)
    assert rerun.passed and rerun.files_copied == 1 and rerun.files_skipped == 2
    assert _tree(dst) == _tree(src)
    assert verify_tree(LOCAL, str(dst), rerun.target_manifest, dataset="corpus").passed


def test_crash_into_memory_target_leaves_nothing_under_the_final_name(src: Path, mem_root: str) -> None:
    mem = MemoryFileSystem()
    crashing = CrashingLocalFS("weights.bin", 1000, lambda: None)
    result = copy_tree(crashing, str(src), mem, f"memory://{mem_root}/dst", dataset="corpus")
    assert not result.passed
    assert sorted(mem.find(mem_root)) == [f"{mem_root}/dst/a.txt", f"{mem_root}/dst/models/config.json"]
    rerun = copy_tree(LOCAL, str(src), mem, f"memory://{mem_root}/dst", dataset="corpus")
    assert rerun.passed and rerun.files_copied == 1
    assert mem.cat_file(f"{mem_root}/dst/models/weights.bin") == (src / "models/weights.bin").read_bytes()


# --- object-store placement ----------------------------------------------------------------------


class _PublishOnClose(AbstractBufferedFile):
    """fsspec's buffered writer, as s3fs/gcsfs use it: the object exists only after the final upload."""

    def _initiate_upload(self) -> None:
        self.parts: list[bytes] = []

    def _upload_chunk(self, final: bool = False) -> bool:
        self.parts.append(self.buffer.getvalue())
        if final:
            self.fs.objects[self.path] = b"".join(self.parts)
        return True


class ObjectStoreStandIn(AbstractFileSystem):
    """A tiny in-process object store (no S3 server is installed here: moto/SeaweedFS are absent).

    It follows s3fs's write semantics through the same AbstractBufferedFile base class, which is
    what the engine's abort logic depends on. Its protocol names "s3" so that placement() treats
    it as an object store; it is never registered with fsspec.
    """

    protocol = ("objtest", "s3")
    cachable = False

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, bytes] = {}

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        path = self._strip_protocol(path)
        if mode == "rb":
            if path not in self.objects:
                raise FileNotFoundError(path)
            return io.BytesIO(self.objects[path])
        return _PublishOnClose(self, path, mode, block_size=block_size or 5 * 2**20)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path).rstrip("/")
        out: dict[str, dict[str, Any]] = {}
        for key, data in self.objects.items():
            if not key.startswith(path + "/"):
                continue
            head = key[len(path) + 1 :].split("/", 1)[0]
            name = f"{path}/{head}"
            is_dir = name != key
            out[name] = {
                "name": name,
                "size": 0 if is_dir else len(data),
                "type": "directory" if is_dir else "file",
            }
        return list(out.values()) if detail else list(out)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path).rstrip("/")
        if path in self.objects:
            return {"name": path, "size": len(self.objects[path]), "type": "file"}
        if any(k.startswith(path + "/") for k in self.objects):
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def rm_file(self, path: str) -> None:
        del self.objects[self._strip_protocol(path)]


def test_object_store_write_is_aborted_not_published_on_failure() -> None:
    store = ObjectStoreStandIn()
    assert placement(store) == "direct" and placement(LOCAL) == "rename"

    # the hazard is real: a plain `with fs.open(...)` publishes partial bytes when the block fails
    with pytest.raises(RuntimeError), store.open("bucket/naive.bin", "wb") as f:
        f.write(b"partial")
        raise RuntimeError("crash")
    assert store.objects["bucket/naive.bin"] == b"partial"

    with pytest.raises(RuntimeError), staged_write(store, "bucket/safe.bin") as f:
        f.write(b"partial")
        raise RuntimeError("crash")
    del f
    gc.collect()  # __del__ of an unclosed buffered file would close() and publish
    assert "bucket/safe.bin" not in store.objects

    with staged_write(store, "bucket/ok.bin") as f:
        f.write(b"complete")
    assert store.objects["bucket/ok.bin"] == b"complete"


def test_copy_to_object_store_then_crash_and_resume(src: Path) -> None:
    store = ObjectStoreStandIn()
    crashing = CrashingLocalFS("weights.bin", 50_000, lambda: None)
    failed = copy_tree(crashing, str(src), store, "objtest://bucket/corpus", dataset="corpus")
    assert not failed.passed
    assert sorted(store.objects) == ["bucket/corpus/a.txt", "bucket/corpus/models/config.json"]
    done = copy_tree(
        LOCAL, str(src), store, "objtest://bucket/corpus", dataset="corpus", previous=failed.target_manifest
    )
    assert done.passed and done.files_copied == 1 and done.files_skipped == 2
    assert store.objects["bucket/corpus/models/weights.bin"] == (src / "models/weights.bin").read_bytes()
    assert verify_tree(store, "objtest://bucket/corpus", done.target_manifest, dataset="corpus").passed


# --- source problems -----------------------------------------------------------------------------


def test_missing_or_empty_source_raises_source_not_found(tmp_path: Path) -> None:
    with pytest.raises(
        SourceNotFound, match=r"dataset corpus: source file://.*/nope does not exist.*site:path"
    ):
        copy_tree(LOCAL, str(tmp_path / "nope"), LOCAL, str(tmp_path / "dst"), dataset="corpus")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceNotFound, match="holds no files"):
        copy_tree(LOCAL, str(tmp_path / "empty"), LOCAL, str(tmp_path / "dst"), dataset="corpus")
    _write(tmp_path / "only-logs/x.log", b"x")
    with pytest.raises(SourceNotFound, match=r"matching include=\['\*.bin'\]"):
        copy_tree(
            LOCAL, str(tmp_path / "only-logs"), LOCAL, str(tmp_path / "d"), dataset="c", include=["*.bin"]
        )
    assert not (tmp_path / "dst").exists()


class RewritingLocalFS(LocalFileSystem):
    """Local disk where a writer appends to one file each time it is opened, `times` times.

    Deterministic stand-in for a file still being written by another process.
    """

    cachable = False

    def __init__(self, suffix: str, times: int) -> None:
        super().__init__()
        self.suffix, self.times, self.rewrites = suffix, times, 0

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode and path.endswith(self.suffix) and self.rewrites < self.times:
            self.rewrites += 1
            with open(path, "ab") as f:  # after the engine's "before" stat, before its read
                f.write(b"+appended")
        return super()._open(path, mode, **kwargs)


def test_file_changing_during_copy_is_reported_unstable_and_not_recorded(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    busy = RewritingLocalFS("a.txt", times=10)
    result = copy_tree(busy, str(src), LOCAL, str(dst), dataset="logs")
    assert busy.rewrites == 3  # first try + 2 retries
    assert not result.passed and result.unstable == ["a.txt"]
    assert "a.txt" not in result.target_manifest.by_path()
    assert not (dst / "a.txt").exists()
    assert not [p for p in dst.rglob("*") if ".mwpart-" in p.name]
    assert "changed while being read" in " ".join(result.reasons)


def test_file_that_settles_after_one_change_is_copied_on_retry(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    once = RewritingLocalFS("a.txt", times=1)
    result = copy_tree(once, str(src), LOCAL, str(dst), dataset="logs")
    assert result.passed and result.unstable == []
    assert (dst / "a.txt").read_bytes() == b"alpha\n+appended" == (src / "a.txt").read_bytes()
    assert result.target_manifest.by_path()["a.txt"].size == len(b"alpha\n+appended")


# --- names ---------------------------------------------------------------------------------------


def test_awkward_names_survive_byte_exact_local_memory_local(tmp_path: Path, mem_root: str) -> None:
    names = ["with space.txt", "hash#tag.bin", "per%20cent.txt", "ünïcödé/日本語.json", "a b/c#d/e%f.txt"]
    src = tmp_path / "src"
    for i, name in enumerate(names):
        _write(src / name, os.urandom(1000 + i))
    mem = MemoryFileSystem()
    up = copy_tree(LOCAL, str(src), mem, f"memory://{mem_root}/landing", dataset="names")
    assert up.passed and up.files_copied == len(names)
    down = copy_tree(mem, f"memory://{mem_root}/landing", LOCAL, str(tmp_path / "back"), dataset="names")
    assert down.passed
    assert _tree(tmp_path / "back") == _tree(src)
    assert sorted(e.path for e in down.target_manifest.entries) == sorted(names)
    assert [e.digest for e in down.target_manifest.entries] == [e.digest for e in up.target_manifest.entries]


def test_plan_of_a_sorted_target_listing_equals_the_plan_of_a_shuffled_one() -> None:
    """An incremental sync with no path added or removed compares the two sorted listings position
    by position; any other shape goes through sets. Both must decide exactly as a plain
    path-by-path comparison does, whatever was changed, added, removed or flagged for recopy."""
    import random

    rng = random.Random(7)
    for case in range(40):
        count = rng.randint(1, 300)
        src = sorted((f"d{i % 7}/f{i:04d}", rng.randint(1, 9), 1000.0 + i) for i in range(count))
        dst = list(src)
        for i in rng.sample(range(len(dst)), rng.randint(0, len(dst) // 3)):
            rel, size, mtime = dst[i]
            dst[i] = (rel, size + 1, mtime) if rng.random() < 0.5 else (rel, size, mtime - 10)
        if case % 4 in (1, 3):
            dst.append(("zz-extra", 1, 1.0))  # only at the target
        if case % 4 in (2, 3) and len(dst) > 1:
            dst.pop(rng.randrange(len(dst) - 1))  # only at the source (3: as many paths, not the same)
        dst.sort()
        recopy = {src[rng.randrange(len(src))][0]} if case % 3 == 0 else set()
        shuffled = list(dst)
        rng.shuffle(shuffled)
        plans = [
            plan_transfer(
                src,
                listing,
                delete=True,
                max_delete=10**6,
                dataset="d",
                dst_keeps_mtime=True,
                recopy=recopy,
                racy_after=1100.0,
            )
            for listing in (dst, shuffled)
        ]
        there = {rel: (size, mtime) for rel, size, mtime in dst}
        want_copy = sorted(
            rel for rel, size, mtime in src if there.get(rel) != (size, mtime) or rel in recopy
        )
        want_delete = sorted(set(there) - {row[0] for row in src})
        for plan in plans:
            assert sorted(i.path for i in plan.of("copy")) == want_copy, case
            assert sorted(i.path for i in plan.of("delete")) == want_delete, case
            assert plan.skips == [row for row in src if row[0] not in want_copy], case
            assert plan.racy == [row[0] for row in plan.skips if row[2] >= 1100.0], case
        assert [i.model_dump() for i in plans[0].items] == [i.model_dump() for i in plans[1].items]
