"""How long parsing all of dags/ takes once Python is warm (issue: under 1 s).

Runs the DagBag parse several times in one process and prints the per-parse figure from
Airflow's own FileLoadStat, next to the cold first parse.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mw-bench-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")


def main(repeats: int = 5) -> int:
    t0 = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    import_s = time.perf_counter() - t0
    timings = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        timings.append(time.perf_counter() - start)
        assert not bag.import_errors, bag.import_errors
    cold, warm = timings[0], statistics.median(timings[1:])
    tasks = sum(len(d.tasks) for d in bag.dags.values())
    print(f"airflow DagBag import: {import_s:.2f} s (once per process)")
    print(
        f"parse dags/ ({len(bag.dags)} DAGs, {tasks} tasks): cold {cold:.3f} s, warm median {warm:.3f} s "
        f"over {repeats} parses; target < 1 s warm: {'OK' if warm < 1 else 'TOO SLOW'}"
    )
    return 0 if warm < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
