"""`migration-waves diff`: two Parquet manifests compared path by path (real files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from migration_waves.cli import main
from migration_waves.transfer.diff import diff_manifest_files
from migration_waves.transfer.errors import TransferError
from migration_waves.transfer.manifest import Manifest

pytestmark = pytest.mark.unit
LOCAL = LocalFileSystem()


def _write(path: Path, rows: list[tuple[str, int, float, str]], algorithm: str = "blake3") -> str:
    Manifest.from_rows("file:///x", algorithm, rows).write_parquet(LOCAL, str(path))
    return str(path)


def test_missing_extra_and_changed_are_each_named(tmp_path: Path) -> None:
    d = "ab" * 32
    left = _write(
        tmp_path / "l.parquet", [("a", 1, 0.0, d), ("b [1]", 2, 0.0, d), ("c", 3, 0.0, d), ("e", 5, 0.0, d)]
    )
    right = _write(
        tmp_path / "r.parquet",
        [("a", 1, 9.0, d), ("c", 3, 0.0, "cd" * 32), ("d", 4, 0.0, d), ("e", 6, 0.0, d)],
    )
    diff = diff_manifest_files(LOCAL, left, LOCAL, right)
    assert (diff.missing, diff.extra, diff.changed) == (["b [1]"], ["d"], ["c", "e"])
    assert (diff.same, diff.files_left, diff.files_right) == (1, 4, 4)  # an mtime alone is no change
    assert not diff.passed
    same = diff_manifest_files(LOCAL, left, LOCAL, left)
    assert same.passed and same.same == 4 and same.missing == same.extra == same.changed == []


def test_limit_caps_the_listed_paths_not_the_counts(tmp_path: Path) -> None:
    left = _write(tmp_path / "l.parquet", [(f"f{i:03d}", 1, 0.0, "00") for i in range(50)])
    right = _write(tmp_path / "r.parquet", [("other", 1, 0.0, "00")])
    diff = diff_manifest_files(LOCAL, left, LOCAL, right, limit=3)
    assert diff.missing_count == 50 and diff.missing == ["f000", "f001", "f002"]


def test_refuses_mixed_algorithms_and_non_manifests(tmp_path: Path) -> None:
    left = _write(tmp_path / "l.parquet", [("a", 1, 0.0, "00")])
    right = _write(tmp_path / "r.parquet", [("a", 1, 0.0, "00")], algorithm="sha256")
    with pytest.raises(TransferError, match=r"blake3 and .* sha256"):
        diff_manifest_files(LOCAL, left, LOCAL, right)
    with pytest.raises(TransferError, match="does not exist"):
        diff_manifest_files(LOCAL, left, LOCAL, str(tmp_path / "nope.parquet"))


def test_cli_exit_status_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    left = _write(tmp_path / "l.parquet", [("a", 1, 0.0, "00"), ("b", 1, 0.0, "00")])
    right = _write(tmp_path / "r.parquet", [("a", 1, 0.0, "00")])
    assert main(["diff", left, left]) == 0
    capsys.readouterr()
    assert main(["diff", left, right, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["missing"] == ["b"] and out["passed"] is False
    assert main(["diff", left, str(tmp_path / "gone.parquet")]) == 2
