"""Moved and renamed files copied within the target, racy skips settled by digest, the verified log.

All on real local files (and fsspec's memory filesystem as a target that is not local disk).
What was *sent* from the source is measured with the engine's own `throttle` hook: it is called
with the byte count of every chunk streamed from the source to the target, and never for a copy
made within the target, so the bytes it sees are exactly the bytes sent.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from migration_waves.cli import main
from migration_waves.transfer import journal as journal_module
from migration_waves.transfer.engine import copy_tree, verify_tree
from migration_waves.transfer.journal import Journal
from migration_waves.transfer.manifest import Manifest, build_manifest

pytestmark = pytest.mark.unit

LOCAL = LocalFileSystem()
BIG = 2 * 1024 * 1024  # above the engine's small-file lane (1 MiB): a big file goes to the workers


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _digests(root: Path) -> dict[str, str]:
    """blake3 of every file, computed here with the blake3 library, not the engine."""
    return {rel: blake3.blake3(data).hexdigest() for rel, data in _tree(root).items()}


class Sent:
    """A throttle that only counts: the bytes the engine streamed from the source."""

    def __init__(self) -> None:
        self.bytes = 0

    def __call__(self, nbytes: int) -> None:
        self.bytes += nbytes


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    _write(root / "models/a.bin", os.urandom(BIG))
    _write(root / "c.bin", os.urandom(300_000))
    _write(root / "x.txt", b"unchanged\n")
    return root


@pytest.fixture
def mem_root() -> Iterator[str]:
    # MemoryFileSystem's store is process-global: a private prefix per test, removed afterwards
    root = f"/mw-moves-{uuid.uuid4().hex[:8]}"
    yield root
    for key in [k for k in MemoryFileSystem.store if k.startswith(root + "/")]:
        del MemoryFileSystem.store[key]


def _mem_tree(root: str) -> dict[str, bytes]:
    mem = MemoryFileSystem()
    return {name[len(root) + 1 :]: mem.cat_file(name) for name in sorted(mem.find(root))}


# -- a. moved, renamed and duplicated content ---------------------------------------------------


def _rename_duplicate_and_add(src: Path) -> bytes:
    """Rename the big file, copy c.bin under a new name, add a same-size file of other content."""
    (src / "models/a.bin").rename(src / "models/renamed.bin")
    _write(src / "copies/c-again.bin", (src / "c.bin").read_bytes())
    other = os.urandom(BIG)
    _write(src / "models/d.bin", other)  # the renamed file's size, not its content
    return other


def test_moved_and_duplicated_files_are_copied_within_the_target(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    seed = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="moves")
    assert seed.passed and seed.target_manifest is not None
    _rename_duplicate_and_add(src)

    sent = Sent()
    result = copy_tree(
        LOCAL,
        str(src),
        LOCAL,
        str(dst),
        dataset="moves",
        delete=True,
        detect_moves=True,
        previous=seed.target_manifest,
        throttle=sent,
    )
    assert result.passed, result.reasons
    assert result.files_moved == 2 and result.files_copied == 3 and result.files_deleted == 1
    reasons = {i.path: i.reason for i in result.plan if i.action == "copy"}
    assert reasons == {
        "copies/c-again.bin": "content already at the target as 'c.bin': copied there",
        "models/renamed.bin": "content already at the target as 'models/a.bin': copied there",
        "models/d.bin": "new",  # same size as a.bin, other digest: sent
    }
    assert sent.bytes == BIG  # only d.bin came from the source
    assert _tree(dst) == _tree(src)  # byte for byte, and the old name is gone (delete)
    rows = result.target_manifest.index()  # type: ignore[union-attr]
    assert {rel: row[3] for rel, row in rows.items()} == _digests(src)
    assert "2 of them copied within the target" in result.reasons[0]
    assert verify_tree(LOCAL, str(dst), result.target_manifest, dataset="moves").passed  # type: ignore[arg-type]


def test_without_detection_the_same_changes_are_sent(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    seed = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="moves")
    _rename_duplicate_and_add(src)
    sent = Sent()
    result = copy_tree(
        LOCAL,
        str(src),
        LOCAL,
        str(dst),
        dataset="moves",
        detect_moves=None,  # the default: local to local reads as much as it would send, so off
        previous=seed.target_manifest,
        throttle=sent,
    )
    assert result.passed and result.files_moved == 0 and result.files_copied == 3
    assert sent.bytes == 2 * BIG + 300_000
    assert {i.reason for i in result.plan if i.action == "copy"} == {"new"}


def test_an_origin_overwritten_in_the_same_run_is_not_copied_from(tmp_path: Path) -> None:
    """A file renamed away and replaced by new content of the same size (a checkpoint rolled over):
    the renamed copy must not be taken from the target file this run overwrites."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    v1, v2 = os.urandom(BIG), os.urandom(BIG)
    _write(src / "a-model.bin", v1)
    seed = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="ckpt")
    _write(src / "z-archive/model-v1.bin", v1)
    _write(src / "a-model.bin", v2)
    os.utime(src / "a-model.bin", (1e9, 1e9))  # a different mtime for sure, whatever the clock tick
    # one worker: the overwrite of a-model.bin (first in path order) runs before the archive's copy
    result = copy_tree(
        LOCAL,
        str(src),
        LOCAL,
        str(dst),
        dataset="ckpt",
        detect_moves=True,
        previous=seed.target_manifest,
        transfers=1,
    )
    assert result.passed, result.reasons
    assert result.files_moved == 0  # the only origin is being replaced: the archive copy is sent
    assert (dst / "z-archive/model-v1.bin").read_bytes() == v1
    assert (dst / "a-model.bin").read_bytes() == v2
    check = verify_tree(LOCAL, str(dst), result.target_manifest, dataset="ckpt")  # type: ignore[arg-type]
    assert check.passed, check.reasons


def test_detection_is_on_by_default_for_a_target_that_is_not_local(src: Path, mem_root: str) -> None:
    mem = MemoryFileSystem()
    seed = copy_tree(LOCAL, str(src), mem, mem_root, dataset="moves")
    assert seed.passed
    (src / "models/a.bin").rename(src / "models/renamed.bin")
    sent = Sent()
    result = copy_tree(
        LOCAL,
        str(src),
        mem,
        mem_root,
        dataset="moves",
        delete=True,
        previous=seed.target_manifest,
        throttle=sent,
    )
    assert result.passed and result.files_moved == 1 and result.files_deleted == 1, result.reasons
    (item,) = [i for i in result.plan if i.action == "copy"]
    assert item.path == "models/renamed.bin" and item.reason.startswith("content already at the target")
    assert sent.bytes == 0
    assert _mem_tree(mem_root) == _tree(src)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_cli_detects_moves_only_towards_a_remote_target(
    src: Path, tmp_path: Path, mem_root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state, dst, remote = str(tmp_path / "state"), str(tmp_path / "dst"), f"memory://{mem_root}"
    assert _cli(capsys, "copy", str(src), dst, "--state", state)[0] == 0
    assert _cli(capsys, "copy", str(src), remote, "--state", state)[0] == 0
    (src / "models/a.bin").rename(src / "models/renamed.bin")

    code, local = _cli(capsys, "sync", str(src), dst, "--state", state)
    assert code == 0 and local["files_moved"] == 0  # local to local: sending costs what matching would
    assert local["files_copied"] == 1 and local["bytes_copied"] == BIG
    code, far = _cli(capsys, "sync", str(src), remote, "--state", state, "--delete")
    assert code == 0 and far["files_moved"] == 1 and far["files_copied"] == 1 and far["files_deleted"] == 1
    assert _mem_tree(mem_root) == _tree(src)


# -- b. racy files: same size, same mtime, other content -----------------------------------------


def _same_size_same_mtime_change(src: Path, dst: Path, rel: str) -> tuple[bytes, float]:
    """Rewrite `rel` with other bytes of the same size, and put both sides back on the old mtime."""
    ns = os.stat(src / rel).st_mtime_ns
    new = bytes(b ^ 0xFF for b in (src / rel).read_bytes())
    (src / rel).write_bytes(new)
    os.utime(src / rel, ns=(ns, ns))
    os.utime(dst / rel, ns=(ns, ns))  # the seed set it so already; made explicit here
    assert os.stat(src / rel).st_size == os.stat(dst / rel).st_size
    return new, os.stat(src / rel).st_mtime


def test_racy_file_is_compared_by_digest(src: Path, tmp_path: Path) -> None:
    """rsync's blind spot: size and mtime equal, content not. A file written within the mtime
    precision of the previous listing may have changed unseen; such files are hashed (racy)."""
    dst = tmp_path / "dst"
    seed = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="racy")
    old = (dst / "c.bin").read_bytes()
    new, mtime = _same_size_same_mtime_change(src, dst, "c.bin")
    # x.txt is racy too (same mtime) but unchanged: compared, then skipped
    ns = os.stat(src / "c.bin").st_mtime_ns
    for side in (src, dst):
        os.utime(side / "x.txt", ns=(ns, ns))

    # listed long after the write, with a verified manifest vouching for the old version: not
    # racy, size and mtime decide, and they cannot see the change (rsync's blind spot)
    blind = copy_tree(
        LOCAL,
        str(src),
        LOCAL,
        str(dst),
        dataset="racy",
        last_listed_at=mtime + 10,
        previous=seed.target_manifest,
    )
    assert blind.passed and blind.files_copied == 0 and (dst / "c.bin").read_bytes() == old

    # listed in the same tick as the write: racy, the digests differ, the file is sent
    racy = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="racy", last_listed_at=mtime)
    assert racy.passed and racy.files_copied == 1, racy.reasons
    (item,) = [i for i in racy.plan if i.action == "copy"]
    assert (item.path, item.reason) == ("c.bin", "same size and mtime, different digest")
    assert {i.path for i in racy.plan if i.action == "skip"} == {"models/a.bin", "x.txt"}
    assert (dst / "c.bin").read_bytes() == new and os.stat(dst / "c.bin").st_mtime == mtime
    assert racy.target_manifest.index()["c.bin"][3] == blake3.blake3(new).hexdigest()  # type: ignore[union-attr]

    # the default comes from the previous manifest's listing time
    (src / "c.bin").write_bytes(old)
    os.utime(src / "c.bin", ns=(ns, ns))
    previous = seed.target_manifest
    assert previous is not None
    previous.listed_at = mtime
    again = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="racy", previous=previous)
    assert [(i.path, i.reason) for i in again.plan if i.action == "copy"] == [
        ("c.bin", "same size and mtime, different digest")
    ]
    assert (dst / "c.bin").read_bytes() == old


def test_cli_sync_settles_a_file_written_in_the_tick_of_the_last_listing(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, dst = str(tmp_path / "state"), tmp_path / "dst"
    code, out = _cli(capsys, "copy", str(src), str(dst), "--state", state)
    assert code == 0
    listed_at = Journal(state, out["source"], out["target"]).info()["listed_at"]
    ns = int(listed_at * 1_000_000_000)
    new = os.urandom(300_000)
    (src / "c.bin").write_bytes(new)  # same size as before
    for side in (src, dst):
        os.utime(side / "c.bin", ns=(ns, ns))  # as if written in the tick the seed listed the source
    code, out = _cli(capsys, "sync", str(src), str(dst), "--state", state)
    assert code == 0 and out["files_copied"] == 1 and out["bytes_copied"] == 300_000
    assert (dst / "c.bin").read_bytes() == new


# -- c. the verified log in the state store -------------------------------------------------------


def _state_files(journal: Journal) -> tuple[list[str], bool]:
    log = Path(journal.log_dir)
    segments = sorted(p.name for p in log.glob("*.json")) if log.exists() else []
    return segments, Path(journal.verified_path).exists()


def _verified_digests(journal: Journal) -> dict[str, str]:
    manifest = journal.verified()
    assert manifest is not None
    return {path: digest for path, _size, _mtime, digest in manifest.rows()}


def test_verified_log_records_changes_and_folds_into_parquet(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, dst = str(tmp_path / "state"), tmp_path / "dst"
    _write(src / "y.txt", b"why\n")
    code, out = _cli(capsys, "copy", str(src), str(dst), "--state", state)
    assert code == 0
    journal = Journal(state, out["source"], out["target"])
    segments, base = _state_files(journal)
    assert len(segments) == 1 and not base  # a small run appends a segment, no Parquet rewrite
    assert _verified_digests(journal) == _digests(src)
    assert journal.verified().sizes == [len(d) for d in _tree(src).values()]  # type: ignore[union-attr]

    # an unchanged sync writes nothing to the state
    assert _cli(capsys, "sync", str(src), str(dst), "--state", state)[0] == 0
    assert _state_files(journal) == (segments, False)

    (src / "x.txt").write_bytes(b"changed, longer\n")
    assert _cli(capsys, "sync", str(src), str(dst), "--state", state)[0] == 0
    (src / "y.txt").unlink()
    code, out = _cli(capsys, "sync", str(src), str(dst), "--state", state, "--delete")
    assert code == 0 and out["files_deleted"] == 1
    journal = Journal(state, out["source"], out["target"])
    segments, base = _state_files(journal)
    assert len(segments) == 3 and not base
    assert json.loads((Path(journal.log_dir) / segments[-1]).read_text())["deleted"] == ["y.txt"]
    assert _verified_digests(journal) == _digests(src)  # y.txt's row is gone, x.txt's is new

    # enough rows in the log: the next run folds it into verified.parquet and removes the segments
    monkeypatch.setattr(journal_module, "COMPACT_MIN_ROWS", 3)
    _write(src / "z.txt", b"zed\n")
    assert _cli(capsys, "sync", str(src), str(dst), "--state", state)[0] == 0
    journal = Journal(state, out["source"], out["target"])
    assert _state_files(journal) == ([], True)
    assert journal.info()["log_rows"] == 0 and journal.info()["base_rows"] == len(_tree(src))
    assert _verified_digests(journal) == _digests(src)
    base_only = Manifest.read_parquet(journal.fs, journal.verified_path)
    assert dict(zip(base_only.paths, base_only.digests, strict=True)) == _digests(src)

    # below the threshold again (a quarter of the base): a segment on top of the base
    (src / "z.txt").unlink()
    assert _cli(capsys, "sync", str(src), str(dst), "--state", state, "--delete")[0] == 0
    journal = Journal(state, out["source"], out["target"])
    segments, base = _state_files(journal)
    assert len(segments) == 1 and base
    assert _verified_digests(journal) == _digests(src)


def test_manifest_out_is_complete_and_folds_the_log(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, dst, out_path = str(tmp_path / "state"), tmp_path / "dst", tmp_path / "m" / "target.parquet"
    code, out = _cli(capsys, "copy", str(src), str(dst), "--state", state)
    assert code == 0
    (src / "x.txt").write_bytes(b"changed\n")
    # one file changed, but the Parquet manifest holds every file of the target
    code, out = _cli(capsys, "sync", str(src), str(dst), "--state", state, "--manifest-out", str(out_path))
    assert code == 0 and out["files_copied"] == 1 and out["manifest"].endswith("target.parquet")
    written = Manifest.read_parquet(LOCAL, str(out_path))
    assert written.algorithm == "blake3" and written.paths == sorted(_tree(src))
    assert dict(zip(written.paths, written.digests, strict=True)) == _digests(src)
    assert written.listed_at is not None
    assert written.paths == build_manifest(LOCAL, str(src)).paths
    # the run had the whole manifest at hand: the state's base is rewritten, the log emptied
    journal = Journal(state, out["source"], out["target"])
    assert _state_files(journal) == ([], True)
    assert _verified_digests(journal) == _digests(src)


# --- empty folders and repeated runs ------------------------------------------------------------


def test_empty_folders_are_made_at_a_local_target_and_pruned_by_delete(tmp_path: Path) -> None:
    from migration_waves.transfer.run import run_transfer

    src, dst, state = tmp_path / "src", tmp_path / "dst", str(tmp_path / "state")
    (src / "data").mkdir(parents=True)
    (src / "data" / "a.bin").write_bytes(b"a")
    (src / "empty" / "deeper").mkdir(parents=True)
    (src / "scratch").mkdir()
    first = run_transfer(str(src), str(dst), state=state)
    assert first.passed and first.dirs_created == 2
    assert (dst / "empty" / "deeper").is_dir() and (dst / "scratch").is_dir()
    # the source drops a folder of files: --delete removes the files and the folder they leave empty
    (src / "old").mkdir()
    (src / "old" / "b.bin").write_bytes(b"b")
    assert run_transfer(str(src), str(dst), mode="sync", state=state).passed
    (src / "old" / "b.bin").unlink()
    (src / "old").rmdir()
    gone = run_transfer(str(src), str(dst), mode="sync", state=state, delete=True)
    assert gone.passed and gone.files_deleted == 1
    assert not (dst / "old").exists() and (dst / "scratch").is_dir() and (dst / "data" / "a.bin").exists()


def test_runs_repeated_leave_the_same_tree_and_never_nest(tmp_path: Path) -> None:
    from migration_waves.transfer.run import run_transfer

    src, dst, state = tmp_path / "src", tmp_path / "dst", str(tmp_path / "state")
    (src / "x").mkdir(parents=True)
    (src / "x" / "1.bin").write_bytes(b"1" * 10)
    (src / "2.bin").write_bytes(b"2")

    def tree() -> list[str]:
        return sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*"))

    assert run_transfer(str(src), str(dst), state=state).passed
    once = tree()
    for _ in range(3):  # a trailing slash or not, copy or sync: the same tree, no dst/src inside
        assert run_transfer(str(src) + "/", str(dst), state=state).passed
        assert run_transfer(str(src), str(dst) + "/", mode="sync", state=state).passed
    assert tree() == once == ["2.bin", "x", "x/1.bin"]


def test_a_whole_second_tree_widens_the_racy_window(src: Path, tmp_path: Path) -> None:
    """ext3, NFS, SMB and FAT keep whole seconds (simulated here by whole-second mtimes on every
    file): an edit in the same second as the previous listing, half a second before it, must still
    be compared by digest, not skipped as unchanged."""
    dst = tmp_path / "dst"
    whole = float(int(os.stat(src / "c.bin").st_mtime))
    for path in src.rglob("*"):
        if path.is_file():
            os.utime(path, (whole, whole))
    seed = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="coarse")
    new, mtime = _same_size_same_mtime_change(src, dst, "c.bin")
    assert mtime == whole
    listed = whole + 0.5  # the previous run listed the tree half a second into that second
    vouched = seed.target_manifest
    racy = copy_tree(
        LOCAL, str(src), LOCAL, str(dst), dataset="coarse", last_listed_at=listed, previous=vouched
    )
    assert racy.passed and racy.files_copied == 1, racy.reasons
    assert (dst / "c.bin").read_bytes() == new
