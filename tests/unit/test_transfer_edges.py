"""Edge cases a first user hit (fresh-eyes review): each one through the real CLI on real files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileSystem

from migration_waves.cli import main
from migration_waves.transfer.manifest import Manifest

pytestmark = pytest.mark.unit


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out.strip().splitlines()[-1]), err
    except (json.JSONDecodeError, IndexError):
        return code, {}, err + out


def test_a_symlink_at_the_target_is_replaced_never_written_through(tmp_path: Path, capsys) -> None:
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "victim").write_bytes(b"new")
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep me")
    dst.mkdir()
    (dst / "sub").symlink_to(outside)  # the target's "sub" points elsewhere
    state = str(tmp_path / "state")
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--delete", "--state", state, "--json")
    assert code == 0 and out["passed"]
    assert (outside / "victim").read_bytes() == b"keep me"  # untouched
    assert not (dst / "sub").is_symlink() and (dst / "sub" / "victim").read_bytes() == b"new"
    assert any(
        "symlinks or special files at the target stand where the source has" in r for r in out["reasons"]
    )


def test_a_link_or_fifo_in_the_way_is_only_replaced_with_delete_and_in_scope(tmp_path: Path, capsys) -> None:
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    (src / "d").mkdir(parents=True)
    (src / "d" / "g").write_bytes(b"g")
    (src / "a").write_bytes(b"a")
    outside.mkdir()
    dst.mkdir()
    (dst / "d").symlink_to(outside)
    os.mkfifo(dst / "a")
    state = str(tmp_path / "state")
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--state", state, "--json")
    assert code == 1 and sorted(e["path"] for e in out["errors"]) == ["a", "d/g"], out["errors"]
    assert all("sync with --delete" in e["error"] for e in out["errors"])
    assert (dst / "d").is_symlink() and list(outside.iterdir()) == [] and not (dst / "a").is_file()
    # excluded: out of scope, kept even with --delete (and nothing written through it)
    code, out, _ = cli(
        capsys, "sync", str(src), str(dst), "--delete", "--exclude", "d", "--state", state, "--json"
    )
    assert code == 1 and [e["path"] for e in out["errors"]] == ["d/g"] and (dst / "d").is_symlink()
    assert (dst / "a").read_bytes() == b"a"  # the fifo, in scope, was replaced
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--delete", "--state", state, "--json")
    assert code == 0 and (dst / "d" / "g").read_bytes() == b"g" and list(outside.iterdir()) == []
    code, again, _ = cli(capsys, "sync", str(src), str(dst), "--delete", "--state", state, "--json")
    assert code == 0 and again["files_copied"] == 0  # settled: nothing sent again


def test_names_that_are_not_utf8_go_through_manifests_and_diff(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(os.path.join(os.fsencode(src), b"bad-\xff-name"), "wb") as f:
        f.write(b"x")
    (src / "good").write_bytes(b"y")
    manifest = tmp_path / "m.parquet"
    code, out, err = cli(
        capsys, "copy", str(src), str(tmp_path / "dst"), "--state", str(tmp_path / "s"),
        "--manifest-out", str(manifest), "--json",
    )  # fmt: skip
    assert code == 0 and out["passed"], err
    back = Manifest.read_parquet(LocalFileSystem(), str(manifest))
    assert sorted(back.paths) == ["bad-\udcff-name", "good"]  # the exact bytes, surrogate-escaped
    assert os.path.exists(os.path.join(os.fsencode(tmp_path / "dst"), b"bad-\xff-name"))
    assert main(["diff", str(manifest), str(manifest)]) == 0


def test_overlapping_source_target_or_state_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    (src / "inner" / "f").write_bytes(b"1")
    state = str(tmp_path / "state")
    code, out, _ = cli(capsys, "copy", str(src), str(src / "backup"), "--state", state, "--json")
    assert code == 2 and "overlap" in out["error"]
    code, out, _ = cli(capsys, "sync", str(src / "inner"), str(src), "--delete", "--state", state, "--json")
    assert code == 2 and "overlap" in out["error"]
    inside = str(tmp_path / "dst" / "st")
    code, out, _ = cli(capsys, "copy", str(src), str(tmp_path / "dst"), "--state", inside, "--json")
    assert code == 2 and "state store" in out["error"] and "inside the target" in out["error"]
    assert sorted(p.name for p in src.rglob("*")) == ["f", "inner"]  # nothing moved, nothing made
    # the same through symlinks: a target (or state store) reached through a link into the source
    (tmp_path / "link").symlink_to(src)
    code, out, _ = cli(capsys, "copy", str(src), str(tmp_path / "link" / "copy"), "--state", state, "--json")
    assert code == 2 and "overlap" in out["error"], out
    code, out, _ = cli(capsys, "copy", str(tmp_path / "link"), str(src / "copy"), "--state", state, "--json")
    assert code == 2 and "overlap" in out["error"], out
    code, out, _ = cli(
        capsys, "copy", str(src), str(tmp_path / "d2"), "--state", str(tmp_path / "link" / "st"), "--json"
    )
    assert code == 2 and "inside the source" in out["error"], out
    assert sorted(p.name for p in src.rglob("*")) == ["f", "inner"]


def test_unknown_schemes_and_non_manifests_are_refused_not_tracebacks(tmp_path: Path, capsys) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"1")
    assert cli(capsys, "copy", "foo://x", str(tmp_path / "d"), "--json")[0] == 2
    assert cli(capsys, "copy", str(tmp_path / "src"), "foo://x", "--json")[0] == 2
    code, out, _ = cli(
        capsys, "copy", str(tmp_path / "src"), str(tmp_path / "d"), "--state", "foo://s", "--json"
    )
    assert code == 2 and "file://, s3:// or gs://" in out["error"]
    (tmp_path / "not.parquet").write_text("hello")
    manifest = tmp_path / "m.parquet"
    Manifest.from_rows("x", "blake3", [("a", 1, 0.0, "00")]).write_parquet(LocalFileSystem(), str(manifest))
    code, out, _ = cli(capsys, "diff", str(manifest), str(tmp_path / "not.parquet"), "--json")
    assert code == 2 and "not a migration-waves manifest" in out["error"]


def test_a_folder_where_the_source_has_a_file_fails_clearly_and_leaves_nothing(
    tmp_path: Path, capsys
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "a").write_bytes(b"file")
    (dst / "a").mkdir(parents=True)
    (dst / "a" / "z").write_bytes(b"z")
    for _ in range(2):
        code, out, _ = cli(capsys, "copy", str(src), str(dst), "--state", str(tmp_path / "s"), "--json")
        assert code == 1 and "holds a folder where the source has a file" in out["errors"][0]["error"]
    assert sorted(p.name for p in dst.rglob("*")) == ["a", "z"]  # no temp files piling up


def test_a_path_that_turns_from_file_to_folder_and_back_syncs_with_delete(tmp_path: Path, capsys) -> None:
    """With --delete the target's old file (or folder) in the way is deleted first, as rsync
    does; without it the run fails naming the file in the way, and leaves the target as it was."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", str(tmp_path / "s")
    src.mkdir()
    (src / "model").write_bytes(b"v1")
    (src / "keep").write_bytes(b"k")
    assert cli(capsys, "sync", str(src), str(dst), "--state", state, "--json")[0] == 0
    (src / "model").unlink()
    (src / "model").mkdir()
    (src / "model" / "weights").write_bytes(b"v2")
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--state", state, "--json")
    error = out["errors"][0]["error"]
    assert code == 1 and "holds a file" in error and "--delete" in error, error
    assert (dst / "model").read_bytes() == b"v1"  # without --delete nothing was removed
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--delete", "--state", state, "--json")
    assert code == 0 and out["files_deleted"] == 1, out
    assert (dst / "model" / "weights").read_bytes() == b"v2"
    (src / "model" / "weights").unlink()
    (src / "model").rmdir()
    (src / "model").write_bytes(b"v3")
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--delete", "--state", state, "--json")
    assert code == 0 and out["files_deleted"] == 1, out
    assert (dst / "model").read_bytes() == b"v3"
    assert sorted(p.name for p in dst.iterdir()) == ["keep", "model"]
    assert cli(capsys, "verify", str(src), str(dst), "--state", state, "--json")[0] == 0


def test_empty_folders_follow_the_source_with_delete(tmp_path: Path, capsys) -> None:
    """rsync --delete: empty folders that left the source go, an empty folder where the source
    now has a file is replaced; without --delete both stay; an excluded one always stays."""
    src, dst, state = tmp_path / "src", tmp_path / "dst", str(tmp_path / "s")
    (src / "a" / "b").mkdir(parents=True)
    (src / "e" / "f").mkdir(parents=True)
    (src / "x" / "y").mkdir(parents=True)
    (src / "k").write_bytes(b"k")
    assert cli(capsys, "sync", str(src), str(dst), "--delete", "--state", state, "--json")[0] == 0
    assert (dst / "a" / "b").is_dir() and (dst / "e" / "f").is_dir()
    for d in ("a/b", "a", "e/f", "e", "x/y", "x"):
        (src / d).rmdir()
    (src / "a").write_bytes(b"A")
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--state", state, "--json")
    assert code == 1 and (dst / "e" / "f").is_dir()  # no --delete: the folder in the way stays
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--delete", "--exclude", "x*", "--state", state,
                       "--json")  # fmt: skip
    assert code == 0, out
    assert (dst / "a").read_bytes() == b"A" and not (dst / "e").exists() and (dst / "x" / "y").is_dir()


def test_verify_failures_are_sent_again_by_the_next_sync(tmp_path: Path, capsys) -> None:
    src, dst, state = tmp_path / "src", tmp_path / "dst", str(tmp_path / "state")
    src.mkdir()
    (src / "plain.txt").write_bytes(b"right bytes")
    os.utime(src / "plain.txt", (1.7e9, 1.7e9))  # long before any run: not "racy" (see the racy tests)
    assert cli(capsys, "copy", str(src), str(dst), "--state", state, "--json")[0] == 0
    target = dst / "plain.txt"
    st = target.stat()
    target.write_bytes(b"wrong bytes")  # same size; mtime put back: size and mtime cannot tell
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cli(capsys, "sync", str(src), str(dst), "--state", state, "--json")[1]["files_copied"] == 0
    code, out, _ = cli(capsys, "verify", str(src), str(dst), "--state", state, "--json")
    assert code == 1 and out["mismatched"] == ["plain.txt"]
    code, out, _ = cli(capsys, "sync", str(src), str(dst), "--state", state, "--json")
    assert code == 0 and out["files_copied"] == 1 and target.read_bytes() == b"right bytes"
    assert cli(capsys, "verify", str(src), str(dst), "--state", state, "--json")[0] == 0


def test_source_files_named_like_temp_files_are_reported(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").write_bytes(b"d")
    (src / ".notes.mwpart-abc").write_bytes(b"precious")
    os.mkfifo(src / "pipe")  # no content to copy: said, not silently left out
    code, out, _ = cli(
        capsys, "copy", str(src), str(tmp_path / "d"), "--state", str(tmp_path / "s"), "--json"
    )
    (said,) = [r for r in out["reasons"] if "paths not copied" in r]
    assert code == 0 and ".notes.mwpart-abc (named like an in-flight temp file" in said
    assert "pipe (not a regular file" in said
    assert "links: follow" not in said  # no symlink was left out: that hint would mislead
    (tmp_path / "d" / "stray").write_bytes(b"s")
    state = str(tmp_path / "s")
    code, out, _ = cli(capsys, "verify", str(src), str(tmp_path / "d"), "--state", state, "--json")
    assert code == 1 and any("--delete" in r and "removes the extra files" in r for r in out["reasons"])


def test_one_run_per_source_and_target_at_a_time(tmp_path: Path, capsys) -> None:
    from migration_waves.transfer.journal import Journal

    src, dst, state = tmp_path / "src", tmp_path / "dst", str(tmp_path / "state")
    src.mkdir()
    (src / "f").write_bytes(b"1")
    holder = Journal(
        state, LocalFileSystem().unstrip_protocol(str(src)), LocalFileSystem().unstrip_protocol(str(dst))
    )
    holder.lock()  # as a run in progress holds it (flock: another open file description is refused)
    try:
        code, out, _ = cli(capsys, "copy", str(src), str(dst), "--state", state, "--json")
        assert code == 2 and "another migration-waves run is copying" in out["error"]
        assert cli(capsys, "copy", str(src), str(dst), "--state", state, "--dry-run", "--json")[0] == 0
    finally:
        holder.unlock()
    assert cli(capsys, "copy", str(src), str(dst), "--state", state, "--json")[0] == 0


def test_temp_files_of_dead_runs_on_this_host_are_removed_others_kept(tmp_path: Path, capsys) -> None:
    import subprocess
    import sys

    from migration_waves.transfer import atomic

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "f").write_bytes(b"1")
    dst.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # that process has exited
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".f{atomic.TEMP_MARKER}{atomic._HOST}-{dead_pid:x}-abcdef0",
            "alive": f".g{atomic.TEMP_MARKER}{atomic._HOST}-{alive.pid:x}-abcdef0",
            "other host": f".h{atomic.TEMP_MARKER}zzzzzz-{dead_pid:x}-abcdef0",
        }
        for name in names.values():
            (dst / name).write_bytes(b"partial")
        assert cli(capsys, "copy", str(src), str(dst), "--state", str(tmp_path / "s"), "--json")[0] == 0
        assert not (dst / names["dead"]).exists()
        assert (dst / names["alive"]).exists() and (dst / names["other host"]).exists()
    finally:
        alive.kill()
        alive.wait()


def test_a_temp_name_fits_the_filesystem_even_for_a_long_name(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    long = "n" * 250 + ".bin"  # 254 bytes: the temp name must not grow past 255
    (src / long).write_bytes(b"1")
    code, out, _ = cli(
        capsys, "copy", str(src), str(tmp_path / "dst"), "--state", str(tmp_path / "s"), "--json"
    )
    assert code == 0 and out["passed"] and (tmp_path / "dst" / long).read_bytes() == b"1"


def test_a_store_that_stops_answering_stops_the_run_early(tmp_path: Path) -> None:
    """An outage is not 10,000 separate file errors: after a run of failures the rest is not tried."""
    from fsspec.implementations.memory import MemoryFileSystem

    from migration_waves.transfer.engine import FAILURES_IN_A_ROW, copy_tree

    class DownStore(MemoryFileSystem):  # stands in for an object store whose endpoint went away
        attempts = 0

        def _open(self, path: str, mode: str = "rb", **kwargs: object) -> object:
            if "w" in mode:
                DownStore.attempts += 1
                raise ConnectionError("endpoint not answering")
            return super()._open(path, mode, **kwargs)

    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"f{i:03d}").write_bytes(b"x" * 10)
    down = DownStore(skip_instance_cache=True)
    result = copy_tree(LocalFileSystem(), str(src), down, "/down", dataset="outage", transfers=2)
    assert not result.passed and len(result.errors) == 200
    assert (
        FAILURES_IN_A_ROW <= DownStore.attempts <= FAILURES_IN_A_ROW + 2 * 64
    )  # one batch per worker may run on
    assert sum("not attempted" in e.error for e in result.errors) >= 200 - FAILURES_IN_A_ROW - 2 * 64


def test_manifest_out_and_state_are_checked_before_anything_moves(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"1")
    code, out, _ = cli(capsys, "copy", str(src), str(tmp_path / "d1"), "--manifest-out", "foo://x/m.parquet",
                       "--state", str(tmp_path / "s"), "--json")  # fmt: skip
    assert code == 2 and "foo://x/m.parquet" in out["error"] and not (tmp_path / "d1").exists()
    (tmp_path / "statefile").write_bytes(b"")
    code, out, _ = cli(
        capsys, "copy", str(src), str(tmp_path / "d2"), "--state", str(tmp_path / "statefile" / "x"), "--json"
    )
    assert code == 2 and "--state" in out["error"] and "is a file, not a folder" in out["error"]
    assert not (tmp_path / "d2").exists()
    # inside the source (it would overwrite data) or the target, a fifo (never renamed over),
    # and a verify whose state store is inside the target: all refused up front
    (src / "data.csv").write_bytes(b"important")
    for where in (str(src / "data.csv"), str(tmp_path / "d4" / "m.parquet")):
        code, out, _ = cli(capsys, "copy", str(src), str(tmp_path / "d4"), "--manifest-out", where,
                           "--state", str(tmp_path / "s"), "--json")  # fmt: skip
        assert code == 2 and "is inside the" in out["error"], out
    assert (src / "data.csv").read_bytes() == b"important" and not (tmp_path / "d4").exists()
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    code, out, _ = cli(capsys, "copy", str(src), str(tmp_path / "d4"), "--manifest-out", fifo,
                       "--state", str(tmp_path / "s"), "--json")  # fmt: skip
    assert code == 2 and "is not a regular file" in out["error"]
    code, out, _ = cli(capsys, "verify", str(src), str(tmp_path / "d"), "--state", str(src / "st"), "--json")
    assert code == 2 and "inside the source" in out["error"] and not (src / "st").exists()
    # a file in the way of the manifest's folder: refused up front too
    blocked = str(tmp_path / "statefile" / "m.parquet")
    code, out, _ = cli(capsys, "copy", str(src), str(tmp_path / "d3"), "--manifest-out", blocked,
                       "--state", str(tmp_path / "s"), "--json")  # fmt: skip
    assert code == 2 and "is a file, not a folder" in out["error"] and not (tmp_path / "d3").exists()


def test_a_manifest_that_fails_to_write_after_a_good_copy_is_said_as_it_is(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection (the disk filling up between the copy and the manifest): exit 1, the reason
    says the copy itself is recorded, and the re-run sends nothing again."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"1")

    out_path = str(tmp_path / "m.parquet")
    write = Manifest.write_parquet

    def full(self: Manifest, fs: Any, path: str) -> Any:
        if path.endswith("/m.parquet"):  # only --manifest-out; the state store still writes
            raise OSError(28, "No space left on device")
        return write(self, fs, path)

    monkeypatch.setattr(Manifest, "write_parquet", full)
    code, out, _ = cli(capsys, "copy", str(src), str(tmp_path / "d"), "--manifest-out", out_path,
                       "--state", str(tmp_path / "s"), "--json")  # fmt: skip
    assert code == 1 and out["files_copied"] == 1
    assert any("manifest could not be written" in r for r in out["reasons"]), out["reasons"]
    monkeypatch.undo()
    again = cli(capsys, "copy", str(src), str(tmp_path / "d"), "--state", str(tmp_path / "s"), "--json")
    assert again[0] == 0 and again[1]["files_copied"] == 0


def test_two_spellings_of_one_pair_share_its_journal_and_lock(tmp_path: Path, capsys) -> None:
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    src.mkdir()
    (src / "f").write_bytes(b"1")
    (tmp_path / "via").symlink_to(src)
    assert cli(capsys, "copy", str(src), str(dst), "--state", str(state), "--json")[0] == 0
    code, out, _ = cli(capsys, "copy", str(tmp_path / "via"), str(dst), "--state", str(state), "--json")
    assert code == 0 and out["files_copied"] == 0
    assert len(list((state / "pairs").iterdir())) == 1  # one journal, hence one lock, for the pair
