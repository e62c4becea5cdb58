"""Shared by the Migration waves view tests: spec copies on temp stores and an evidence store with runs.

The store is written with the project's own EvidenceStore and report builder, in the record shapes
the wave operators write (see airflow/operators.py), so the view reads what a real run leaves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from migration_waves.evidence.report import build_evidence_pack
from migration_waves.evidence.store import EvidenceStore, mark_accepted, safe_run_id
from migration_waves.spec.loader import load_wave

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OLD_RUN = "manual__2026-12-04T09:00:00+00:00"  # rolled back by the canary
NEW_RUN = "manual__2026-12-05T10:00:00+00:00"  # success, accepted
STEPS = (5, 25, 50, 100)


def write_specs(root: Path) -> Path:
    """pilot and early-adopters, their stores under root; returns the specs folder."""
    include = PROJECT_ROOT / "include"
    specs = root / "specs"
    specs.mkdir(parents=True, exist_ok=True)
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
        (specs / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return specs


def _latency(p95: float, errors: float = 0.0) -> dict[str, float]:
    return {
        "count": 300,
        "ok_count": 300,
        "error_count": round(300 * errors),
        "error_rate": errors,
        "p50_ms": p95 / 2,
        "p95_ms": p95,
        "p99_ms": p95 * 1.4,
        "mean_ms": p95 / 1.8,
        "throughput_rps": 900.0,
    }


def _age(folder: Path, seconds: float) -> None:
    """Make a run folder look older (the view orders runs by their last change)."""
    then = folder.stat().st_mtime - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (then, then))


def seed_pilot(specs: Path) -> dict[str, Any]:
    """A rolled-back run, then a successful accepted run with its evidence pack; returns paths."""
    spec = load_wave(specs / "pilot.yaml")
    root = spec.state_root()

    old = EvidenceStore(root, spec.wave, OLD_RUN)
    old.write(
        "baseline", "digits-classifier", {**_latency(10.0), "workload": "digits-classifier", "passed": True}
    )
    old.write(
        "canary",
        "digits-classifier-step-005",
        {
            "workload": "digits-classifier",
            "step_pct": 5,
            "baseline": _latency(10.0),
            "candidate": _latency(29.0),
            "p95_ratio": 2.9,
            "outcome": "fail",
            "verdict_passed": False,
            "passed": True,
            "reasons": ["p95 ratio 2.90 > 1.5"],
        },
    )
    old.write("canary", "digits-classifier-abort-005", {"rolled_back": True, "passed": True})
    old.write(
        "outcome",
        "outcome",
        {"status": "rolled_back", "failed_tasks": ["canary.digits-classifier.gate-005"], "passed": False},
    )
    build_evidence_pack(old, spec, outcome={"status": "rolled_back"})
    _age(Path(old.run_dir), 3600)

    new = EvidenceStore(root, spec.wave, NEW_RUN)
    new.write(
        "preflight",
        "egress",
        {
            "wave": "pilot",
            "bytes": 509056,
            "forecast_usd": "0.00001018",
            "budget_usd": "50.0",
            "passed": True,
        },
    )
    new.write(
        "baseline", "digits-classifier", {**_latency(10.1), "workload": "digits-classifier", "passed": True}
    )
    for ds in spec.datasets:
        new.write(
            "data",
            f"{ds.name}-seed",
            {"dataset": ds.name, "mode": "seed", "files_copied": 4, "bytes_copied": 100_000, "lag_s": 0.8,
             "passed": True},
        )  # fmt: skip
        docs = Path(new.path("data-docs", ds.name, "index.html"))
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(f"<html><body><h1>Data Docs of {ds.name}</h1></body></html>")
        new.write(
            "data",
            f"{ds.name}-verify",
            {
                "dataset": ds.name,
                "files_verified": 4,
                "docs_index": str(docs),
                "validation": {"passed": True, "statistics": {"evaluated_expectations": 6,
                                                              "successful_expectations": 6}},
                "passed": True,
            },
        )  # fmt: skip
    new.write(
        "data",
        "features-sync",
        {"dataset": "features", "mode": "sync", "files_copied": 3, "bytes_copied": 1200, "lag_s": 0.2,
         "passed": True},
    )  # fmt: skip
    for image in spec.golden_image_names:
        new.write("gpu", f"{image}-conformance", {"passed": True, "checks": []})
        new.write(
            "gpu",
            f"{image}-benchmark",
            {"gflops": 50.0, "baseline_gflops": 48.0, "ratio": 1.04, "passed": True},
        )
    for pct in STEPS:
        new.write(
            "canary",
            f"digits-classifier-step-{pct:03d}",
            {
                "workload": "digits-classifier",
                "step_pct": pct,
                "baseline": _latency(10.1),
                "candidate": _latency(11.0 + pct / 100),
                "p95_ratio": (11.0 + pct / 100) / 10.1,
                "outcome": "pass",
                "verdict_passed": True,
                "passed": True,
            },
        )
        decision = "promote" if pct == STEPS[-1] else "continue"
        new.write("canary", f"digits-classifier-gate-{pct:03d}", {"decision": decision, "passed": True})
    new.write("acceptance", "evaluate", {"passed": True, "checks": [], "reasons": []})
    new.write("outcome", "outcome", {"status": "success", "failed_tasks": [], "reasons": [], "passed": True})
    pack = build_evidence_pack(new, spec, outcome={"status": "success"})
    mark_accepted(root, spec.wave, NEW_RUN, {"p95_ms": 12.0})
    return {
        "root": root,
        "new_dir": Path(new.run_dir),
        "old_dir": Path(old.run_dir),
        "new_folder": safe_run_id(NEW_RUN),
        "old_folder": safe_run_id(OLD_RUN),
        "report_html": Path(pack.report_html),
    }


def free_port() -> int:
    """A free loopback port (released; good enough for a server started right after)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
