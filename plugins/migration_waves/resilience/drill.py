"""Forced-interruption drill: kill a training job mid-run, restart it, time the recovery.

``run_interruption_drill(command, checkpoint_dir, workload=..., rto_s=..., rpo_s=...)``:

1. starts ``command`` (``{checkpoint_dir}`` in any item is replaced by the folder; an ``argv[0]``
   of ``python``/``python3`` is replaced by this interpreter, so the job runs in the same
   environment as the caller);
2. waits until ``interrupt_after_checkpoints`` new checkpoints exist, then interrupts the whole
   process group (``KILL``; or ``TERM``, then ``KILL`` after ``grace_s``);
3. records the step reached at the interrupt and the newest valid checkpoint left: steps lost,
   and the age of that checkpoint at the interrupt (work lost, compared with the RPO);
4. restarts the same command and measures: detect (interrupt -> exit observed), restart (exit ->
   new process), recover (interrupt -> first new checkpoint written after the restart, compared
   with the RTO); checks that the job resumed rather than started over, and waits for it to end.

Checkpoint convention (see ``migration_waves.resilience.checkpoints``): the job writes entries
named ``step-<digits>`` (folder or file) into the checkpoint folder, each appearing atomically
(write under a temporary name, then rename); folders may carry a ``manifest.json`` with sha256
digests, which are verified. Progress is read from stdout lines starting with ``step=<N>``
(optional: without them the drill relies on checkpoints alone). A job that resumed from step S
writes its next checkpoint at a step above S and prints ``step=`` values above S; a job that
starts over does neither, and the drill fails. Use a fresh checkpoint folder for each drill:
checkpoints already there are not counted as new.

The drill never hangs: past ``timeout_s`` it kills the job's process group and fails.
"""

from __future__ import annotations

import os
import re
import signal as signals
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from migration_waves.resilience.checkpoints import CheckpointEntry, scan_checkpoints, verify_checkpoint

STEP_LINE_RE = re.compile(r"^\s*step=(\d+)\b")
POLL_S = 0.02
LOG_TAIL_LINES = 40


class DrillReport(BaseModel):
    """Evidence of one forced-interruption drill."""

    workload: str
    command: list[str]
    checkpoint_dir: str
    signal: str
    grace_s: float
    rto_s: float
    rpo_s: float
    interrupt_after_checkpoints: int
    interrupt_delay_s: float | None = Field(
        default=None, description="wait after the Nth checkpoint before interrupting (as used)"
    )
    timeout_s: float
    started_at: str
    finished_at: str
    passed: bool
    reasons: list[str] = Field(description="why the drill failed; empty when it passed")
    summary: str
    checkpoints_before_interrupt: list[int] = Field(
        default_factory=list, description="steps of new checkpoints"
    )
    interrupted: bool = False
    graceful_exit: bool | None = Field(
        default=None, description="TERM: the job exited within the grace period, no SIGKILL needed"
    )
    steps_at_interrupt: int | None = Field(default=None, description="last step= line before the interrupt")
    last_checkpoint_step: int | None = None
    steps_lost: int | None = None
    work_lost_s: float | None = Field(default=None, description="age of the last checkpoint at the interrupt")
    time_to_detect_s: float | None = Field(default=None, description="interrupt -> process exit observed")
    time_to_restart_s: float | None = Field(default=None, description="exit observed -> new process running")
    time_to_first_progress_s: float | None = Field(default=None, description="restart -> first step= line")
    time_to_recover_s: float | None = Field(
        default=None, description="interrupt -> first new checkpoint after restart"
    )
    first_step_after_restart: int | None = None
    first_checkpoint_after_restart: int | None = None
    resumed: bool | None = None
    completed: bool = False
    final_step: int | None = None
    first_exit_code: int | None = None
    final_exit_code: int | None = None
    total_s: float = 0.0
    log_tail: list[str] = Field(default_factory=list)


class _Child:
    """A job process in its own process group, its stdout read by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str], label: str) -> None:
        self.label = label
        self.lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.first_step: int | None = None
        self.first_step_at: float | None = None
        self.last_step: int | None = None
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # own process group: an interrupt reaches the job's children too
        )
        self._reader = threading.Thread(target=self._read, name=f"drill-{label}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            self.lines.append(f"[{self.label}] {line}")
            match = STEP_LINE_RE.match(line)
            if match:
                step = int(match.group(1))
                if self.first_step is None:
                    self.first_step = step
                    self.first_step_at = time.monotonic()
                self.last_step = step

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal_group(self, sig: signals.Signals) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def drain(self, timeout: float = 5.0) -> None:
        """Wait for the reader to reach end of output (after the process exited)."""
        self._reader.join(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.signal_group(signals.SIGKILL)
            self.wait(10)
        else:
            self.signal_group(signals.SIGKILL)  # leftovers in the group
        self.drain(2)


def _resolve_command(command: list[str], checkpoint_dir: Path) -> list[str]:
    argv = [item.replace("{checkpoint_dir}", str(checkpoint_dir)) for item in command]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def _new_entries(checkpoint_dir: Path, known: dict[str, tuple[int, int]]) -> list[CheckpointEntry]:
    return [e for e in scan_checkpoints(checkpoint_dir) if known.get(e.path.name) != e.identity]


def _newest_valid(checkpoint_dir: Path) -> CheckpointEntry | None:
    for entry in reversed(scan_checkpoints(checkpoint_dir)):
        if verify_checkpoint(entry.path) is None:
            return entry
    return None


def run_interruption_drill(
    command: list[str],
    checkpoint_dir: Path,
    *,
    workload: str,
    rto_s: float,
    rpo_s: float,
    signal: str = "KILL",
    grace_s: float = 0.0,
    interrupt_after_checkpoints: int = 2,
    timeout_s: float = 300,
    env: dict[str, str] | None = None,
    interrupt_delay_s: float | None = None,
) -> DrillReport:
    """Interrupt ``command`` after N checkpoints, restart it, and judge recovery against RTO and RPO.

    ``env`` is added to this process's environment for the job. ``interrupt_delay_s`` waits that
    long after the Nth checkpoint before interrupting, so the job dies between checkpoints and the
    drill measures real lost work; by default, half the interval seen between the last two
    checkpoints (0 when only one was awaited). Returns a ``DrillReport``;
    ``passed`` is False with reasons naming the workload when the job fails, never checkpoints,
    does not resume, misses the RTO/RPO, or runs past ``timeout_s``.
    """
    sig_name = signal.upper().removeprefix("SIG")
    if sig_name not in ("KILL", "TERM"):
        raise ValueError(f"drill of workload {workload}: signal must be KILL or TERM, got {signal!r}")
    if interrupt_after_checkpoints < 1:
        raise ValueError(
            f"drill of workload {workload}: interrupt_after_checkpoints must be >= 1, "
            f"got {interrupt_after_checkpoints}"
        )
    if not command:
        raise ValueError(f"drill of workload {workload}: command is empty; give the training job's argv")
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    argv = _resolve_command(command, checkpoint_dir)
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("PYTHONUNBUFFERED", "1")  # progress lines must arrive as they are printed

    started_wall = datetime.now(UTC)
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    report = DrillReport(
        workload=workload, command=argv, checkpoint_dir=str(checkpoint_dir), signal=sig_name, grace_s=grace_s,
        rto_s=rto_s, rpo_s=rpo_s, interrupt_after_checkpoints=interrupt_after_checkpoints,
        interrupt_delay_s=interrupt_delay_s, timeout_s=timeout_s,
        started_at=started_wall.isoformat(), finished_at="", passed=False, reasons=[], summary="",
    )  # fmt: skip
    children: list[_Child] = []
    try:
        _drill(report, argv, checkpoint_dir, child_env, deadline, children)
    finally:
        for child in children:
            child.kill()
        report.log_tail = [line for child in children for line in child.lines][-LOG_TAIL_LINES:]
        report.total_s = round(time.monotonic() - t0, 3)
        report.finished_at = datetime.now(UTC).isoformat()
    reasons = report.reasons
    report.passed = not reasons
    if report.passed:
        r = report
        report.summary = (
            f"workload {workload}: interrupted with SIG{sig_name} at step {r.steps_at_interrupt}, "
            f"resumed from step {r.last_checkpoint_step} and checkpointed again {r.time_to_recover_s:.2f} s "
            f"after the interrupt (RTO {rto_s:g} s); {r.steps_lost} steps / {r.work_lost_s:.2f} s "
            f"of work lost (RPO {rpo_s:g} s)"
        )
    else:
        report.summary = f"workload {workload}: drill failed: " + "; ".join(reasons)
    return report


def _drill(
    report: DrillReport,
    argv: list[str],
    checkpoint_dir: Path,
    env: dict[str, str],
    deadline: float,
    children: list[_Child],
) -> None:
    """The drill's phases; appends to ``report.reasons`` and returns at the first failure."""
    w = report.workload
    reasons = report.reasons
    need = report.interrupt_after_checkpoints
    known = {e.path.name: e.identity for e in scan_checkpoints(checkpoint_dir)}

    # Phase 1: run until N new checkpoints exist.
    first = _Child(argv, env, "run-1")
    children.append(first)
    while True:
        new = _new_entries(checkpoint_dir, known)
        if len(new) >= need:
            break
        code = first.poll()
        if code is not None:
            first.drain()
            report.first_exit_code = code
            reasons.append(
                f"workload {w} exited with code {code} after writing {len(new)} of the {need} "
                f"checkpoints the drill waits for in {checkpoint_dir}; it must write step-NNNNNN "
                "checkpoints there and run long enough to be interrupted"
            )
            return
        if time.monotonic() > deadline:
            reasons.append(
                f"workload {w} wrote {len(new)} of {need} checkpoints within the drill timeout of "
                f"{report.timeout_s:g} s; it was killed"
            )
            return
        time.sleep(POLL_S)
    report.checkpoints_before_interrupt = sorted({e.step for e in new})
    if report.interrupt_delay_s is None:
        # Halfway to the next checkpoint: a failure rarely lands right after a save.
        by_step = sorted(new, key=lambda e: e.step)
        gap = by_step[-1].mtime - by_step[-2].mtime if len(by_step) >= 2 else 0.0
        report.interrupt_delay_s = round(max(gap, 0.0) / 2, 4)
    if report.interrupt_delay_s > 0:
        # Sleep in slices: the job may finish meanwhile, which is checked below.
        until = min(time.monotonic() + report.interrupt_delay_s, deadline)
        while time.monotonic() < until and first.poll() is None:
            time.sleep(POLL_S)

    # Phase 2: interrupt the whole process group.
    if first.poll() is not None:
        first.drain()
        report.first_exit_code = first.poll()
        reasons.append(
            f"workload {w} finished (exit {report.first_exit_code}) before it could be interrupted; "
            "run more steps or interrupt after fewer checkpoints"
        )
        return
    interrupt_wall = time.time()
    interrupt_at = time.monotonic()
    if report.signal == "TERM":
        # A spot-style notice: SIGTERM, then SIGKILL when the grace period runs out.
        first.signal_group(signals.SIGTERM)
        report.graceful_exit = first.wait(report.grace_s) is not None
        if not report.graceful_exit:
            first.signal_group(signals.SIGKILL)
    else:
        first.signal_group(signals.SIGKILL)
    code = first.wait(max(deadline - time.monotonic(), 1.0))
    if code is None:
        reasons.append(f"workload {w} did not exit after SIG{report.signal}/SIGKILL within the drill timeout")
        return
    exited_at = time.monotonic()
    report.interrupted = True
    report.first_exit_code = code
    report.time_to_detect_s = round(exited_at - interrupt_at, 4)
    first.drain()
    report.steps_at_interrupt = first.last_step

    last = _newest_valid(checkpoint_dir)
    if last is None:
        reasons.append(f"workload {w} left no valid checkpoint in {checkpoint_dir} after the interrupt")
        return
    report.last_checkpoint_step = last.step
    report.work_lost_s = round(max(interrupt_wall - last.mtime, 0.0), 4)
    if report.steps_at_interrupt is not None:
        report.steps_lost = max(report.steps_at_interrupt - last.step, 0)

    # Phase 3: restart and wait for the first new checkpoint.
    known = {e.path.name: e.identity for e in scan_checkpoints(checkpoint_dir)}
    second = _Child(argv, env, "run-2")
    children.append(second)
    report.time_to_restart_s = round(time.monotonic() - exited_at, 4)
    first_new: CheckpointEntry | None = None
    while first_new is None:
        new = _new_entries(checkpoint_dir, known)
        if new:
            first_new = min(new, key=lambda e: e.step)
            report.time_to_recover_s = round(time.monotonic() - interrupt_at, 4)
            break
        if second.poll() is not None:
            second.drain()
            report.final_exit_code = second.poll()
            reasons.append(
                f"workload {w} exited with code {report.final_exit_code} after the restart without "
                f"writing a new checkpoint (last one before the interrupt: step {last.step})"
            )
            return
        if time.monotonic() > deadline:
            reasons.append(
                f"workload {w} wrote no new checkpoint within the drill timeout of {report.timeout_s:g} s "
                "after the restart; it was killed"
            )
            return
        time.sleep(POLL_S)
    report.first_checkpoint_after_restart = first_new.step

    # Phase 4: let it finish.
    code = second.wait(deadline - time.monotonic())
    if code is None:
        reasons.append(
            f"workload {w} did not finish within the drill timeout of {report.timeout_s:g} s "
            "after the restart; it was killed"
        )
        second.kill()
    second.drain()
    report.final_exit_code = code
    report.final_step = second.last_step
    if second.first_step is not None and second.first_step_at is not None:
        report.first_step_after_restart = second.first_step
        report.time_to_first_progress_s = round(second.first_step_at - second.started, 4)

    # Verdicts.
    resumed_ckpt = first_new.step > last.step
    resumed_log = second.first_step is None or second.first_step > last.step
    report.resumed = resumed_ckpt and resumed_log
    if not report.resumed:
        reasons.append(
            f"workload {w} did not resume from its checkpoint at step {last.step}: after the restart "
            f"it reported step {second.first_step} first and wrote step {first_new.step} as its first "
            "checkpoint (it started over)"
        )
    if code is not None and code != 0:
        reasons.append(f"workload {w} exited with code {code} after the restart")
    report.completed = code == 0
    if report.time_to_recover_s is not None and report.time_to_recover_s > report.rto_s:
        reasons.append(
            f"workload {w} took {report.time_to_recover_s:.2f} s from the interrupt to its first new "
            f"checkpoint, over the RTO of {report.rto_s:g} s"
        )
    if report.work_lost_s is not None and report.work_lost_s > report.rpo_s:
        reasons.append(
            f"workload {w} lost {report.work_lost_s:.2f} s of work (its last checkpoint was that old at the "
            f"interrupt), over the RPO of {report.rpo_s:g} s"
        )
