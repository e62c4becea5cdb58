"""`migration-waves plan`: inventory in, draft wave specs, heatmap and plan.json out."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _plan(args: argparse.Namespace) -> int:
    from migration_waves.planning.inventory import InventoryError
    from migration_waves.planning.output import write_plan

    try:
        result = write_plan(
            args.inventory,
            args.out,
            max_per_wave=args.max_per_wave,
            pilot_size=args.pilot_size,
            prefix=args.prefix,
            png=not args.no_png,
        )
    except InventoryError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"inventory {args.inventory}: {len(exc.problems)} problem(s); nothing written", file=sys.stderr)
        return 1
    for wave in result["waves"]:
        budget = result["budgets_usd"][wave["name"]]
        print(f"{wave['name']:<14} {', '.join(wave['workloads'])}  (egress budget ${budget})")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {len(result['files']['waves'])} draft spec(s), heatmap and plan.json to {args.out}")
    return 0


def register(subparsers: Any) -> None:
    """Declare `plan` (argparse only; the handler imports what it needs)."""
    plan = subparsers.add_parser(
        "plan", help="score an inventory, draw the heatmap and write draft wave specs that pass lint"
    )
    plan.add_argument("--inventory", required=True, help="inventory YAML (may import CSV) or a CSV sheet")
    plan.add_argument("--out", required=True, help="folder for waves/*.yaml, heatmap.html/.png, plan.json")
    plan.add_argument("--max-per-wave", type=int, default=4, help="cap of workloads per wave (default 4)")
    plan.add_argument("--pilot-size", type=int, default=3, help="cap of workloads in the pilot (default 3)")
    plan.add_argument("--prefix", default="", help="prefix of the draft wave names, e.g. 'q3-'")
    plan.add_argument("--no-png", action="store_true", help="skip the PNG (no matplotlib needed)")
    plan.set_defaults(func=_plan)
