"""`migration-waves ...`: the command line over the same core the DAGs use.

Imports stay inside the subcommands: `migration-waves lint` must not pay for Airflow,
pandas or Great Expectations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

_ENDS_AT_ONCE = frozenset({"copy", "sync", "verify", "diff"})  # see run()


def _lint(args: argparse.Namespace) -> int:
    from migration_waves.spec.loader import lint_paths, spec_files

    files = spec_files(args.paths)
    specs, problems = lint_paths(args.paths)
    if args.json:
        print(
            json.dumps(
                {
                    "waves": [s.wave for s in specs],
                    "problems": [
                        {"file": p.file, "field": p.field, "value": p.shown_value(), "message": p.message}
                        for p in problems
                    ],
                },
                default=str,
            )
        )
    else:
        for problem in problems:
            print(problem, file=sys.stderr)
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"linted {len(files)} file(s): {status}")
    return 1 if problems else 0


def _render(args: argparse.Namespace) -> int:
    from migration_waves.evidence.runbook import render_runbook
    from migration_waves.spec.loader import load_wave

    print(render_runbook(load_wave(args.spec)))
    return 0


#: Packages that add subcommands: each has a `cli.py` with `register(subparsers)` that only
#: declares arguments (argparse, no heavy import); handlers import what they need when run.
SUBCOMMAND_MODULES = (
    "migration_waves.transfer.cli",
    "migration_waves.canary.cli",
    "migration_waves.gpu.cli",
    "migration_waves.resilience.cli",
    "migration_waves.planning.cli",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="migration-waves", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not an absent subcommand module
                raise
            continue
        module.register(sub)

    lint = sub.add_parser("lint", help="validate wave specs: every problem with file, field, value and fix")
    lint.add_argument("paths", nargs="+", help="spec files or folders of specs")
    lint.add_argument("--json", action="store_true", help="machine-readable output")
    lint.set_defaults(func=_lint)

    runbook = sub.add_parser("runbook", help="print the cutover runbook of a wave spec (Markdown)")
    runbook.add_argument("spec")
    runbook.set_defaults(func=_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The `migration-waves` command: `main`, then the process ends.

    After a transfer command the interpreter's own teardown (freeing every row of two 100,000-file
    listings, module by module) would add tens of milliseconds to every run, so once the output is
    flushed the process ends at once; every file the command wrote is closed by then.
    """
    code = main()
    if sys.argv[1:2] and sys.argv[1] in _ENDS_AT_ONCE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
