"""`migration-waves gpu ...`: NVML snapshot, golden-image check and benchmark suite from the shell.

``gpu snapshot [--out FILE]`` records this worker's NVML readings (and framework versions) as JSON;
``gpu check --golden FILE [--snapshot FILE] [--json]`` checks this worker, or a recorded snapshot,
against a golden image; ``gpu bench --golden FILE [--backend ...] [--json]`` runs the image's
benchmark suite here. ``check`` and ``bench`` exit 0 when they pass, 1 when they fail, 2 on bad input.
pynvml/torch are imported only by the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add `gpu` and its subcommands (argument declarations only)."""
    gpu = subparsers.add_parser("gpu", help="NVML snapshot, golden-image conformance, benchmark suite")
    sub = gpu.add_subparsers(dest="gpu_command", required=True)

    snap = sub.add_parser("snapshot", help="record this worker's NVML readings as JSON")
    snap.add_argument("--out", help="write the snapshot to this file (default: print it)")
    snap.add_argument("--no-frameworks", action="store_true", help="do not record torch/CUDA/NCCL versions")
    snap.set_defaults(func=_snapshot)

    check = sub.add_parser("check", help="check this worker or a recorded snapshot against a golden image")
    check.add_argument("--golden", required=True, help="golden-image YAML file")
    check.add_argument("--snapshot", help="recorded snapshot JSON (default: read this worker live)")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    check.set_defaults(func=_check)

    bench = sub.add_parser("bench", help="run the golden image's benchmark suite on this worker")
    bench.add_argument("--golden", required=True, help="golden-image YAML file")
    bench.add_argument("--backend", choices=("auto", "numpy", "torch"), default="auto")
    bench.add_argument("--json", action="store_true", help="print the full report as JSON")
    bench.set_defaults(func=_bench)


def _load_image(path: str) -> Any:
    from migration_waves.spec.loader import load_golden_image

    return load_golden_image(path)


def _snapshot(args: argparse.Namespace) -> int:
    from migration_waves.gpu.nvml import take_snapshot

    snap = take_snapshot(frameworks=not args.no_frameworks)
    if args.out:
        path = snap.save(args.out)
        state = f"{snap.device_count} GPU(s)" if snap.available else f"NVML unavailable: {snap.reason}"
        print(f"wrote {path} ({state})")
    else:
        print(snap.to_json())
    return 0


def _check(args: argparse.Namespace) -> int:
    from migration_waves.gpu.conformance import check_conformance
    from migration_waves.gpu.nvml import NvmlSnapshot, take_snapshot

    try:
        image = _load_image(args.golden)
        snap = NvmlSnapshot.load(args.snapshot) if args.snapshot else take_snapshot()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = check_conformance(snap, image)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        for c in report.checks:
            mark = "ok  " if c.passed else ("FAIL" if c.severity == "fail" else "warn")
            print(f"{mark} {c.name}: {c.message}")
        verdict = "passed" if report.passed else f"FAILED ({len(report.reasons)} reason(s))"
        print(f"golden image {report.image} on {report.hostname} ({report.snapshot_source}): {verdict}, "
              f"{len(report.warnings)} warning(s)")  # fmt: skip
    return 0 if report.passed else 1


def _bench(args: argparse.Namespace) -> int:
    from migration_waves.gpu.suite import run_suite

    try:
        image = _load_image(args.golden)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run_suite(image, backend=args.backend)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print(report.table or "(nothing was run)")
        for line in report.notes + report.reasons:
            print(line)
        print(
            f"golden image {report.image} suite on {report.device}: {'passed' if report.passed else 'FAILED'}"
        )
    return 0 if report.passed else 1
