"""Names: byte-exact awkward names through the CLI, and collisions found before any byte moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from migration_waves.transfer.engine import copy_tree
from migration_waves.transfer.errors import PathCollision
from migration_waves.transfer.names import Capabilities, capabilities, find_collisions

pytestmark = pytest.mark.unit

LOCAL = fsspec.filesystem("file")
NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
AWKWARD = [
    "with space.txt",
    " leading space",
    "trailing space ",
    "hash#tag",
    "what?.bin",
    "per%20cent%",
    "[bracket]s",
    "tab\there",
    "star*.txt",
    "dir with space/nested#/x",
    f"{NFC}.txt",
    f"{NFD}.txt",  # NFC and NFD side by side: different names on ext4 and on object stores
    "日本語/データ.json",
]


@pytest.fixture
def mem_root() -> Iterator[str]:
    root = f"/mw-{uuid.uuid4().hex[:8]}"
    yield root
    for key in [k for k in MemoryFileSystem.store if k.startswith(root + "/")]:
        del MemoryFileSystem.store[key]


def test_awkward_names_arrive_byte_exact_through_the_cli(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i, name in enumerate(AWKWARD):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(os.urandom(100 + i))
    cmd = [
        sys.executable,
        "-m",
        "migration_waves.cli",
        "copy",
        str(src),
        str(dst),
        "--json",
        "--state",
        str(tmp_path / "st"),
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["files_copied"] == len(AWKWARD)

    # compare raw bytes of names and contents, not decoded strings
    def tree(root: Path) -> dict[bytes, bytes]:
        out = {}
        for dirpath, _, files in os.walk(os.fsencode(root)):
            for f in files:
                full = os.path.join(dirpath, f)
                out[os.path.relpath(full, os.fsencode(root))] = open(full, "rb").read()
        return out

    assert tree(dst) == tree(src) and len(tree(dst)) == len(AWKWARD)
    verify = subprocess.run([*cmd[:3], "verify", str(src), str(dst)], capture_output=True, timeout=60)
    assert verify.returncode == 0, verify.stdout


def test_probe_matches_what_the_local_filesystem_does(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"")
    (tmp_path / NFC).write_bytes(b"")
    caps = capabilities(LOCAL, str(tmp_path / "not-yet" / "dst"))
    assert caps.case_sensitive == (not (tmp_path / "X").exists())
    assert caps.normalisation_sensitive == (not (tmp_path / NFD).exists())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mwprobe-")]  # the probe cleaned up
    assert capabilities(MemoryFileSystem(), "/x") == Capabilities()


def test_collisions_follow_the_target_capabilities() -> None:
    paths = ["Model.bin", "model.bin", f"{NFC}.txt", f"{NFD}.txt", "ok.txt"]
    assert find_collisions(paths, Capabilities()) == []
    folded = find_collisions(paths, Capabilities(case_sensitive=False, normalisation_sensitive=False))
    assert sorted(group for _, group in folded) == [["Model.bin", "model.bin"], [f"{NFD}.txt", f"{NFC}.txt"]]
    assert {why for why, _ in folded} == {
        "case-only twins on a target that folds them",
        "Unicode normalisation (NFC/NFD) twins on a target that folds them",
    }
    # a name cannot be a file and a folder on a disk, also across case on a folding one; an
    # object store holds the key `a` beside the prefix `a/`
    assert find_collisions(["a", "a/b"], Capabilities()) == [
        ("a file and a folder with the same name", ["a", "a/b"])
    ]
    assert find_collisions(["a", "a/b"], Capabilities(file_and_folder=True)) == []
    # a store that files `a\\b` as `a/b` cannot hold the source's name
    assert find_collisions(["a\\b", "c"], Capabilities(backslash_is_slash=True)) == [
        ("the target stores '\\' as '/' (a different path than the source's)", ["a\\b"])
    ]
    assert find_collisions(["a\\b"], Capabilities()) == []
    assert find_collisions(["A", "a/b"], Capabilities(case_sensitive=False))[0][1] == ["A", "a/b"]
    assert find_collisions(["x//y", "./z", "q/../r"], Capabilities())[0][0].startswith("empty, '.' or '..'")
    assert len(find_collisions(["x//y", "./z", "q/../r"], Capabilities())) == 3
    undecodable = os.fsdecode(b"bad\xff.bin")
    assert find_collisions([undecodable], Capabilities(utf8_only=True))[0][0].startswith(
        "name is not valid UTF-8"
    )
    assert find_collisions(["d/" + "n" * 256], Capabilities(name_max=255))[0][0].startswith(
        "a path component"
    )


def test_collision_blocks_the_run_before_any_byte_moves(tmp_path: Path, mem_root: str) -> None:
    mem = MemoryFileSystem()
    # keys with a doubled slash or a "." component: fine in a key-value store, not on a disk
    for key, data in {"c/ok.txt": b"ok", "d//e": b"doubled", "f/./g": b"dot"}.items():
        mem.pipe_file(f"{mem_root}/src/{key}", data)
    dst = tmp_path / "dst"
    with pytest.raises(PathCollision) as exc:
        copy_tree(mem, f"memory://{mem_root}/src", LOCAL, str(dst), dataset="keys")
    message = str(exc.value)
    assert "2 groups" in message and "'d//e'" in message and "'f/./g'" in message
    assert "nothing was moved" in message and "--exclude" in message
    assert not dst.exists()
    # excluding the offenders lets the rest through
    done = copy_tree(mem, f"memory://{mem_root}/src", LOCAL, str(dst), dataset="keys", exclude=["d/*", "f/*"])
    assert done.passed and [e.path for e in done.target_manifest.entries] == ["c/ok.txt"]
