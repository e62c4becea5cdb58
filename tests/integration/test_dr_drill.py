"""DR drill on real files and a real router: restore from the cloud copy, verify, fail over, judge RTO/RPO.

The cloud copy is a local folder (the cloud site of a temp wave spec); the router is the demo
router process on a free loopback port (its backends need not run: only its admin API is used).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from migration_waves.canary.router import LocalRouter
from migration_waves.cli import main as cli_main
from migration_waves.resilience.checkpoints import write_checkpoint
from migration_waves.resilience.dr import local_resolver, run_dr_drill
from migration_waves.spec.loader import load_wave

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def router_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    state = tmp_path_factory.mktemp("router") / "weights.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "migration_waves.demo.router", "--port", str(port), "--baseline",
         f"http://127.0.0.1:{_free_port()}", "--candidate", f"http://127.0.0.1:{_free_port()}",
         "--state-file", str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "demo router did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _wave(tmp: Path, router: str, rpo_minutes: float = 15, rto_minutes: float = 10) -> Path:
    """A copy of the pilot spec whose sites, state and router point into ``tmp`` / the test router."""
    raw: dict[str, Any] = yaml.safe_load((ROOT / "include" / "waves" / "pilot.yaml").read_text())
    raw["state"] = str(tmp / "state")
    raw["golden_images"] = str(ROOT / "include" / "golden_images")
    raw["budget"]["pricing"] = str(ROOT / "include" / "pricing" / "default.yaml")
    raw["sites"]["onprem"]["storage"] = str(tmp / "onprem")
    raw["sites"]["cloud"]["storage"] = str(tmp / "cloud")
    raw["targets"].update(rpo_minutes=rpo_minutes, rto_minutes=rto_minutes)
    for wl in raw["workloads"]:
        if wl["kind"] == "inference":
            wl["router"]["admin"] = router
            wl["payloads"] = str(ROOT / "include" / "demo" / "payloads.jsonl")
    path = tmp / "wave.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cloud_copy(tmp: Path, *, features_age_s: float = 60) -> None:
    cloud = tmp / "cloud"
    old = time.time() - 30 * 86400
    for i in range(3):
        f = cloud / "corpus" / f"part-{i}.bin"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(os.urandom(4096 + i))
        os.utime(f, (old, old))  # immutable corpus: a month old, not judged against the RPO
    model = cloud / "models" / "all-MiniLM-L6-v2" / "config.json"
    model.parent.mkdir(parents=True)
    model.write_text('{"dim": 384}')
    os.utime(model, (old, old))
    feat = cloud / "features" / "2026-01-01.parquet"
    feat.parent.mkdir(parents=True)
    feat.write_bytes(os.urandom(2048))
    when = time.time() - features_age_s
    os.utime(feat, (when, when))
    for step in (5, 10):
        write_checkpoint(cloud / "ckpt", step, {"state.npz": os.urandom(1000 + step)}, meta={"step": step})
    logs = cloud / "logs" / "serving-0001.jsonl"
    logs.parent.mkdir(parents=True)
    logs.write_text('{"ms": 12}\n')


def test_dr_drill_restores_verifies_fails_over_and_judges(tmp_path: Path, router_url: str) -> None:
    _cloud_copy(tmp_path)
    router = LocalRouter(router_url)
    router.set_candidate_weight(100)  # migrated: all traffic on the cloud side
    spec = load_wave(_wave(tmp_path, router_url))
    report = run_dr_drill(spec, tmp_path / "scratch", resolve=local_resolver,
                          router_for=lambda wl: LocalRouter(str(wl.router.admin)))  # fmt: skip
    assert report.passed, report.reasons
    by = {d.dataset: d for d in report.datasets}
    assert set(by) == {"digits-corpus", "minilm-model", "features", "checkpoints", "serving-logs"}
    # Real bytes restored and read back.
    for i in range(3):
        rel = Path("corpus") / f"part-{i}.bin"
        assert (tmp_path / "scratch" / "digits-corpus" / rel.name).read_bytes() == (
            tmp_path / "cloud" / rel
        ).read_bytes()
    assert by["digits-corpus"].files == by["digits-corpus"].files_verified == 3
    # Checkpoints: only the newest one comes back, and its own manifest verifies.
    assert by["checkpoints"].selected == "step-000010"
    assert sorted(p.name for p in (tmp_path / "scratch" / "checkpoints").iterdir()) == ["step-000010"]
    assert by["checkpoints"].files == 2  # state.npz + manifest.json
    # Data age: the features copy is ~60 s old (judged), the month-old corpus is reported only.
    assert 55 < by["features"].data_age_s < 600 and by["features"].age_judged
    assert by["digits-corpus"].data_age_s > 29 * 86400 and not by["digits-corpus"].age_judged
    assert report.worst_data_age_s == max(d.data_age_s for d in by.values() if d.age_judged)
    # Failover to the restored on-prem side, then back to the split found.
    (fo,) = report.failovers
    assert (fo.workload, fo.before_pct, fo.after_pct, fo.failed_back_to) == ("digits-classifier", 100, 0, 100)
    assert router.get_candidate_weight() == 100
    assert 0 < report.time_to_restore_s <= report.time_to_recover_s < report.rto_s
    assert "| checkpoints | checkpoint | step-000010 |" in report.table
    assert "| route digits-classifier | failover | cloud 100% -> 0% |" in report.table
    json.dumps(report.model_dump(mode="json"))


def test_dr_drill_fails_stale_copy_torn_checkpoint_and_missed_rto(tmp_path: Path, router_url: str) -> None:
    _cloud_copy(tmp_path, features_age_s=3 * 3600)
    # The newest cloud checkpoint's payload no longer matches its manifest.
    (tmp_path / "cloud" / "ckpt" / "step-000010" / "state.npz").write_bytes(b"torn")
    spec = load_wave(_wave(tmp_path, router_url, rpo_minutes=15, rto_minutes=0.0001))
    report = run_dr_drill(spec, tmp_path / "scratch", resolve=local_resolver, failover=False)
    assert not report.passed
    text = "\n".join(report.reasons)
    assert "dataset features: the cloud copy's newest data is" in text and "over the RPO of 900 s" in text
    assert "dataset checkpoints: restored checkpoint is not usable: step-000010/state.npz has 4 bytes" in text
    assert "over the RTO of 0.006 s" in text
    assert report.notes == ["route failover of 1 inference workload(s) skipped by request"]
    assert not any("no router given" in r for r in report.reasons)


def test_dr_drill_without_router_is_not_a_pass(tmp_path: Path, router_url: str) -> None:
    _cloud_copy(tmp_path)
    spec = load_wave(_wave(tmp_path, router_url))
    report = run_dr_drill(spec, tmp_path / "scratch", resolve=local_resolver, datasets=["features"])
    assert [d.dataset for d in report.datasets] == ["features"]
    assert report.reasons == [
        "wave pilot: 1 inference workload(s) but no router given; the route failover was not exercised"
    ]
    with pytest.raises(ValueError, match=r"wave pilot: no dataset named nope; choose from digits-corpus"):
        run_dr_drill(spec, tmp_path / "s2", resolve=local_resolver, datasets=["nope"])


def test_cli_drill_dr_exit_codes(tmp_path: Path, router_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _cloud_copy(tmp_path)
    LocalRouter(router_url).set_candidate_weight(25)
    wave = _wave(tmp_path, router_url)
    assert cli_main(["drill", "dr", "--spec", str(wave), "--scratch", str(tmp_path / "s"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["failovers"][0]["before_pct"] == 25
    assert LocalRouter(router_url).get_candidate_weight() == 25
    (tmp_path / "cloud" / "features" / "2026-01-01.parquet").unlink()
    (tmp_path / "cloud" / "features").rmdir()
    assert (
        cli_main(["drill", "dr", "--spec", str(wave), "--scratch", str(tmp_path / "s3"), "--no-failover"])
        == 1
    )
    assert "restore from" in capsys.readouterr().out
