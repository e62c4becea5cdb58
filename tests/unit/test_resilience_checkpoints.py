"""The step-NNNNNN checkpoint convention: atomic writes, scanning, verification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migration_waves.resilience.checkpoints import scan_checkpoints, verify_checkpoint, write_checkpoint

pytestmark = pytest.mark.unit


def test_write_scan_verify_and_replace(tmp_path: Path) -> None:
    first = write_checkpoint(tmp_path, 10, {"a.bin": b"one"}, meta={"loss": 1.0})
    write_checkpoint(tmp_path, 5, {"a.bin": b"five"})
    (tmp_path / "final.npz").write_bytes(b"x")  # not a checkpoint
    (tmp_path / ".tmp-step-000015-1-abc").mkdir()  # an unfinished write
    entries = scan_checkpoints(tmp_path)
    assert [(e.step, e.path.name) for e in entries] == [(5, "step-000005"), (10, "step-000010")]
    assert verify_checkpoint(first) is None
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["step"] == 10 and manifest["files"]["a.bin"]["bytes"] == 3
    before = entries[1].identity
    # A job that starts over replaces a checkpoint under the same name; the identity shows it.
    write_checkpoint(tmp_path, 10, {"a.bin": b"again"})
    assert (first / "a.bin").read_bytes() == b"again"
    assert scan_checkpoints(tmp_path)[1].identity != before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".trash")]


def test_verify_reports_what_is_wrong(tmp_path: Path) -> None:
    assert scan_checkpoints(tmp_path / "missing") == []
    path = write_checkpoint(tmp_path, 3, {"w.npz": b"weights"})
    (path / "w.npz").write_bytes(b"weightz")
    assert "sha256" in (verify_checkpoint(path) or "")
    (path / "w.npz").write_bytes(b"short")
    assert verify_checkpoint(path) == "step-000003/w.npz has 5 bytes, the manifest says 7"
    (path / "w.npz").unlink()
    assert verify_checkpoint(path) == "step-000003/w.npz is listed in the manifest but missing"
    (path / "manifest.json").unlink()
    assert verify_checkpoint(path) == "step-000003 has no manifest.json (incomplete or torn)"
    other = write_checkpoint(tmp_path, 4, {"w.npz": b"x"})
    renamed = tmp_path / "step-000009"
    other.rename(renamed)
    assert "says step 4, the folder name says 000009" in (verify_checkpoint(renamed) or "")
    single = tmp_path / "step-000011.pt"
    single.write_bytes(b"\x00")
    assert [e.step for e in scan_checkpoints(tmp_path)][-1] == 11
    assert verify_checkpoint(single) is None
