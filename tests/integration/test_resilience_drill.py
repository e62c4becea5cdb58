"""Forced-interruption drills against real subprocesses: the demo trainer, and jobs that misbehave."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from migration_waves.demo.trainer import TrainConfig, train
from migration_waves.resilience.drill import run_interruption_drill

pytestmark = pytest.mark.integration

STEPS = 40
EVERY = 5
SLEEP = 0.03


def _trainer(*extra: str) -> list[str]:
    return ["python", "-m", "migration_waves.demo.trainer", "--steps", str(STEPS),
            "--checkpoint-every", str(EVERY), "--checkpoint-dir", "{checkpoint_dir}",
            "--step-sleep", str(SLEEP), "--seed", "3", *extra]  # fmt: skip


def test_drill_on_demo_trainer_passes_and_resumed_weights_match(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    report = run_interruption_drill(
        _trainer(), ckpt, workload="digits-trainer", rto_s=60, rpo_s=60, interrupt_delay_s=0.1, timeout_s=120
    )
    assert report.passed, report.reasons
    assert report.reasons == []
    assert report.interrupted and report.first_exit_code == -9
    assert report.checkpoints_before_interrupt[:2] == [5, 10]
    assert report.resumed and report.completed and report.final_exit_code == 0 and report.final_step == STEPS
    # The restarted process continued right after the checkpoint it resumed from.
    assert report.first_step_after_restart == report.last_checkpoint_step + 1
    assert report.first_checkpoint_after_restart > report.last_checkpoint_step
    assert report.steps_lost == report.steps_at_interrupt - report.last_checkpoint_step
    assert 0 < report.work_lost_s < 60
    assert 0 < report.time_to_detect_s < report.time_to_recover_s < report.total_s
    assert "digits-trainer" in report.summary and "RTO 60 s" in report.summary
    # A job killed with SIGKILL mid-run ends with the weights of a run that was never interrupted.
    clean = tmp_path / "clean"
    train(
        TrainConfig(steps=STEPS, checkpoint_every=EVERY, checkpoint_dir=clean, seed=3, step_sleep=0),
        log=lambda _: None,
    )
    with np.load(ckpt / "final.npz") as got, np.load(clean / "final.npz") as want:
        for name in want.files:
            assert np.array_equal(got[name], want[name]), name
    report.model_dump_json()  # serialisable evidence


def test_drill_fails_a_job_that_starts_over(tmp_path: Path) -> None:
    report = run_interruption_drill(
        _trainer("--no-resume"), tmp_path, workload="digits-trainer", rto_s=60, rpo_s=60, timeout_s=120,
        signal="TERM", grace_s=0.2,
    )  # fmt: skip
    assert not report.passed
    assert report.resumed is False
    assert report.first_checkpoint_after_restart == EVERY
    assert any(
        r.startswith(
            "workload digits-trainer did not resume from its checkpoint at step "
            f"{report.last_checkpoint_step}"
        )
        for r in report.reasons
    ), report.reasons


def test_drill_fails_when_recovery_exceeds_rto(tmp_path: Path) -> None:
    report = run_interruption_drill(
        _trainer(), tmp_path, workload="digits-trainer", rto_s=0.05, rpo_s=60, timeout_s=120
    )
    assert not report.passed
    assert report.resumed is True  # the job behaved; only the objective was missed
    # Default: interrupted halfway between checkpoints (5 steps of at least 30 ms apart).
    assert report.interrupt_delay_s >= EVERY * SLEEP / 2 * 0.9
    assert report.time_to_recover_s > 0.05
    assert report.reasons == [
        f"workload digits-trainer took {report.time_to_recover_s:.2f} s from the interrupt to its first new "
        "checkpoint, over the RTO of 0.05 s"
    ]


def test_drill_fails_a_job_that_exits_nonzero_without_checkpoints(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('step=1', flush=True); sys.exit(3)"]
    report = run_interruption_drill(
        command, tmp_path, workload="broken-trainer", rto_s=60, rpo_s=60, timeout_s=30
    )
    assert not report.passed and not report.interrupted
    assert report.first_exit_code == 3
    assert report.reasons[0].startswith("workload broken-trainer exited with code 3 after writing 0 of the 2")
    assert "[run-1] step=1" in report.log_tail


def test_drill_never_hangs_and_kills_the_job_on_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)",
    ]
    started = time.monotonic()
    report = run_interruption_drill(
        command, tmp_path / "ckpt", workload="stuck-trainer", rto_s=60, rpo_s=60, timeout_s=1.5
    )
    assert time.monotonic() - started < 10
    assert not report.passed
    assert report.reasons == [
        "workload stuck-trainer wrote 0 of 2 checkpoints within the drill timeout of 1.5 s; it was killed"
    ]
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
