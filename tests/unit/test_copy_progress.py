"""Progress lines of a copy: counted from a real copy_tree over local files, logged at intervals."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from migration_waves.airflow.progress import EVERY_ENV, CopyProgress, progress_interval
from migration_waves.transfer.engine import copy_tree

pytestmark = pytest.mark.unit


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _tree(root: Path, sizes: list[int]) -> None:
    root.mkdir(parents=True)
    for i, size in enumerate(sizes):
        (root / f"f{i}.bin").write_bytes(bytes([i % 256]) * size)


def test_counts_files_and_bytes_of_the_plan_and_gives_rate_and_eta(tmp_path: Path) -> None:
    sizes = [300_000, 200_000, 100_000, 0]
    _tree(tmp_path / "src", sizes)
    fs = LocalFileSystem()
    clock = _Clock()
    progress = CopyProgress("corpus seed", log=logging.getLogger("t"), every_s=0, clock=clock)
    result = copy_tree(
        fs, str(tmp_path / "src"), fs, str(tmp_path / "dst"), dataset="corpus", **progress.hooks()
    )
    assert result.passed
    assert (progress.total_files, progress.total_bytes) == (4, sum(sizes))
    assert (progress.files_done, progress.bytes_done) == (4, sum(sizes))
    clock.now += 2.0
    assert (
        progress.line() == "dataset corpus seed: 4/4 files, 585.9 KiB/585.9 KiB (100%), 293.0 KiB/s, ETA 0s"
    )

    # Half-way figures: the ETA is the bytes left at the average rate so far.
    half = CopyProgress("corpus sync", log=logging.getLogger("t"), every_s=0, clock=clock)
    half.on_plan(result_plan(result))
    clock.now += 10.0
    half.on_chunk(300_000)
    half.on_copied(None)
    assert half.line() == "dataset corpus sync: 1/4 files, 293.0 KiB/585.9 KiB (50%), 29.3 KiB/s, ETA 10s"


def result_plan(result: object) -> object:
    """A plan-like object over a result's items (what copy_tree hands to on_plan)."""
    items = result.plan  # type: ignore[attr-defined]

    class _Plan:
        def of(self, action: str) -> list[object]:
            return [i for i in items if i.action == action]

    return _Plan()


def test_nothing_sent_yet_says_so() -> None:
    clock = _Clock()
    progress = CopyProgress("big-model seed", log=logging.getLogger("t"), every_s=0, clock=clock)

    class _Item:
        size = 40 * 2**30

    class _Plan:
        def of(self, action: str) -> list[object]:
            return [_Item()] if action == "copy" else []

    progress.on_plan(_Plan())
    clock.now += 30
    assert progress.line() == (
        "dataset big-model seed: 0/1 files, 0 B/40.0 GiB (0%), 0 B/s, ETA unknown (nothing sent yet)"
    )


def test_logs_every_interval_while_the_copy_runs_and_a_last_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _tree(tmp_path / "src", [50_000] * 6)
    fs = LocalFileSystem()
    gate = threading.Event()
    lines_before_release: list[int] = []

    def slow(nbytes: int) -> None:  # hold the copy until two progress lines were logged
        progress.on_chunk(nbytes)
        if not gate.is_set():
            deadline = time.monotonic() + 5
            while len(progress.lines) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            lines_before_release.append(len(progress.lines))
            gate.set()

    with caplog.at_level(logging.INFO, logger="wave"):
        with CopyProgress("logs ingest", log=logging.getLogger("wave"), every_s=0.05) as progress:
            hooks = {**progress.hooks(), "throttle": slow}
            result = copy_tree(fs, str(tmp_path / "src"), fs, str(tmp_path / "dst"), dataset="logs", **hooks)
    assert result.passed and result.files_copied == 6
    assert lines_before_release and lines_before_release[0] >= 2  # lines came while it ran
    assert progress.lines[-1].startswith("dataset logs ingest: 6/6 files, 293.0 KiB/293.0 KiB (100%)")
    assert "ETA 0s" in progress.lines[-1]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dataset logs ingest")]
    assert logged == progress.lines


def test_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EVERY_ENV, raising=False)
    assert progress_interval() == 30.0
    monkeypatch.setenv(EVERY_ENV, "5")
    assert progress_interval() == 5.0
    monkeypatch.setenv(EVERY_ENV, "often")
    with pytest.raises(ValueError, match=f"{EVERY_ENV}='often' is not a number of seconds"):
        progress_interval()
    monkeypatch.setenv(EVERY_ENV, "0")
    with pytest.raises(ValueError, match="must be above 0"):
        progress_interval()
