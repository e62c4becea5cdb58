"""The demo's on-prem feature pipeline: keeps changing the mutable dataset until writes are frozen.

`python -m migration_waves.demo.writer --root .demo --freeze-file PATH [--interval 1.0]`
Every interval it rewrites part of `onprem/features/` (atomically, as a real writer would),
unless the wave's freeze marker exists; it exits after --max-seconds or on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def run_writer(root: Path, freeze_file: Path, *, interval: float, max_seconds: float, fraction: float) -> int:
    """Mutate features every `interval` seconds while not frozen; returns the number of changes."""
    from migration_waves.demo.data import mutate_features

    stop = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    changes = 0
    deadline = time.monotonic() + max_seconds
    while not stop and time.monotonic() < deadline:
        if not freeze_file.exists():
            changed = mutate_features(root, fraction=fraction)
            changes += 1
            print(f"writer: changed {len(changed)} feature file(s): {', '.join(changed[:3])}", flush=True)
        time.sleep(interval)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="demo root (holds onprem/features)")
    parser.add_argument("--freeze-file", type=Path, required=True, help="writes stop while this file exists")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    run_writer(
        args.root,
        args.freeze_file,
        interval=args.interval,
        max_seconds=args.max_seconds,
        fraction=args.fraction,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
