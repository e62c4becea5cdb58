"""Fault: the CLI killed with SIGKILL at >= 10 random points of a seed, then re-run to completion.

Real subprocesses on a real tree. After every kill the next run must resume: every file that was
complete at the target before a run keeps its inode through that run (the engine places a copy
with os.replace, so a re-sent file gets a new inode), and at the end nothing is missing or corrupt.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

KILLS = 12


def _corpus(root: Path, rng: random.Random) -> dict[str, str]:
    digests = {}
    for i in range(360):
        rel = f"shard-{i % 7}/part {i:04d}.bin"
        data = rng.randbytes(rng.randint(4 * 1024, 64 * 1024))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        digests[rel] = hashlib.sha256(data).hexdigest()
    for i in range(5):
        rel = f"weights/layer-{i}.bin"
        data = rng.randbytes(3 * 2**20)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        digests[rel] = hashlib.sha256(data).hexdigest()
    return digests


def _complete(dst: Path, digests: dict[str, str]) -> dict[str, int]:
    """Target files holding exactly the source bytes, with their inode."""
    out = {}
    for rel, digest in digests.items():
        path = dst / rel
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
                out[rel] = path.stat().st_ino
        except FileNotFoundError:
            continue
    return out


def test_kill_9_at_random_points_then_rerun_resends_nothing_and_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20240603)
    src, dst, state = tmp_path / "src", tmp_path / "dst", tmp_path / "state"
    digests = _corpus(src, rng)
    total = sum((src / rel).stat().st_size for rel in digests)
    # the bandwidth limit stretches one full seed to ~20 s: each run is killed within ~1.3 s, so at
    # most ~1.3 MB moves per run and at least 10 kills land mid-seed even on a fast, quiet machine
    cmd = [
        sys.executable, "-m", "migration_waves.cli", "copy", str(src), str(dst),
        "--state", str(state), "--transfers", "4", "--bwlimit", "1M", "--checksum", "sha256", "--json",
    ]  # fmt: skip
    kills, delays = 0, []
    progress: list[int] = []
    while kills < KILLS:
        before = _complete(dst, digests)
        if len(before) == len(digests):
            break
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        delay = rng.uniform(0.3, 1.3)  # the interpreter takes ~0.4 s to start: kill after that
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
            delays.append(round(delay, 2))
        proc.communicate(timeout=30)
        after = _complete(dst, digests)
        resent = sorted(rel for rel, ino in before.items() if after.get(rel) != ino)
        assert resent == [], f"complete files sent again after kill {kills}: {resent[:5]}"
        progress.append(len(after))
    assert kills >= 10, f"only {kills} kills landed before the seed finished (delays {delays})"
    assert progress[-1] > 0  # the killed runs did move data: they were killed mid-seed

    before = _complete(dst, digests)
    final = subprocess.run(cmd, capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    summary = json.loads(final.stdout)
    after = _complete(dst, digests)
    assert sorted(after) == sorted(digests), "missing or corrupt files after the resume"
    assert [rel for rel, ino in before.items() if after[rel] != ino] == []
    # the final run sent exactly what was still missing, nothing more
    assert summary["files_copied"] == len(digests) - len(before)
    assert summary["bytes_copied"] == sum((src / r).stat().st_size for r in digests if r not in before)
    assert summary["bytes_copied"] < total and summary["passed"]
    assert not [p for p in dst.rglob("*") if ".mwpart-" in p.name], "temp files of killed runs left behind"
    assert not list((state / "pairs").glob("*/journal/*.jsonl")), "journals not compacted after verify"
    again = subprocess.run(cmd, capture_output=True, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["bytes_copied"] == 0
    verify = subprocess.run(
        [*cmd[:3], "verify", str(src), str(dst), "--json"], capture_output=True, timeout=120
    )
    assert verify.returncode == 0 and json.loads(verify.stdout)["files_verified"] == len(digests)
