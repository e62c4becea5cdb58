"""`migration-waves drill ...`: resilience drills from the shell.

``drill interrupt --checkpoint-dir DIR [--signal KILL|TERM --grace S] [--rto S --rpo S] -- CMD...``
runs the forced-interruption drill on a training command (``{checkpoint_dir}`` in CMD is replaced
by the folder) and exits 0 when it passed, 1 when it failed, 2 on bad input.
``drill dr --spec WAVE.yaml --scratch DIR`` restores each dataset (a checkpoint dataset: its newest
checkpoint) from the cloud copy to a scratch folder, verifies it, and judges the time against the
wave's RTO and the data's age against its RPO.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add `drill` and its subcommands (argument declarations only)."""
    drill = subparsers.add_parser("drill", help="resilience drills: forced interruption, DR restore")
    sub = drill.add_subparsers(dest="drill_command", required=True)

    intr = sub.add_parser(
        "interrupt",
        help="interrupt a training command mid-run, restart it, time its recovery",
        description="Example: migration-waves drill interrupt --checkpoint-dir /tmp/ck --signal TERM "
        "--grace 30 -- python -m migration_waves.demo.trainer --steps 60 --checkpoint-every 5 "
        "--checkpoint-dir {checkpoint_dir}",
    )
    intr.add_argument(
        "--checkpoint-dir",
        required=True,
        help="local folder or file:// URL for checkpoints (s3://, gs://... are refused: exit 2)",
    )
    intr.add_argument("--workload", default="workload", help="name used in the evidence")
    intr.add_argument("--signal", choices=("KILL", "TERM"), default="KILL")
    intr.add_argument("--grace", type=float, default=0.0, help="TERM: seconds before SIGKILL")
    intr.add_argument("--rto", type=float, default=600.0, help="recovery time objective, seconds")
    intr.add_argument("--rpo", type=float, default=900.0, help="recovery point objective, seconds")
    intr.add_argument("--after", type=int, default=2, help="interrupt after this many new checkpoints")
    intr.add_argument("--delay", type=float, default=None, help="seconds after the Nth checkpoint")
    intr.add_argument("--timeout", type=float, default=300.0, help="whole drill limit, seconds")
    intr.add_argument("--json", action="store_true", help="print the full report as JSON")
    intr.add_argument("command", nargs=argparse.REMAINDER, help="-- then the training command")
    intr.set_defaults(func=_interrupt)

    dr = sub.add_parser("dr", help="restore from the cloud copy to a scratch folder; judge RTO/RPO")
    dr.add_argument("--spec", required=True, help="wave spec YAML")
    dr.add_argument("--scratch", required=True, help="local scratch folder (on-prem side) to restore into")
    dr.add_argument("--dataset", action="append", default=[], help="restore only these datasets")
    dr.add_argument(
        "--no-failover",
        action="store_true",
        help="restore only; do not switch the routers (noted in the report)",
    )
    dr.add_argument("--keep-split", action="store_true", help="leave the routes failed over (no failback)")
    dr.add_argument("--json", action="store_true", help="print the full report as JSON")
    dr.set_defaults(func=_dr)


def local_dir(url: str) -> Path:
    """A local folder from a plain path or a file:// URL (``file:///abs``, ``file://localhost/abs``).

    Any other scheme (s3://, gs://, az://, hdfs://, ...) is refused with a ValueError (exit 2), not
    silently treated as a path: the drill must see every checkpoint the moment it is written
    (``manifest.json`` rename) to time detection and to pick the newest valid one, which object
    storage listings do not guarantee. A job that keeps its checkpoints in object storage runs the
    drill on its local staging folder and syncs to the bucket itself.
    """
    from urllib.parse import unquote, urlsplit

    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(
                f"--checkpoint-dir {url}: file:// URL names host {parts.netloc!r}; the drill runs "
                "here, so give file:///absolute/path (or file://localhost/absolute/path)"
            )
        if not parts.path:
            raise ValueError(f"--checkpoint-dir {url}: file:// URL has no path; give file:///absolute/path")
        return Path(unquote(parts.path))
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(
            f"--checkpoint-dir {url}: {scheme}:// is not supported; the interruption drill watches a "
            "local folder as the job writes it: give a path or file:// URL (a job that keeps "
            "checkpoints in object storage stages them locally and syncs them itself)"
        )
    return Path(url)


def _interrupt(args: argparse.Namespace) -> int:
    from migration_waves.resilience.drill import run_interruption_drill

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    try:
        folder = local_dir(args.checkpoint_dir)
        report = run_interruption_drill(
            command, folder, workload=args.workload, rto_s=args.rto, rpo_s=args.rpo, signal=args.signal,
            grace_s=args.grace, interrupt_after_checkpoints=args.after, timeout_s=args.timeout,
            interrupt_delay_s=args.delay,
        )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        for field in (
            "time_to_detect_s",
            "time_to_restart_s",
            "time_to_recover_s",
            "steps_lost",
            "work_lost_s",
        ):
            print(f"{field}: {getattr(report, field)}")
        print(report.summary)
    return 0 if report.passed else 1


def _dr(args: argparse.Namespace) -> int:
    from migration_waves.canary.router import LocalRouter
    from migration_waves.resilience.dr import local_resolver, run_dr_drill
    from migration_waves.spec.loader import load_wave

    try:
        spec = load_wave(args.spec)
        report = run_dr_drill(
            spec, args.scratch, resolve=local_resolver, datasets=args.dataset or None,
            router_for=lambda wl: LocalRouter(str(wl.router.admin)), failover=not args.no_failover,
            failback=not args.keep_split,
        )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print(report.table)
        for line in report.notes + report.reasons:
            print(line)
        print(report.summary)
    return 0 if report.passed else 1
