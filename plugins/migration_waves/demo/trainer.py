"""Demo training workload: a small MLP on the digits dataset, numpy minibatch SGD, resumable.

``python -m migration_waves.demo.trainer --steps N --checkpoint-every K --checkpoint-dir DIR
[--seed S] [--step-sleep SECONDS]``

* Deterministic: the initial weights and every epoch's data order come from one numpy
  ``Generator(PCG64)`` seeded with ``--seed``.
* Every K steps (and at the last step) it writes ``DIR/step-NNNNNN/`` following the convention of
  ``migration_waves.resilience.checkpoints``: ``state.npz`` (weights, RNG state, data order and
  position, config) plus ``manifest.json`` with its sha256, written under a temporary name and
  renamed, so a kill -9 never leaves a complete-looking torn checkpoint.
* On start it resumes from the newest valid checkpoint; a torn or digest-mismatching one is
  skipped with a ``skip checkpoint ...`` line. A resumed run ends with bit-identical weights to an
  uninterrupted run with the same seed.
* Spot-style notice: on SIGTERM it finishes the step in flight, writes a checkpoint of that step
  (``preempted step=N path=...``) and exits with 143 (128 + SIGTERM), so a preemption with a grace
  period loses no steps; SIGKILL loses the steps since the last periodic checkpoint.
* stdout: one ``step=N loss=L epoch=E`` line per step, ``resume from=step-NNNNNN at_step=N``,
  ``checkpoint step=N path=...``, and ``done steps=N ...`` at the end, when ``DIR/final.npz`` and
  ``DIR/final.json`` are written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from migration_waves.demo.data import digits_split, load_digits_arrays
from migration_waves.resilience.checkpoints import (
    scan_checkpoints,
    verify_checkpoint,
    write_checkpoint,
    write_file_atomic,
)

STATE_FILE = "state.npz"
PARAM_NAMES = ("w1", "b1", "w2", "b2")


class TrainConfig(BaseModel):
    """Arguments of one training run."""

    steps: int = Field(gt=0)
    checkpoint_every: int = Field(gt=0)
    checkpoint_dir: Path
    seed: int = 0
    step_sleep: float = Field(default=0.05, ge=0)
    batch_size: int = Field(default=32, gt=0)
    learning_rate: float = Field(default=0.1, gt=0)
    hidden: int = Field(default=32, gt=0)
    resume: bool = True

    def fingerprint(self) -> dict[str, float | int]:
        """The settings a checkpoint must share with the run resuming from it."""
        return {"seed": self.seed, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "hidden": self.hidden}  # fmt: skip


class TrainResult(BaseModel):
    """What a run did."""

    steps: int
    started_at_step: int
    resumed_from: str | None
    skipped_checkpoints: list[str]
    checkpoints_written: list[str]
    final_path: str
    final_sha256: str
    loss: float
    test_accuracy: float


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint of the last completed step was written."""

    def __init__(self, step: int, path: str) -> None:
        super().__init__(f"preempted at step {step}; checkpoint {path}")
        self.step = step
        self.path = path


class CheckpointMismatchError(ValueError):
    """A checkpoint in the folder was written by a run with different settings."""


class _State:
    """Everything a step depends on; checkpointed whole."""

    def __init__(self, params: dict[str, np.ndarray], rng: np.random.Generator, order: np.ndarray) -> None:
        self.params = params
        self.rng = rng
        self.order = order  # this epoch's data order
        self.cursor = 0  # position in ``order``
        self.epoch = 0
        self.step = 0
        self.loss = float("nan")


def _init_state(config: TrainConfig, n_train: int, n_in: int, n_out: int) -> _State:
    rng = np.random.default_rng(config.seed)
    params = {
        "w1": rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_in, config.hidden)),
        "b1": np.zeros(config.hidden),
        "w2": rng.normal(0.0, 1.0 / np.sqrt(config.hidden), size=(config.hidden, n_out)),
        "b2": np.zeros(n_out),
    }
    return _State(params, rng, rng.permutation(n_train))


def _state_bytes(state: _State, config: TrainConfig) -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        **state.params,
        order=state.order,
        cursor=np.int64(state.cursor),
        epoch=np.int64(state.epoch),
        step=np.int64(state.step),
        loss=np.float64(state.loss),
        # JSON text in a unicode array: loadable without pickle.
        rng_state=np.array(json.dumps(state.rng.bit_generator.state)),
        config=np.array(json.dumps(config.fingerprint(), sort_keys=True)),
    )
    return buffer.getvalue()


def _load_state(path: Path, config: TrainConfig) -> _State:
    with np.load(path / STATE_FILE, allow_pickle=False) as npz:
        saved = json.loads(str(npz["config"]))
        if saved != config.fingerprint():
            raise CheckpointMismatchError(
                f"checkpoint {path} was written with {saved}, this run uses {config.fingerprint()}; "
                "use a fresh --checkpoint-dir or the same settings"
            )
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(str(npz["rng_state"]))
        state = _State({name: npz[name].copy() for name in PARAM_NAMES}, rng, npz["order"].copy())
        state.cursor = int(npz["cursor"])
        state.epoch = int(npz["epoch"])
        state.step = int(npz["step"])
        state.loss = float(npz["loss"])
    return state


def _forward(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hidden = np.tanh(x @ params["w1"] + params["b1"])
    logits = hidden @ params["w2"] + params["b2"]
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return hidden, probs


def _sgd_step(state: _State, x: np.ndarray, y: np.ndarray, lr: float) -> float:
    params = state.params
    hidden, probs = _forward(params, x)
    n = len(y)
    loss = float(-np.log(probs[np.arange(n), y] + 1e-12).mean())
    d_logits = probs.copy()
    d_logits[np.arange(n), y] -= 1.0
    d_logits /= n
    d_hidden = (d_logits @ params["w2"].T) * (1.0 - hidden**2)
    grads = {
        "w2": hidden.T @ d_logits,
        "b2": d_logits.sum(axis=0),
        "w1": x.T @ d_hidden,
        "b1": d_hidden.sum(axis=0),
    }
    for name in PARAM_NAMES:
        params[name] -= lr * grads[name]
    return loss


def _resume(config: TrainConfig, log: Callable[[str], None]) -> tuple[_State | None, str | None, list[str]]:
    skipped: list[str] = []
    for entry in reversed(scan_checkpoints(config.checkpoint_dir)):
        problem = verify_checkpoint(entry.path)
        if problem is None and not entry.path.is_dir():
            problem = f"{entry.path.name} is not a folder checkpoint of this trainer"
        if problem is not None:
            log(f"skip checkpoint {entry.path.name}: {problem}")
            skipped.append(entry.path.name)
            continue
        state = _load_state(entry.path, config)
        log(f"resume from={entry.path.name} at_step={state.step}")
        return state, entry.path.name, skipped
    return None, None, skipped


def train(
    config: TrainConfig, *, log: Callable[[str], None] = print, stop: Callable[[], bool] | None = None
) -> TrainResult:
    """Run (or resume) training to ``config.steps``; checkpoints and final weights go to the folder.

    ``stop`` is polled after each step; when it returns True (a SIGTERM notice), the current step is
    checkpointed and ``Preempted`` is raised.
    """
    pixels, labels = load_digits_arrays()
    train_idx, test_idx = digits_split(len(labels))
    x_train, y_train = pixels[train_idx] / 16.0, labels[train_idx]
    n_classes = int(labels.max()) + 1

    state: _State | None = None
    resumed_from: str | None = None
    skipped: list[str] = []
    if config.resume:
        state, resumed_from, skipped = _resume(config, log)
    if state is None:
        state = _init_state(config, len(y_train), x_train.shape[1], n_classes)
    if state.step > config.steps:
        raise ValueError(
            f"checkpoint {resumed_from} is at step {state.step}, beyond --steps {config.steps}; "
            "use a fresh --checkpoint-dir or more steps"
        )
    started_at = state.step
    written: list[str] = []
    while state.step < config.steps:
        if state.cursor + config.batch_size > len(state.order):
            # Next epoch: a fresh order from the same generator (drop the short tail batch).
            state.epoch += 1
            state.order = state.rng.permutation(len(y_train))
            state.cursor = 0
        batch = state.order[state.cursor : state.cursor + config.batch_size]
        state.cursor += config.batch_size
        state.loss = _sgd_step(state, x_train[batch], y_train[batch], config.learning_rate)
        state.step += 1
        log(f"step={state.step} loss={state.loss:.6f} epoch={state.epoch}")
        if state.step % config.checkpoint_every == 0 or state.step == config.steps:
            path = write_checkpoint(
                config.checkpoint_dir,
                state.step,
                {STATE_FILE: _state_bytes(state, config)},
                meta={"loss": state.loss, "epoch": state.epoch, "trainer": "migration_waves.demo.trainer"},
            )
            written.append(path.name)
            log(f"checkpoint step={state.step} path={path}")
        if stop is not None and stop() and state.step < config.steps:
            last = f"step-{state.step:06d}"
            if not written or written[-1] != last:
                write_checkpoint(
                    config.checkpoint_dir,
                    state.step,
                    {STATE_FILE: _state_bytes(state, config)},
                    meta={"loss": state.loss, "epoch": state.epoch, "trainer": "migration_waves.demo.trainer",
                          "preempted": True},
                )  # fmt: skip
            path = config.checkpoint_dir / last
            log(f"preempted step={state.step} path={path}")
            raise Preempted(state.step, str(path))
        if config.step_sleep:
            time.sleep(config.step_sleep)

    _, probs = _forward(state.params, pixels[test_idx] / 16.0)
    accuracy = float((probs.argmax(axis=1) == labels[test_idx]).mean())
    buffer = io.BytesIO()
    np.savez(buffer, **state.params)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    final_path = config.checkpoint_dir / "final.npz"
    write_file_atomic(final_path, payload)
    summary = {"steps": state.step, "loss": state.loss, "test_accuracy": accuracy, "sha256": digest,
               "seed": config.seed}  # fmt: skip
    write_file_atomic(config.checkpoint_dir / "final.json", json.dumps(summary, indent=1).encode())
    log(f"done steps={state.step} loss={state.loss:.6f} test_accuracy={accuracy:.4f} sha256={digest}")
    return TrainResult(
        steps=state.step,
        started_at_step=started_at,
        resumed_from=resumed_from,
        skipped_checkpoints=skipped,
        checkpoints_written=written,
        final_path=str(final_path),
        final_sha256=digest,
        loss=state.loss,
        test_accuracy=accuracy,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit 0 when the run reached ``--steps``."""
    parser = argparse.ArgumentParser(
        prog="python -m migration_waves.demo.trainer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, required=True)
    parser.add_argument("--checkpoint-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--step-sleep", type=float, default=0.05, help="seconds to sleep per step (drill pacing)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="ignore existing checkpoints and start from step 0 (a misconfigured job; drills must catch it)",
    )
    args = parser.parse_args(argv)
    config = TrainConfig(
        steps=args.steps,
        checkpoint_every=args.checkpoint_every,
        checkpoint_dir=args.checkpoint_dir,
        seed=args.seed,
        step_sleep=args.step_sleep,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        hidden=args.hidden,
        resume=not args.no_resume,
    )

    def log(line: str) -> None:
        print(line, flush=True)

    # A preemption notice (spot/preemptible VMs, Kubernetes eviction) arrives as SIGTERM with a
    # grace period: note it, and let the loop checkpoint at the end of the step in flight.
    notice: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: notice.append(signum))
    try:
        train(config, log=log, stop=lambda: bool(notice))
    except Preempted:
        return 128 + signal.SIGTERM
    except (CheckpointMismatchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
