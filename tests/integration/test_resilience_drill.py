"""Forced-interruption drills against real subprocesses: the demo trainer, and jobs that misbehave."""

from __future__ import annotations

import json
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


def test_spot_notice_sigterm_with_grace_checkpoints_and_loses_no_steps(tmp_path: Path) -> None:
    """SIGTERM with a grace period (a spot/preemptible VM notice): the trainer checkpoints the step in
    flight and exits 143, so the restart resumes exactly where the notice arrived."""
    ckpt = tmp_path / "ckpt"
    report = run_interruption_drill(
        _trainer(), ckpt, workload="digits-trainer", rto_s=60, rpo_s=60, signal="TERM", grace_s=10,
        interrupt_delay_s=0.07, timeout_s=120,
    )  # fmt: skip
    assert report.passed, report.reasons
    assert report.graceful_exit is True and report.first_exit_code == 143
    assert report.steps_lost == 0
    # The notice checkpoint is off the periodic grid (every 5 steps): it was written on SIGTERM.
    assert report.last_checkpoint_step == report.steps_at_interrupt
    assert report.last_checkpoint_step % EVERY != 0
    assert report.first_step_after_restart == report.last_checkpoint_step + 1
    assert report.work_lost_s == 0
    manifest = json.loads((ckpt / f"step-{report.last_checkpoint_step:06d}" / "manifest.json").read_text())
    assert manifest["meta"]["preempted"] is True
    clean = tmp_path / "clean"
    train(
        TrainConfig(steps=STEPS, checkpoint_every=EVERY, checkpoint_dir=clean, seed=3, step_sleep=0),
        log=lambda _: None,
    )
    with np.load(ckpt / "final.npz") as got, np.load(clean / "final.npz") as want:
        for name in want.files:
            assert np.array_equal(got[name], want[name]), name


def test_kill_after_an_unheeded_notice_is_not_graceful(tmp_path: Path) -> None:
    # A job that ignores SIGTERM is killed when the grace period ends, and says so in the evidence.
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "sys.argv = ['trainer'] + sys.argv[1:]\n"
        "from migration_waves.demo.trainer import TrainConfig, train\n"
        "from pathlib import Path\n"
        f"train(TrainConfig(steps={STEPS}, checkpoint_every={EVERY}, checkpoint_dir=Path(sys.argv[1]),"
        f" seed=3, step_sleep={SLEEP}), log=lambda s: print(s, flush=True))\n"
    )
    report = run_interruption_drill(
        [sys.executable, "-c", script, "{checkpoint_dir}"], tmp_path, workload="deaf-trainer", rto_s=60,
        rpo_s=60, signal="TERM", grace_s=0.3, interrupt_delay_s=0.07, timeout_s=120,
    )  # fmt: skip
    assert report.graceful_exit is False and report.first_exit_code == -9
    assert report.passed, report.reasons  # periodic checkpoints still let it resume
    assert report.last_checkpoint_step % EVERY == 0  # only periodic checkpoints: the notice went unheeded


def test_cli_drill_interrupt_term_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from migration_waves.cli import main

    argv = ["drill", "interrupt", "--checkpoint-dir", f"file://{tmp_path}/first", "--workload", "trainer",
            "--signal", "TERM", "--grace", "10", "--rto", "60", "--rpo", "60", "--delay", "0.05", "--json",
            "--", *_trainer()]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["steps_lost"] == 0 and report["first_exit_code"] == 143
    # A fresh folder: a missed RTO is the only failure.
    argv[3] = str(tmp_path / "second")
    assert main([*argv[:12], "--rto", "0.001", "--json", "--", *_trainer()]) == 1
    again = json.loads(capsys.readouterr().out)
    assert again["resumed"] is True and again["reasons"][0].endswith("over the RTO of 0.001 s")
