"""Demo trainer: deterministic, resumable, and skips checkpoints that are torn or corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from migration_waves.demo.trainer import CheckpointMismatchError, TrainConfig, train
from migration_waves.resilience.checkpoints import scan_checkpoints, verify_checkpoint

pytestmark = pytest.mark.unit

STEPS = 30
EVERY = 5


def _config(folder: Path, seed: int = 7) -> TrainConfig:
    return TrainConfig(steps=STEPS, checkpoint_every=EVERY, checkpoint_dir=folder, seed=seed, step_sleep=0.0)


def _weights(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "final.npz", allow_pickle=False) as npz:
        return {name: npz[name].copy() for name in npz.files}


def _cut_back_to(folder: Path, step: int) -> None:
    """Leave the folder as a job killed just after its checkpoint at ``step`` would."""
    for entry in scan_checkpoints(folder):
        if entry.step > step:
            shutil.rmtree(entry.path)
    (folder / "final.npz").unlink()
    (folder / "final.json").unlink()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = train(_config(folder), log=lambda _: None)
    assert result.started_at_step == 0 and result.steps == STEPS
    assert [e.step for e in scan_checkpoints(folder)] == [5, 10, 15, 20, 25, 30]
    assert all(verify_checkpoint(e.path) is None for e in scan_checkpoints(folder))
    return _weights(folder)


def test_training_learns_and_seed_matters(tmp_path: Path, uninterrupted: dict[str, np.ndarray]) -> None:
    result = train(_config(tmp_path, seed=8), log=lambda _: None)
    other = _weights(tmp_path)
    # Another seed gives other weights, so equality in the resume tests below means something.
    assert not np.array_equal(other["w1"], uninterrupted["w1"])
    assert result.test_accuracy > 0.3  # 30 steps of SGD are well above chance (0.1)


def test_resumed_run_is_bit_identical(tmp_path: Path, uninterrupted: dict[str, np.ndarray]) -> None:
    first = train(_config(tmp_path), log=lambda _: None)
    _cut_back_to(tmp_path, 10)
    lines: list[str] = []
    result = train(_config(tmp_path), log=lines.append)
    assert result.resumed_from == "step-000010"
    assert result.started_at_step == 10
    assert lines[0] == "resume from=step-000010 at_step=10"
    assert lines[1].startswith("step=11 ")
    resumed = _weights(tmp_path)
    assert resumed.keys() == uninterrupted.keys()
    for name, value in uninterrupted.items():
        assert np.array_equal(resumed[name], value), name
    assert result.final_sha256 == first.final_sha256


def test_torn_and_corrupt_newest_checkpoints_are_skipped(
    tmp_path: Path, uninterrupted: dict[str, np.ndarray]
) -> None:
    train(_config(tmp_path), log=lambda _: None)
    _cut_back_to(tmp_path, 15)
    # step-000015: same size, one byte flipped -> digest mismatch.
    state = tmp_path / "step-000015" / "state.npz"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    # step-000020: a torn copy (payload without manifest), newer than everything else.
    torn = tmp_path / "step-000020"
    torn.mkdir()
    (torn / "state.npz").write_bytes(b"partial")
    lines: list[str] = []
    result = train(_config(tmp_path), log=lines.append)
    assert lines[0].startswith("skip checkpoint step-000020: step-000020 has no manifest.json")
    assert lines[1].startswith("skip checkpoint step-000015: step-000015/state.npz sha256")
    assert lines[2] == "resume from=step-000010 at_step=10"
    assert result.skipped_checkpoints == ["step-000020", "step-000015"]
    resumed = _weights(tmp_path)
    for name, value in uninterrupted.items():
        assert np.array_equal(resumed[name], value), name
    # The bad checkpoints were rewritten by the resumed run and are valid now.
    assert verify_checkpoint(tmp_path / "step-000015") is None
    assert verify_checkpoint(tmp_path / "step-000020") is None


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    train(
        TrainConfig(steps=10, checkpoint_every=5, checkpoint_dir=tmp_path, seed=1, step_sleep=0.0),
        log=lambda _: None,
    )
    with pytest.raises(CheckpointMismatchError, match=r"step-000010 was written with .*'seed': 1"):
        train(
            TrainConfig(steps=20, checkpoint_every=5, checkpoint_dir=tmp_path, seed=2, step_sleep=0.0),
            log=lambda _: None,
        )
