"""Listings in forked children (the CLI lists source and target while it imports the engine)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migration_waves.cli import main
from migration_waves.transfer.errors import TransferError
from migration_waves.transfer.listing import list_local_in_child, list_local_rows

pytestmark = pytest.mark.unit

AWKWARD = ["plain", " leading", "tab\tname", "new\nline", "caf\u00e9", "cafe\u0301", "[x]?*", "d/e/f"]


def _tree(root: Path) -> None:
    for i, name in enumerate(AWKWARD):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * i)
    raw = os.path.join(os.fsencode(root), b"bad-\xff-name")  # not UTF-8: surrogate-escaped in Python
    with open(raw, "wb") as f:
        f.write(b"?")
    os.symlink("plain", root / "link")


def _no_children_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_child_listing_equals_the_in_process_listing(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "hollow" / "inner").mkdir(parents=True)
    collect = list_local_in_child(str(tmp_path), sort=True)
    assert collect is not None  # pytest runs this test on one thread: forking is allowed
    rows, skipped, empty = collect()
    expected_skipped: list[str] = []
    expected_empty: list[str] = []
    assert rows == list_local_rows(str(tmp_path), (), (), "skip", expected_skipped, empty_dirs=expected_empty)
    assert skipped == expected_skipped == ["link (symlink)"]
    assert empty == expected_empty == ["hollow/inner"]
    assert "bad-\udcff-name" in {r[0] for r in rows} and "new\nline" in {r[0] for r in rows}
    assert collect() == (rows, skipped, empty)  # a second call returns the same reply
    assert _no_children_left()


def test_child_listing_errors_come_back_as_transfer_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"1")
    collect = list_local_in_child(str(tmp_path / "file"))
    assert collect is not None
    with pytest.raises(TransferError, match="is a file, not a folder"):
        collect()
    missing = list_local_in_child(str(tmp_path / "nope"))
    assert missing is not None and missing() == ([], [], [])
    assert _no_children_left()


def test_cli_reaps_its_listing_children_when_the_run_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    code = main(["sync", str(src), str(tmp_path / "dst"), "--delete", "--max-delete", "lots",
                 "--state", str(tmp_path / "state")])  # fmt: skip
    assert code == 2
    assert _no_children_left()
