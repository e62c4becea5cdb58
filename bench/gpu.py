"""Benchmark suite of a golden image on this worker: the table against the image's baselines, the
run-to-run spread, and peers measured in the same run.

    python bench/gpu.py [--golden include/golden_images/training-cpu-dev.yaml] [--runs 3]
                        [--backend auto|numpy|torch]

numpy on a CPU image (this machine); torch on a GPU image (an H200 worker). It prints:

* the first run's table (measured, baseline, pass line, ratio = measured / baseline, verdict);
* the spread over ``--runs`` runs (min/median/max and max/min per metric): the figure to size a
  tolerance with; a baseline to record is the median of a healthy node;
* peers from the same run: the single-matmul benchmark (gpu/bench.py, its own timer) next to the
  suite's row of the same dtype (ratio ~1.0 says both timers agree), and on a GPU run the numpy
  suite on this node's CPU (GPU/CPU ratio per metric both measure).

Exit 0 when every run passed its baselines, 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from migration_waves.gpu.bench import run_benchmark  # noqa: E402
from migration_waves.gpu.suite import SuiteReport, run_suite  # noqa: E402
from migration_waves.spec.loader import load_golden_image  # noqa: E402


def _measured(report: SuiteReport) -> dict[str, float]:
    return {r.metric: r.measured for r in report.rows if r.measured is not None}


def spread_table(runs: list[SuiteReport]) -> str:
    """min/median/max per metric over the runs, and the median's ratio to the baseline."""
    baselines = {r.metric: r.baseline for r in runs[0].rows}
    lines = [
        f"| metric | min | median | max | max/min | median/baseline | runs passed ({len(runs)}) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for metric in _measured(runs[0]):
        values = [v for v in (_measured(r).get(metric) for r in runs) if v is not None]
        ok = sum(1 for r in runs for row in r.rows if row.metric == metric and row.passed)
        med, base = statistics.median(values), baselines.get(metric)
        spread = f"{max(values) / min(values):.2f}" if min(values) > 0 else "-"
        vs = f"{med / base:.2f}" if base else "-"
        lines.append(
            f"| {metric} | {min(values):,.1f} | {med:,.1f} | {max(values):,.1f} | {spread} | {vs} | {ok} |"
        )
    return "\n".join(lines)


def peer_lines(image: Any, first: SuiteReport, backend: str) -> list[str]:
    out = []
    single = run_benchmark(image)
    same = _measured(first).get(f"matmul_{single.dtype}_gflops")
    if single.gflops is not None and same:
        out.append(
            f"peer: single-matmul benchmark ({image.benchmark.matmul_size}^2 {single.dtype}, own timer) "
            f"{single.gflops:,.1f} GFLOP/s; suite row ({first.config['matmul_size']}^2) {same:,.1f}; "
            f"suite/single = {same / single.gflops:.2f}"
        )
    elif single.reasons:
        out.append(f"peer: single-matmul benchmark did not run: {single.reasons[0]}")
    if first.backend == "torch":
        cpu = _measured(run_suite(image, backend="numpy"))
        for metric, value in _measured(first).items():
            if metric in cpu and metric != "soak_growth_mib" and cpu[metric] > 0:
                out.append(f"peer: {metric} GPU {value:,.1f} / this node's CPU {cpu[metric]:,.1f} = "
                           f"{value / cpu[metric]:,.1f}x")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", default=str(ROOT / "include/golden_images/training-cpu-dev.yaml"))
    parser.add_argument("--runs", type=int, default=3, help="suite runs for the spread (>= 1)")
    parser.add_argument("--backend", choices=("auto", "numpy", "torch"), default="auto")
    args = parser.parse_args(argv)
    image = load_golden_image(args.golden)
    runs = [run_suite(image, backend=args.backend) for _ in range(max(args.runs, 1))]
    first = runs[0]
    print(f"golden image {image.name} on {first.hostname}, backend {first.backend}, device {first.device}")
    if first.backend == "none":
        print("\n".join(first.reasons))
        return 1
    print(first.table)
    print("\n".join(first.notes))
    print()
    print(spread_table(runs))
    print()
    print("\n".join(peer_lines(image, first, first.backend)))
    failed = [r for r in runs if not r.passed]
    for r in failed:
        print("\n".join(r.reasons))
    print(f"{len(runs) - len(failed)}/{len(runs)} runs passed the baselines of {image.name}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
