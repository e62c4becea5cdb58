"""Symlink policy of the engine, the CLI and the spec: skip (default), follow, or copy as links.

Every walk ends (loops are detected when following; "copy" never follows). With links="copy" a
source symlink is recreated at the target as a symlink with the same text (rsync -l), and a
manifest row is the digest of b"symlink:" + its text, checked here against blake3 directly.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import blake3
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem
from spec_support import wave_spec, write_spec

from migration_waves.cli import main
from migration_waves.spec.loader import SpecError, load_wave
from migration_waves.transfer.engine import TransferError, copy_tree, verify_tree
from migration_waves.transfer.journal import Journal
from migration_waves.transfer.manifest import build_manifest, list_files, list_links

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
    assert any("3 paths not copied (symlinks with links=follow" in r for r in result.reasons)
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
        main(["copy", str(tree), str(dst), "--links", "hardlink"])  # not offered: argparse refuses it


# -- links: copy ---------------------------------------------------------------------------------

LOCAL = LocalFileSystem()


def _link_digest(text: str) -> str:
    """The manifest digest of a link, computed here without the engine's helper."""
    return blake3.blake3(b"symlink:" + os.fsencode(text)).hexdigest()


def _links_at(root: Path) -> dict[str, str]:
    """{relative path: link text} of every symlink under root, walked without following any."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):  # os.walk does not descend into linked folders
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                out[path.relative_to(root).as_posix()] = os.readlink(path)
    return out


def _no_temp_names(root: Path) -> bool:
    return not [p for p in root.rglob("*") if ".mwpart-" in p.name]


def test_copy_policy_lists_links_apart_and_never_follows(tree: Path) -> None:
    found: list[tuple[str, str, float]] = []
    skipped: list[str] = []
    listing = list_files(LOCAL, str(tree), links="copy", skipped=skipped, links_found=found)
    assert [rel for rel, _, _ in listing] == ["a.txt", "sub/deep/b.txt"]  # the loops were not entered
    assert skipped == []
    texts = {rel: text for rel, text, _ in found}
    assert texts == _links_at(tree) and texts["sub/deep/up"] == "../.." and texts["sub/self"] == "."
    assert [row[0] for row in found] == sorted(texts)
    assert all(mtime == os.lstat(tree / rel).st_mtime for rel, _, mtime in found)
    # the links-only walk sees the same links; include/exclude select links as they select files
    assert list_links(LOCAL, str(tree)) == found
    assert [r[0] for r in list_links(LOCAL, str(tree), exclude=["sub/*"])] == [
        "dangling",
        "linked-dir",
        "linked.bin",
    ]


def test_copy_recreates_links_with_their_text(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    outside_before = sorted(p.name for p in (tmp_path / "outside").rglob("*"))
    result = copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy")
    assert result.passed, result.reasons
    # a link to a file, to a folder, a dangling link and two loops: all placed as links, none followed
    assert _links_at(dst) == _links_at(tree)
    assert (dst / "linked.bin").is_symlink() and (dst / "linked.bin").read_bytes() == b"s" * 30
    assert (dst / "linked-dir").is_symlink() and not (dst / "dangling").exists()
    assert (dst / "a.txt").read_bytes() == b"a" * 10 and not (dst / "a.txt").is_symlink()
    assert result.files_copied == 7 and result.links_skipped == []
    assert sorted(p.name for p in (tmp_path / "outside").rglob("*")) == outside_before
    assert _no_temp_names(dst)
    reasons = {i.path: i.reason for i in result.plan}
    assert reasons["dangling"] == "new symlink" and reasons["a.txt"] == "new"
    rows = result.target_manifest.index()  # type: ignore[union-attr]
    for rel, text in _links_at(tree).items():
        assert rows[rel][1] == len(os.fsencode(text)) and rows[rel][3] == _link_digest(text)
    assert any("symlinks kept as links (links=copy): 5 new or changed" in r for r in result.reasons)

    again = copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy")
    assert again.passed and again.files_copied == 0 and again.files_skipped == 7
    assert {i.reason for i in again.plan if i.path in _links_at(tree)} == {"same symlink text"}
    # every link keeps a row on an unchanged run too: the manifest stays complete
    assert again.target_manifest is not None and again.target_manifest.paths == result.target_manifest.paths  # type: ignore[union-attr]


def test_changed_link_text_is_updated_and_removed_link_deleted(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy")
    (tree / "linked.bin").unlink()
    os.symlink("sub/deep/b.txt", tree / "linked.bin")  # same name, new text
    (tree / "dangling").unlink()

    kept = copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy")
    assert kept.passed and kept.files_copied == 1 and kept.files_deleted == 0
    assert os.readlink(dst / "linked.bin") == "sub/deep/b.txt"
    assert (dst / "linked.bin").read_bytes() == b"b" * 20  # it resolves inside the target now
    assert {i.path: i.reason for i in kept.plan if i.action == "copy"} == {
        "linked.bin": "symlink text differs"
    }
    assert kept.extra_kept == ["dangling"] and (dst / "dangling").is_symlink()

    with pytest.raises(TransferError, match="more than max_delete=0"):
        copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy", delete=True, max_delete=0)
    assert (dst / "dangling").is_symlink()  # refused before anything moved
    synced = copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy", delete=True)
    assert synced.passed and synced.files_deleted == 1 and synced.files_copied == 0
    assert not os.path.lexists(dst / "dangling") and _links_at(dst) == _links_at(tree)
    assert [(i.path, i.reason) for i in synced.plan if i.action == "delete"] == [
        ("dangling", "symlink not in source")
    ]
    assert "dangling" not in synced.target_manifest.index()  # type: ignore[union-attr]
    assert _no_temp_names(dst)


def test_files_and_links_swap_places_without_writing_through_a_link(tree: Path, tmp_path: Path) -> None:
    dst, outside = tmp_path / "dst", tmp_path / "outside"
    copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy")
    # the source's linked folder becomes a real folder, a linked file a real file, a file a link
    (tree / "linked-dir").unlink()
    (tree / "linked-dir").mkdir()
    (tree / "linked-dir" / "n.txt").write_bytes(b"new")
    (tree / "linked.bin").unlink()
    (tree / "linked.bin").write_bytes(b"real")
    (tree / "a.txt").unlink()
    os.symlink("sub/deep/b.txt", tree / "a.txt")

    result = copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy")
    assert result.passed, result.reasons
    # the old target link to outside/dir was removed first: the new file did not land there
    assert not (outside / "dir" / "n.txt").exists()
    assert (dst / "linked-dir").is_dir() and not (dst / "linked-dir").is_symlink()
    assert (dst / "linked-dir" / "n.txt").read_bytes() == b"new"
    # the file replaced the link; what the link pointed to is untouched
    assert not (dst / "linked.bin").is_symlink() and (dst / "linked.bin").read_bytes() == b"real"
    assert (outside / "secret.bin").read_bytes() == b"s" * 30
    # the link replaced the file at the target, and that is not a deletion nor an extra file kept
    assert os.readlink(dst / "a.txt") == "sub/deep/b.txt" and result.extra_kept == []
    assert [i.path for i in result.plan if i.action == "delete"] == ["linked-dir"]
    check = verify_tree(
        LOCAL, str(dst), build_manifest(LOCAL, str(tree), links="copy"), dataset="links", links="copy"
    )
    assert check.passed, check.reasons


def test_verify_compares_link_text_and_does_not_follow(tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    copy_tree(LOCAL, str(tree), LOCAL, str(dst), dataset="links", links="copy")
    expected = build_manifest(LOCAL, str(tree), algorithm="blake3", links="copy")
    assert expected.index()["dangling"][3] == _link_digest(os.readlink(tree / "dangling"))
    ok = verify_tree(LOCAL, str(dst), expected, dataset="links", links="copy")
    assert ok.passed and ok.files_verified == 7, ok.reasons  # dangling and looping links included

    # same length, other text: the digest tells them apart (what it points to is never read)
    text = os.readlink(dst / "linked.bin")
    (dst / "linked.bin").unlink()
    os.symlink(text[:-1] + ("X" if text[-1] != "X" else "Y"), dst / "linked.bin")
    # a regular file holding the link's text has the link's size but not its digest
    (dst / "sub" / "self").unlink()
    (dst / "sub" / "self").write_text(".")
    bad = verify_tree(LOCAL, str(dst), expected, dataset="links", links="copy")
    assert not bad.passed and bad.digest_mismatch == ["linked.bin", "sub/self"]
    assert any("2 files with a different blake3 digest" in r and "linked.bin" in r for r in bad.reasons)


def test_copy_to_an_object_store_is_refused_before_anything_moves(tree: Path) -> None:
    mem = MemoryFileSystem()
    root = f"/mw-links-{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(TransferError) as err:
            copy_tree(LOCAL, str(tree), mem, root, dataset="corpus", links="copy")
        message = str(err.value)
        assert "dataset corpus" in message and "links: copy" in message and "cannot hold symlinks" in message
        assert "links: skip" in message and "links: follow" in message
        assert not [k for k in MemoryFileSystem.store if k.startswith(root + "/")]
    finally:
        for key in [k for k in MemoryFileSystem.store if k.startswith(root + "/")]:
            del MemoryFileSystem.store[key]


def test_cli_copy_links_as_links(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, dst = str(tmp_path / "state"), tmp_path / "cli-dst"
    assert main(["copy", str(tree), str(dst), "--links", "copy", "--state", state, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["files_copied"] == 7 and out["files_verified"] == 7
    assert _links_at(dst) == _links_at(tree)
    verified = Journal(state, out["source"], out["target"]).verified()
    assert verified is not None and verified.index()["linked-dir"][3] == _link_digest(
        str(tmp_path / "outside" / "dir")
    )

    (tree / "dangling").unlink()
    code = main(["sync", str(tree), str(dst), "--links", "copy", "--delete", "--state", state, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["files_deleted"] == 1 and not os.path.lexists(dst / "dangling")
    verified = Journal(state, out["source"], out["target"]).verified()
    assert verified is not None and "dangling" not in verified.index() and len(verified) == 6

    assert main(["verify", str(tree), str(dst), "--links", "copy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files_verified"] == 6
    (dst / "linked-dir").unlink()
    os.symlink(tmp_path / "outside", dst / "linked-dir")
    assert main(["verify", str(tree), str(dst), "--links", "copy", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["mismatched"] == ["linked-dir"]

    mem_target = f"memory://mw-links-{uuid.uuid4().hex[:8]}"
    assert main(["copy", str(tree), mem_target, "--links", "copy", "--state", state, "--json"]) == 2
    refused = json.loads(capsys.readouterr().out)
    assert refused["refused"] and "links: copy" in refused["error"]


def _wave(tmp_path: Path, project_root: Path, **dataset: Any) -> Path:
    data = wave_spec(
        project_root,
        "linked",
        state=tmp_path / "state",
        sites={
            "onprem": {"kind": "onprem", "storage": str(tmp_path / "onprem")},
            "dr": {"kind": "onprem", "storage": str(tmp_path / "dr")},
            "aws": {"kind": "cloud", "storage": "s3://ml-landing", "conn_id": "aws_cloud"},
        },
        datasets=[
            {"name": "models", "class": "immutable", "source": "onprem:m/", "target": "dr:m/", **dataset}
        ],
    )
    path = write_spec(tmp_path / "linked.yaml", data)
    return path


def test_spec_links_copy_needs_a_local_target_and_no_shards(tmp_path: Path, project_root: Path) -> None:
    assert load_wave(_wave(tmp_path, project_root, links="copy")).datasets[0].links == "copy"
    cases = {
        "object store": ({"links": "copy", "target": "aws:m/"}, "datasets[0].links", "site aws is s3://"),
        "shards": ({"links": "copy", "shards": 4}, "datasets[0].shards", "use shards: 1 with links: copy"),
        "managed": (
            {"links": "copy", "engine": "datasync", "engine_options": {"task_arn": TASK}},
            "datasets[0].links",
            "links applies only to engine native",
        ),
        "unknown": ({"links": "hardlink"}, "datasets[0].links", "'skip', 'follow' or 'copy'"),
    }
    for why, (extra, field, message) in cases.items():
        with pytest.raises(SpecError) as err:
            load_wave(_wave(tmp_path, project_root, **extra))
        fields = {p.field: str(p) for p in err.value.problems}
        assert field in fields and message in fields[field], (why, fields)
        assert "dataset models" in fields[field] or why == "unknown", why


TASK = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0"


@pytest.mark.parametrize("policy", ["skip", "follow", "copy"])
def test_walk_relative_to_each_folder_equals_the_walk_by_full_path(
    tree: Path, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk stats entries relative to an open folder (fstatat) where the OS allows; the
    path-by-path walk (other platforms) must give the same rows, skips, links and empty folders."""
    from migration_waves.transfer import listing

    (tree / "hollow" / "inner").mkdir(parents=True)
    (tree / "sub" / ".x.mwpart-dead00-1-abc1").write_bytes(b"t")  # an in-flight temp name

    def walk() -> tuple[Any, ...]:
        skipped: list[str] = []
        found: list[tuple[str, str, float]] = []
        empty: list[str] = []
        rows = listing.list_local_rows(
            str(tree),
            (),
            (),
            policy,
            skipped,
            links_found=found,
            empty_dirs=empty,  # type: ignore[arg-type]
        )
        return rows, sorted(skipped), found, empty

    assert listing._SCANDIR_FD, "Linux scans folders by descriptor"
    by_descriptor = walk()
    monkeypatch.setattr(listing, "_SCANDIR_FD", False)
    assert walk() == by_descriptor
    rows, skipped, found, empty = by_descriptor
    assert empty == ["hollow/inner"]
    assert any(s.startswith("sub/.x.mwpart-") for s in skipped)
    if policy == "follow":
        assert "linked-dir/c.txt" in [r[0] for r in rows] and "sub/self (symlink loop)" in skipped
    if policy == "copy":
        assert [f[0] for f in found] == ["dangling", "linked-dir", "linked.bin", "sub/deep/up", "sub/self"]


def test_follow_never_copies_the_target_into_itself(tmp_path: Path) -> None:
    """A source link to the target (or to a folder above it), followed, would nest the target
    into itself one level deeper on every run; the walk leaves it out and says so."""
    outer = tmp_path / "outer"
    src, dst, state = tmp_path / "src", outer / "dst", str(tmp_path / "state")
    src.mkdir()
    (src / "q").write_bytes(b"q")
    (src / "to-target").symlink_to("../outer/dst")
    (src / "above").symlink_to(outer)  # the target is inside what this points to
    (outer / "side").mkdir(parents=True)
    (outer / "side" / "s").write_bytes(b"s")
    for _ in range(3):
        assert main(["sync", str(src), str(dst), "--links", "follow", "--state", state]) == 0
    files = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert files == ["above/side/s", "q"], files  # no dst/to-target/..., no above/dst/...
    skipped: list[str] = []
    from migration_waves.transfer.listing import folder_key

    list_files(LocalFileSystem(), str(src), links="follow", skipped=skipped, avoid=folder_key(str(dst)))
    assert "to-target (the target itself, reached through a symlink: never copied into itself)" in skipped
