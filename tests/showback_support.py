"""A filled evidence store for showback tests: spec copies on a temp state root, two runs of the
pilot (one priced by the cost task, one from before it existed), verified manifests, acceptance.

The records have the shapes the wave operators write (see .demo/state after `make demo`); sizes
are chosen so the expected prices are easy to compute by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

GB = 10**9
RUN_1 = "manual__2026-12-01T02:00:00+00:00"
RUN_2 = "scheduled__2026-12-05T02:00:00+00:00"


def write_specs(project_root: Path, root: Path, *, pilot_budget: float = 50) -> Path:
    """pilot and early-adopters copied to root/specs, their state under root/state."""
    specs = root / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    include = project_root / "include"
    for name in ("pilot", "early-adopters"):
        spec = yaml.safe_load((include / "waves" / f"{name}.yaml").read_text())
        spec["state"] = str(root / "state")
        spec["golden_images"] = str(include / "golden_images")
        spec["budget"]["pricing"] = str(include / "pricing" / "default.yaml")
        if name == "pilot":
            spec["budget"]["egress_usd"] = pilot_budget
        for wl in spec.get("workloads", []):
            if wl["kind"] == "inference":
                wl["payloads"] = str(include / "demo" / "payloads.jsonl")
        (specs / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return specs


def fill_pilot_evidence(specs: Path) -> Any:
    """Two pilot runs, verified manifests and the acceptance marker; returns the pilot spec."""
    import fsspec

    from migration_waves.cost.actual import actual_cost
    from migration_waves.cost.egress import egress_forecast
    from migration_waves.cost.pricing import load_pricing
    from migration_waves.evidence.store import EvidenceStore, mark_accepted
    from migration_waves.spec.loader import load_wave
    from migration_waves.transfer.manifest import Manifest, ManifestEntry

    spec = load_wave(specs / "pilot.yaml")
    root = spec.state_root()
    pricing = load_pricing(spec.resolve_path(spec.budget.pricing))
    moved = {"digits-corpus": 400 * GB, "features": 100 * GB}  # run 1
    for run, data, priced in ((RUN_1, moved, True), (RUN_2, {"features": 50 * GB}, False)):
        store = EvidenceStore(root, "pilot", run)
        store.write("preflight", "egress", egress_forecast(spec, data, pricing))
        for ds, nbytes in data.items():
            store.write("data", f"{ds}-seed", {"dataset": ds, "bytes_copied": nbytes, "passed": True})
        store.write("baseline", "digits-classifier", {"throughput_rps": 400.0, "passed": True})
        for pct in (5, 25, 50, 100):
            step = {"candidate": {"throughput_rps": 500.0}, "duration_s": 900.0, "passed": True}
            store.write("canary", f"digits-classifier-step-{pct:03d}", step)
        store.write("resilience", "digits-trainer-drill",
                    {"total_s": 1800.0, "completed": True, "passed": True})  # fmt: skip
        store.write("outcome", "outcome", {"status": "success", "passed": True})
        if priced:
            store.write("cost", "actual", actual_cost(spec, store.records(), pricing=pricing, run_id=run))
    fs, base = fsspec.core.url_to_fs(root)
    for ds, nbytes in (("digits-corpus", 400 * GB), ("features", 150 * GB), ("checkpoints", 80 * GB)):
        entries = [
            ManifestEntry(path=f"part-{i}", size=nbytes // 2, mtime=0.0, digest="x", algorithm="blake3")
            for i in range(2)
        ]
        path = f"{base}/waves/pilot/datasets/{ds}/verified.parquet"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        Manifest(root="cloud", algorithm="blake3", entries=entries).write_parquet(fs, path)
    mark_accepted(root, "pilot", RUN_2, {"passed": True})
    return spec
