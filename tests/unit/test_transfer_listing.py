"""Listings in forked children (the CLI lists source and target while it imports the engine).

Forking is only done by a process with one thread, and pytest may hold others (servers started
by earlier tests), so each case runs in a fresh interpreter, as the CLI does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
    (root / "hollow" / "inner").mkdir(parents=True)


def _run(script: str, *args: str) -> None:
    """Run `script` in a fresh single-threaded interpreter; it asserts, and ends with no child left."""
    tail = """
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        pass
    else:
        raise AssertionError("a listing child was left behind")
    """
    code = "import os, sys\n" + textwrap.dedent(script) + textwrap.dedent(tail)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_child_listing_equals_the_in_process_listing(tmp_path: Path) -> None:
    _tree(tmp_path)
    _run(
        """
        from migration_waves.transfer.listing import list_local_in_child, list_local_rows
        root = sys.argv[1]
        collect = list_local_in_child(root, sort=True)
        assert collect is not None, "one thread: forking is allowed"
        rows, skipped, empty = collect()
        expected_skipped, expected_empty = [], []
        assert rows == list_local_rows(root, (), (), "skip", expected_skipped, empty_dirs=expected_empty)
        assert skipped == expected_skipped == ["link (symlink)"], skipped
        assert empty == expected_empty == ["hollow/inner"], empty
        names = {r[0] for r in rows}
        assert "bad-\\udcff-name" in names and "new\\nline" in names and "cafe\\u0301" in names, names
        assert collect() == (rows, skipped, empty)  # a second call returns the same reply
        """,
        str(tmp_path),
    )


def test_child_listing_errors_come_back_as_transfer_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"1")
    _run(
        """
        from migration_waves.transfer.errors import TransferError
        from migration_waves.transfer.listing import list_local_in_child
        collect = list_local_in_child(sys.argv[1] + "/file")
        try:
            collect()
        except TransferError as exc:
            assert "is a file, not a folder" in str(exc), exc
        else:
            raise AssertionError("no error")
        assert list_local_in_child(sys.argv[1] + "/nope")() == ([], [], [])
        """,
        str(tmp_path),
    )


def test_cli_reaps_its_listing_children_when_the_run_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    _run(
        """
        from migration_waves.cli import main
        args = ["sync", sys.argv[1], sys.argv[2], "--delete", "--max-delete", "lots", "--state", sys.argv[3]]
        code = main(args)
        assert code == 2, code
        """,
        str(src),
        str(tmp_path / "dst"),
        str(tmp_path / "state"),
    )


def test_with_threads_running_no_child_is_forked(tmp_path: Path) -> None:
    import threading

    from migration_waves.transfer.listing import list_local_in_child

    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert list_local_in_child(str(tmp_path)) is None  # forking a threaded process is unsafe
    finally:
        stop.set()
        worker.join()
