"""Progress lines for long copies: files and bytes done of the plan, rate, ETA, every N seconds.

`copy_tree` plans before anything moves and reports the plan through `on_plan`; each placed file
through `on_copied`; each chunk through `throttle(nbytes)` before it is written. `CopyProgress`
takes all three, and while the copy runs a reporter thread logs one line every `every_s` seconds,
also when nothing moves (a stalled copy is what a reader of the task log most needs to see):

    dataset corpus seed: 120/2,020 files, 1.2 GiB/3.4 GiB (35%), 45.2 MiB/s, ETA 52s

Bytes count what was sent, so a file retried after its source changed counts twice; the ETA is
the bytes left at the average rate so far. No Airflow import: the operator hands in its logger.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from migration_waves.transfer.engine import human_bytes

EVERY_ENV = "MIGRATION_WAVES_PROGRESS_EVERY_S"
DEFAULT_EVERY_S = 30.0


class _Plan(Protocol):
    def of(self, action: str) -> list[Any]: ...


def progress_interval() -> float:
    """Seconds between progress lines: $MIGRATION_WAVES_PROGRESS_EVERY_S, default 30."""
    raw = os.environ.get(EVERY_ENV)
    if not raw:
        return DEFAULT_EVERY_S
    try:
        every = float(raw)
    except ValueError:
        raise ValueError(f"{EVERY_ENV}={raw!r} is not a number of seconds; set it to e.g. 30") from None
    if every <= 0:
        raise ValueError(f"{EVERY_ENV}={raw!r} must be above 0 seconds; set it to e.g. 30")
    return every


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class CopyProgress:
    """Counts a copy's progress against its plan and logs it at intervals (thread-safe)."""

    def __init__(
        self,
        label: str,
        *,
        log: logging.Logger | Any,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.log = log
        self.every_s = progress_interval() if every_s is None else every_s
        self.clock = clock
        self.total_files = 0
        self.total_bytes = 0
        self.files_done = 0
        self.bytes_done = 0
        self.lines: list[str] = []
        self._started: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the copy_tree hooks --------------------------------------------------------------------

    def on_plan(self, plan: _Plan) -> None:
        """Totals from the plan's copy items; starts the clock and the reporter."""
        copies = plan.of("copy")
        with self._lock:
            self.total_files = len(copies)
            self.total_bytes = sum(int(item.size or 0) for item in copies)
            self._started = self.clock()
        if copies and self.every_s and self._thread is None:
            self._thread = threading.Thread(target=self._report, name=f"progress-{self.label}", daemon=True)
            self._thread.start()

    def on_copied(self, entry: Any) -> None:
        with self._lock:
            self.files_done += 1

    def on_chunk(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_done += nbytes

    def hooks(self) -> dict[str, Callable[..., None]]:
        """copy_tree's keyword arguments: `copy_tree(..., **progress.hooks())`."""
        return {"on_plan": self.on_plan, "on_copied": self.on_copied, "throttle": self.on_chunk}

    # -- lines ----------------------------------------------------------------------------------

    def line(self) -> str:
        """The current progress line."""
        with self._lock:
            files, total_files = self.files_done, self.total_files
            done, total = self.bytes_done, self.total_bytes
            elapsed = self.clock() - self._started if self._started is not None else 0.0
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        rate = done / elapsed if elapsed > 0 else 0.0
        if done >= total:
            eta = "ETA 0s"
        elif rate > 0:
            eta = f"ETA {_duration((total - done) / rate)}"
        else:
            eta = "ETA unknown (nothing sent yet)"
        return (
            f"dataset {self.label}: {files:,}/{total_files:,} files, {human_bytes(done)}/{human_bytes(total)}"
            f"{pct}, {human_bytes(rate)}/s, {eta}"
        )

    def emit(self) -> str:
        text = self.line()
        self.lines.append(text)
        self.log.info("%s", text)
        return text

    def _report(self) -> None:
        while not self._stop.wait(self.every_s):
            self.emit()

    # -- context --------------------------------------------------------------------------------

    def __enter__(self) -> CopyProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if exc_type is None:
                self.emit()  # the last line: where the copy ended
