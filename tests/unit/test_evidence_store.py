"""Evidence store: records round-trip on real files, run ids become safe folders, wave markers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec
import pytest
from pydantic import BaseModel

from migration_waves.evidence.store import (
    EvidenceStore,
    freeze_marker_path,
    freeze_writes,
    is_accepted,
    is_frozen,
    mark_accepted,
    read_marker,
    safe_run_id,
    unfreeze_writes,
    wave_marker_path,
)

pytestmark = pytest.mark.unit

RUN_ID = "manual__2026-12-03T10:00:00+00:00"


class Seed(BaseModel):
    files_copied: int
    bytes_copied: int
    passed: bool
    reasons: list[str]


def test_safe_run_id_maps_airflow_ids_to_folder_names() -> None:
    assert safe_run_id(RUN_ID) == "manual__2026-12-03T10_00_00_00_00"
    assert safe_run_id("scheduled__2026-12-05T02:00:00+00:00") == "scheduled__2026-12-05T02_00_00_00_00"
    assert safe_run_id("backfill__x/../y") == "backfill__x_.._y"  # no path separators survive
    assert safe_run_id(RUN_ID) == safe_run_id(RUN_ID)  # stable: a re-run finds the same folder
    with pytest.raises(ValueError, match="empty"):
        safe_run_id("  ")
    with pytest.raises(ValueError, match="dots"):
        safe_run_id("..")


def test_round_trip_on_local_files(tmp_path: Path) -> None:
    store = EvidenceStore(f"file://{tmp_path}", "pilot", RUN_ID)
    seed = Seed(files_copied=3, bytes_copied=1234, passed=True, reasons=["ok"])
    path = store.write("data", "digits-corpus-seed", seed)
    # Local roots give plain paths, under waves/<wave>/runs/<safe id>/<stage>/<name>.json
    assert path == str(
        tmp_path / "waves/pilot/runs/manual__2026-12-03T10_00_00_00_00/data/digits-corpus-seed.json"
    )
    on_disk = json.loads(Path(path).read_text())
    assert on_disk["stage"] == "data" and on_disk["name"] == "digits-corpus-seed"
    assert on_disk["wave"] == "pilot" and on_disk["run_id"] == RUN_ID
    assert on_disk["passed"] is True and on_disk["data"]["bytes_copied"] == 1234
    assert "written_at" in on_disk
    store.write("canary", "digits-classifier-step-5", {"step_pct": 5, "outcome": "promote"})
    assert store.read("data", "digits-corpus-seed") == on_disk
    assert store.read("data", "nothing-here") is None
    records = store.records()
    assert list(records) == ["data", "canary"]  # pipeline order, not alphabetical
    assert "passed" not in records["canary"]["digits-classifier-step-5"]  # only when the record has it
    # no temp files left behind by the atomic write
    assert not [p for p in Path(store.run_dir).rglob(".tmp-*")]


def test_overwrite_is_atomic_replace(tmp_path: Path) -> None:
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    first = store.write("preflight", "egress", {"passed": False})
    inode = os.stat(first).st_ino
    store.write("preflight", "egress", {"passed": True})
    assert store.read("preflight", "egress")["passed"] is True
    assert os.stat(first).st_ino != inode  # a new file moved into place, not rewritten in place


def test_memory_filesystem_and_urls() -> None:
    fs = fsspec.filesystem("memory")
    store = EvidenceStore("memory://state-test", "pilot", "run:1", fs=fs)
    url = store.write("outcome", "result", {"passed": False, "reasons": ["x"]})
    assert url.startswith("memory://") and url.endswith("/runs/run_1/outcome/result.json")
    assert store.records()["outcome"]["result"]["passed"] is False


def test_bulk_stages_are_stored_but_not_listed(tmp_path: Path) -> None:
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    store.write("samples", "baseline-digits-classifier", {"samples": [{"ms": 1.0}] * 3})
    store.write("baseline", "digits-classifier", {"p95_ms": 1.0, "passed": True})
    assert store.read("samples", "baseline-digits-classifier")["data"]["samples"][0] == {"ms": 1.0}
    assert list(store.records()) == ["baseline"]  # raw samples stay out of records and the report


def test_bad_names_are_refused_with_a_fix(tmp_path: Path) -> None:
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    with pytest.raises(ValueError, match=r"stage '\.\./up' is not a safe file name"):
        store.write("../up", "x", {})
    with pytest.raises(ValueError, match=r"record name '\.\./escape' is not a safe file name"):
        store.write("data", "../escape", {})
    with pytest.raises(TypeError, match="cannot store a object"):
        store.write("data", "odd", {"value": object()})


def test_corrupt_record_does_not_break_listing(tmp_path: Path) -> None:
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    store.write("gpu", "img-benchmark", {"passed": True})
    Path(store.path("gpu", "img-conformance.json")).write_text("{not json")
    records = store.records()
    assert records["gpu"]["img-benchmark"]["passed"] is True
    assert records["gpu"]["img-conformance"]["passed"] is False
    assert "not valid JSON" in records["gpu"]["img-conformance"]["error"]


def test_markers(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    assert is_accepted(root, "pilot") is None and not is_frozen(root, "pilot")
    mark_accepted(root, "pilot", RUN_ID, {"p95_ms": 120.5, "error_rate": 0.0})
    accepted = is_accepted(root, "pilot")
    assert accepted is not None and accepted["run_id"] == RUN_ID
    assert accepted["measured"]["p95_ms"] == 120.5 and accepted["accepted_at"]
    assert is_accepted(root, "early-adopters") is None  # markers are per wave

    marker = freeze_marker_path(root, "pilot")
    assert marker == str(tmp_path / "waves/pilot/frozen.json")  # plain path a local writer can poll
    assert not os.path.exists(marker)
    freeze_writes(root, "pilot", RUN_ID)
    assert is_frozen(root, "pilot") and os.path.exists(marker)
    assert read_marker(root, "pilot", "frozen")["run_id"] == RUN_ID
    assert unfreeze_writes(root, "pilot") is True
    assert not is_frozen(root, "pilot") and not os.path.exists(marker)
    assert unfreeze_writes(root, "pilot") is False
    assert wave_marker_path(root, "pilot", "accepted").endswith("waves/pilot/accepted.json")
    with pytest.raises(ValueError, match="marker 'done' is not one of accepted, frozen"):
        wave_marker_path(root, "pilot", "done")
