"""`migration-waves canary ...`: judge recorded samples, plan sample sizes.

`register` only declares arguments; the handlers import numpy/scipy when they run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _config(path: str | None) -> Any:
    from pydantic import ValidationError

    from migration_waves.canary.config import JudgeConfig

    if not path:
        return JudgeConfig()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"judge config {p} does not exist")
    import yaml  # JSON is YAML too

    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if isinstance(raw, dict) and "canary" in raw and "rules" not in raw:
        raw = raw["canary"].get("judge") or {}  # a canary block straight out of a wave spec
    try:
        return JudgeConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"judge config {p}: {problems}") from exc


def _judge(args: argparse.Namespace) -> int:
    from migration_waves.canary.load import read_samples
    from migration_waves.canary.rules import judge, plan_samples

    try:
        cfg = _config(args.config)
        baseline, candidate = read_samples(args.baseline), read_samples(args.candidate)
        plan = plan_samples(cfg, baseline)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    verdict = judge(
        baseline, candidate, cfg, workload=args.workload, step_pct=args.step,
        names=(args.baseline_name, args.candidate_name), plan=plan,
    )  # fmt: skip
    if args.json:
        print(verdict.model_dump_json(exclude={"config"}))
    else:
        print(f"plan: {plan.required} samples per side ({'; '.join(plan.reasons)})")
        print(f"{verdict.outcome.upper()} -> {verdict.action}")
        for reason in verdict.reasons:
            print(f"  {reason}")
    return verdict.exit_code


def _plan(args: argparse.Namespace) -> int:
    from migration_waves.canary.load import read_samples
    from migration_waves.canary.rules import plan_samples

    try:
        cfg = _config(args.config)
        baseline = read_samples(args.baseline) if args.baseline else None
        plan = plan_samples(cfg, baseline)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(plan.model_dump_json() if args.json else "\n".join([f"{plan.required} per side", *plan.reasons]))
    return 0


def register(subparsers: Any) -> None:
    """Add `canary judge` and `canary plan`."""
    canary = subparsers.add_parser("canary", help="canary judge over recorded samples; sample-size plans")
    sub = canary.add_subparsers(dest="canary_command", required=True)

    j = sub.add_parser(
        "judge",
        help="judge candidate vs baseline samples (JSONL: latency_ms, status); "
        "exit 0 pass, 1 fail, 2 inconclusive, 3 bad input",
    )
    j.add_argument("--baseline", required=True, help="JSONL samples of the baseline (on-prem)")
    j.add_argument("--candidate", required=True, help="JSONL samples of the candidate (cloud)")
    j.add_argument(
        "--config", help="JudgeConfig as YAML/JSON (rules, alpha, power, ...); default rules if absent"
    )
    j.add_argument("--workload", default="workload", help="name used in the reasons")
    j.add_argument("--step", type=int, default=0, help="traffic percentage, used in the reasons")
    j.add_argument(
        "--baseline-name", default="onprem", help="backend name replacing {side} in Prometheus queries"
    )
    j.add_argument(
        "--candidate-name", default="cloud", help="backend name replacing {side} in Prometheus queries"
    )
    j.add_argument("--json", action="store_true", help="the full verdict as JSON")
    j.set_defaults(func=_judge)

    p = sub.add_parser("plan", help="samples per side each rule needs for its configured power")
    p.add_argument("--config", help="JudgeConfig as YAML/JSON")
    p.add_argument("--baseline", help="JSONL baseline samples to take the latency spread from")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_plan)
