"""Symlink policy of the engine and the CLI: skip (default) or follow, and the walk always ends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from migration_waves.cli import main
from migration_waves.transfer.engine import copy_tree
from migration_waves.transfer.manifest import list_files

pytestmark = pytest.mark.unit


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tree with a loop (link to an ancestor), links to a file and a folder outside it, a dangling link."""
    src = tmp_path / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a" * 10)
    (src / "sub" / "deep" / "b.txt").write_bytes(b"b" * 20)
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.bin").write_bytes(b"s" * 30)
    (outside / "dir" / "c.txt").write_bytes(b"c" * 40)
    os.symlink("../..", src / "sub" / "deep" / "up")  # -> src: a loop
    os.symlink(".", src / "sub" / "self")  # -> sub itself: a loop too
    os.symlink(outside / "secret.bin", src / "linked.bin")
    os.symlink(outside / "dir", src / "linked-dir")
    os.symlink(tmp_path / "nowhere", src / "dangling")
    return src


def test_skip_leaves_every_link_out_and_says_so(tree: Path) -> None:
    skipped: list[str] = []
    listing = list_files(LocalFileSystem(), str(tree), skipped=skipped)
    assert [rel for rel, _, _ in listing] == ["a.txt", "sub/deep/b.txt"]
    assert sorted(skipped) == [
        "dangling (symlink)",
        "linked-dir (symlink)",
        "linked.bin (symlink)",
        "sub/deep/up (symlink)",
        "sub/self (symlink)",
    ]


def test_follow_copies_what_links_point_to_and_ends_on_loops(tree: Path) -> None:
    skipped: list[str] = []
    listing = list_files(LocalFileSystem(), str(tree), links="follow", skipped=skipped)
    assert [(rel, size) for rel, size, _ in listing] == [
        ("a.txt", 10),
        ("linked-dir/c.txt", 40),
        ("linked.bin", 30),
        ("sub/deep/b.txt", 20),
    ]
    assert sorted(skipped) == [
        "dangling (broken symlink)",
        "sub/deep/up (symlink loop)",
        "sub/self (symlink loop)",
    ]


def test_copy_tree_follow_places_regular_files(tree: Path, tmp_path: Path) -> None:
    fs, dst = LocalFileSystem(), tmp_path / "dst"
    result = copy_tree(fs, str(tree), fs, str(dst), dataset="links", links="follow")
    assert result.passed and result.files_copied == 4
    assert (dst / "linked.bin").read_bytes() == b"s" * 30 and not (dst / "linked.bin").is_symlink()
    assert (dst / "linked-dir" / "c.txt").read_bytes() == b"c" * 40
    assert len(result.links_skipped) == 3
    assert any("3 symlinks not copied (links=follow)" in r for r in result.reasons)
    default = copy_tree(fs, str(tree), fs, str(tmp_path / "dst2"), dataset="links")
    assert default.files_copied == 2 and not (tmp_path / "dst2" / "linked.bin").exists()
    assert any("use links: follow" in r for r in default.reasons)


def test_cli_links_option(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "state")
    dst = tmp_path / "cli-dst"
    assert main(["copy", str(tree), str(dst), "--links", "follow", "--state", state, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files_copied"] == 4 and out["passed"]
    assert main(["verify", str(tree), str(dst), "--links", "follow", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files_verified"] == 4
    with pytest.raises(SystemExit):
        main(["copy", str(tree), str(dst), "--links", "copy"])  # not offered: argparse refuses it
