"""End to end: the shipped pilot wave under dag.test() on the real demo data and services.

The spec is include/waves/pilot.yaml rewritten only where a test must differ from a user's
checkout: its stores live in a temporary folder and its services listen on free ports.
Nothing is mocked: real files, real HTTP services, a real trainer killed with SIGKILL, Great
Expectations, and Airflow's own dag.test() on a migrated metadata DB.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def wave_home(
    tmp_path_factory: pytest.TempPathFactory, project_root: Path, airflow_db: Path
) -> Iterator[Path]:
    """Spec copies in a folder of their own, pointed at temporary stores and free ports."""
    root = tmp_path_factory.mktemp("wave")
    specs = root / "specs"
    specs.mkdir()
    include = project_root / "include"
    ports = [_free_port() for _ in range(3)]
    for name in ("pilot", "early-adopters"):
        spec = yaml.safe_load((include / "waves" / f"{name}.yaml").read_text())
        spec["state"] = str(root / "state")
        spec["golden_images"] = str(include / "golden_images")
        spec["budget"]["pricing"] = str(include / "pricing" / "default.yaml")
        spec["sites"]["onprem"]["storage"] = str(root / "demo" / "onprem")
        spec["sites"]["cloud"]["storage"] = str(root / "demo" / "cloud")
        for wl in spec.get("workloads", []):
            if wl["kind"] == "inference":
                wl["payloads"] = str(include / "demo" / "payloads.jsonl")
                wl["router"]["admin"] = f"http://127.0.0.1:{ports[0]}"
                wl["baseline"] = f"http://127.0.0.1:{ports[1]}"
                wl["candidate"] = f"http://127.0.0.1:{ports[2]}"
                # Shared 2-core runners jitter local latencies by tens of ms: the healthy path
                # must not hinge on that; the latency fault adds 60 ms to every request.
                wl["canary"].update(p95_ratio_max=2.0, p95_min_delta_ms=20)
        (specs / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    mp = pytest.MonkeyPatch()
    mp.setenv("MIGRATION_WAVES_SPECS", str(specs))
    try:
        yield root
    finally:
        mp.undo()


def _spec(root: Path, name: str = "pilot") -> Any:
    from migration_waves.spec.loader import load_wave

    return load_wave(root / "specs" / f"{name}.yaml")


def _run(root: Path, conf: dict[str, Any], *, fault: str | None = None, wave: str = "pilot") -> Any:
    """Run a wave with the demo services up; also read the live router's weight before they stop."""
    from migration_waves.airflow.dag_factory import dag_id_for
    from migration_waves.airflow.demo import demo_services
    from migration_waves.airflow.runner import run_wave
    from migration_waves.canary.router import LocalRouter

    spec = _spec(root, "pilot")
    with demo_services(
        spec,
        fault=fault,
        demo_root=root / "demo",
        payloads=Path(spec.resolve_path(spec.inference_workloads[0].payloads)),
        writer_interval_s=None,
    ):
        result = run_wave(dag_id_for(wave), conf=conf)
        result.task_states["<router candidate weight>"] = str(
            LocalRouter(str(spec.inference_workloads[0].router.admin)).get_candidate_weight()
        )
        return result


def _record(root: Path, run_id: str, stage: str, name: str, wave: str = "pilot") -> dict[str, Any]:
    from migration_waves.evidence.store import EvidenceStore

    rec = EvidenceStore(str(root / "state"), wave, run_id).read(stage, name)
    assert rec is not None, f"no evidence {stage}/{name}"
    return rec["data"]


def _run_dir(root: Path, run_id: str, wave: str = "pilot") -> Path:
    from migration_waves.evidence.store import EvidenceStore

    return Path(EvidenceStore(str(root / "state"), wave, run_id).run_dir)


def test_second_wave_is_blocked_until_pilot_is_accepted(wave_home: Path) -> None:
    result = _run(wave_home, {}, wave="early-adopters")
    assert result.state == "failed"
    assert result.task_states["preflight.earlier-waves"] == "failed"
    assert result.task_states["data.eval-corpus.seed"] in ("upstream_failed", "skipped")
    outcome = _record(wave_home, result.run_id, "outcome", "outcome", wave="early-adopters")
    assert any("runs after 'pilot', which is not accepted yet" in r for r in outcome["reasons"])
    assert not (wave_home / "demo" / "cloud" / "eval-corpus").exists()


def test_dry_run_plans_and_moves_nothing(wave_home: Path) -> None:
    result = _run(wave_home, {"dry_run": True})
    assert result.state == "success"
    assert result.task_states["preflight.plan"] == "success"
    assert result.task_states["data.digits-corpus.seed"] == "skipped"
    assert result.task_states["canary.digits-classifier.step-005"] == "skipped"
    assert result.task_states["report"] == "success"
    plan = _record(wave_home, result.run_id, "preflight", "plan")
    corpus = next(p for p in plan["datasets"] if p["dataset"] == "digits-corpus")
    assert corpus["files_to_copy"] == 9 and all(a["reason"] == "new" for a in corpus["actions"])
    assert _record(wave_home, result.run_id, "preflight", "egress")["passed"] is True
    assert not (wave_home / "demo" / "cloud").exists() or not any(
        (wave_home / "demo" / "cloud").rglob("*.parquet")
    )


def test_healthy_wave_moves_verifies_promotes_and_accepts(wave_home: Path) -> None:
    from migration_waves.evidence.store import is_accepted

    result = _run(wave_home, {})
    failed = {t: s for t, s in result.task_states.items() if s not in ("success", "skipped") and "<" not in t}
    assert result.state == "success", failed
    assert result.task_states["acceptance.evaluate"] == "success"
    assert result.task_states["rollback.restore"] == "skipped"
    assert all(s == "skipped" for t, s in result.task_states.items() if ".abort-" in t)

    # Every byte arrived: the cloud copy equals the on-prem source, file by file.
    src, dst = wave_home / "demo" / "onprem" / "corpus", wave_home / "demo" / "cloud" / "corpus"
    src_files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    assert src_files and src_files == sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    assert all((src / p).read_bytes() == (dst / p).read_bytes() for p in src_files)
    model = wave_home / "demo" / "cloud" / "models" / "all-MiniLM-L6-v2"
    assert (model / "config.json").exists()

    verify = _record(wave_home, result.run_id, "data", "digits-corpus-verify")
    assert verify["passed"] and verify["files_verified"] == len(src_files)
    assert verify["validation"]["statistics"]["evaluated"] >= 6
    assert Path(verify["docs_index"].removeprefix("file://")).exists()
    drill = _record(wave_home, result.run_id, "resilience", "digits-trainer-drill")
    assert drill["passed"] and drill["resumed"] and drill["time_to_recover_s"] > 0

    assert result.task_states["<router candidate weight>"] == "100"
    accepted = is_accepted(str(wave_home / "state"), "pilot")
    assert accepted and accepted["run_id"] == result.run_id

    run_dir = _run_dir(wave_home, result.run_id)
    report = (run_dir / "report.html").read_text()
    assert "SUCCESS" in report and "team-sre" in report
    evidence = json.loads((run_dir / "evidence.json").read_text())
    assert evidence["outcome"]["label"] == "SUCCESS" and evidence["outcome"]["given"]["status"] == "success"
    assert "freeze writes" in (run_dir / "runbook.md").read_text().lower()


def test_slow_candidate_rolls_back_and_fails_the_run(wave_home: Path) -> None:
    from migration_waves.evidence.store import is_accepted, is_frozen

    result = _run(wave_home, {"force": True}, fault="latency")
    assert result.state == "failed"
    # The 60 ms fault is caught at the first step on a quiet machine; a loaded shared runner
    # inflates the baseline too, so accept the first gate that caught it, and nothing after it.
    prefix = "canary.digits-classifier."
    aborted = [p for p in (5, 25, 50, 100) if result.task_states.get(f"{prefix}abort-{p:03d}") == "failed"]
    assert len(aborted) == 1, result.task_states
    pct = aborted[0]
    assert result.task_states[f"{prefix}gate-{pct:03d}"] == "success"
    later = [p for p in (5, 25, 50, 100) if p > pct]
    assert all(result.task_states[f"{prefix}step-{p:03d}"] == "skipped" for p in later)
    assert result.task_states[f"{prefix}promote"] == "skipped"
    assert result.task_states["cutover.switch-traffic"] == "skipped"
    assert result.task_states["acceptance.evaluate"] == "skipped"
    assert result.task_states["outcome"] == "failed"

    assert result.task_states["<router candidate weight>"] == "0"
    assert not is_frozen(str(wave_home / "state"), "pilot")
    # The earlier acceptance no longer holds once traffic went back on-prem.
    assert result.task_states["rollback.restore"] == "success"
    assert is_accepted(str(wave_home / "state"), "pilot") is None
    rollback = _record(wave_home, result.run_id, "rollback", "restore")
    assert rollback["rolled_back"] and rollback["acceptance_revoked"]
    abort = _record(wave_home, result.run_id, "canary", f"digits-classifier-abort-{pct:03d}")
    assert abort["restore"]["after_pct"] == 0 and abort["time_to_rollback_s"] is not None

    # A re-run resumes: what the accepted run verified is not sent again.
    seed = _record(wave_home, result.run_id, "data", "digits-corpus-seed")
    assert seed["files_copied"] == 0 and seed["files_skipped"] == 9

    outcome = _record(wave_home, result.run_id, "outcome", "outcome")
    assert outcome["status"] == "rolled_back"
    assert any(f"canary gate at {pct}% failed" in r and "slower" in r for r in outcome["reasons"])
    report = (_run_dir(wave_home, result.run_id) / "report.html").read_text()
    assert "ROLLED BACK" in report and f"canary gate at {pct}% failed" in report
