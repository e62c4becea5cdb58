"""The wave planner DAG (``wave_planner``): inventory in, draft wave specs and a heatmap out.

Triggered from the UI (no schedule) with the Params ``inventory`` and ``max_per_wave``. Its one
task runs ``migration_waves.planning.output.write_plan`` into
``<state root>/planning/<safe run id>/`` and copies the result to ``planning/latest/``, where the
Migration waves view finds the newest heatmap. The state root is MIGRATION_WAVES_STATE_ROOT, else
the first wave spec's, else ``.demo/state`` (`evidence.dashboard.planning_state_root`, which the
view uses too). Nothing is read at parse time: the default inventory is a path computed from this
file's location.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, BaseOperator, Param
from airflow.sdk.exceptions import AirflowFailException

PLANNER_DAG_ID = "wave_planner"
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
# plugins/migration_waves/airflow/planner_dag.py -> project root (absolute(): no filesystem call)
PROJECT_ROOT = Path(__file__).absolute().parents[3]
DEFAULT_INVENTORY = str(PROJECT_ROOT / "include" / "inventory" / "workloads.yaml")
DEFAULT_MAX_PER_WAVE = 4


def planner_params(inventory: str = DEFAULT_INVENTORY) -> dict[str, Param]:
    """The trigger form of the planner."""
    return {
        "inventory": Param(
            inventory,
            type="string",
            minLength=1,
            description="Inventory YAML (may import CSV) or a CSV sheet, as a path on the workers.",
        ),
        "max_per_wave": Param(
            DEFAULT_MAX_PER_WAVE,
            type="integer",
            minimum=1,
            description="At most this many workloads per proposed wave.",
        ),
    }


def _replace_tree(src: Path, dest: Path) -> None:
    """Copy src to dest, replacing dest with two renames (a reader never sees a half-copied folder)."""
    staging = dest.with_name(f".{dest.name}-new-{os.getpid()}")
    retired = dest.with_name(f".{dest.name}-old-{os.getpid()}")
    for leftover in (staging, retired):  # from a run killed half-way
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(src, staging)
    if dest.exists():
        dest.rename(retired)
    staging.rename(dest)
    shutil.rmtree(retired, ignore_errors=True)


class PlanWavesOperator(BaseOperator):
    """Plan the inventory into the state root; push a small summary (waves, warnings) to XCom."""

    template_fields: Iterable[str] = ("inventory", "max_per_wave", "specs_dir")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        inventory: str,
        max_per_wave: int | str = DEFAULT_MAX_PER_WAVE,
        specs_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inventory = inventory
        self.max_per_wave = max_per_wave
        self.specs_dir = specs_dir

    def execute(self, context: Any) -> dict[str, Any]:
        from migration_waves.evidence.dashboard import (
            PLANNING_DIR,
            PLANNING_LATEST,
            load_specs,
            planning_state_root,
        )
        from migration_waves.evidence.store import safe_run_id
        from migration_waves.planning.inventory import InventoryError
        from migration_waves.planning.output import write_plan

        try:
            max_per_wave = int(self.max_per_wave)
        except (TypeError, ValueError):
            raise AirflowFailException(
                f"param max_per_wave: {self.max_per_wave!r} is not a whole number; pass e.g. 4"
            ) from None
        if max_per_wave < 1:
            raise AirflowFailException(f"param max_per_wave: {max_per_wave} must be at least 1")
        if not str(self.inventory or "").strip():
            raise AirflowFailException("param inventory is empty; pass the path of an inventory YAML or CSV")
        run_id = str(context.get("run_id") or "")
        folder = safe_run_id(run_id)
        if folder == PLANNING_LATEST:
            raise AirflowFailException(f"run id {run_id!r} would overwrite planning/latest; use another")

        specs_dir = (
            self.specs_dir or os.environ.get("MIGRATION_WAVES_SPECS") or PROJECT_ROOT / "include" / "waves"
        )
        root = planning_state_root(load_specs(specs_dir))
        if "://" in root:
            # Drafts carry paths relative to their folder: they are only right where they were written.
            raise AirflowFailException(
                f"state root {root} is not a local folder; plans need one (set MIGRATION_WAVES_STATE_ROOT)"
            )
        base = Path(root) / PLANNING_DIR
        out = base / folder
        try:
            result = write_plan(self.inventory, out, max_per_wave=max_per_wave)
        except InventoryError as exc:
            for problem in exc.problems:
                self.log.error("%s", problem)
            raise AirflowFailException(
                f"inventory {self.inventory}: {len(exc.problems)} problem(s); nothing planned:\n{exc}"
            ) from None
        except (FileNotFoundError, ValueError) as exc:
            raise AirflowFailException(f"inventory {self.inventory}: {exc}") from None
        # Who planned it and when, for the view (plan.json is otherwise the core's output as is).
        result |= {"run_id": run_id, "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        (out / "plan.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        latest = base / PLANNING_LATEST
        _replace_tree(out, latest)  # same depth as out: the drafts' relative paths stay right

        for warning in result["warnings"]:
            self.log.warning("plan: %s", warning)
        self.log.info("Planned %d wave(s) into %s (latest: %s)", len(result["waves"]), out, latest)
        return {
            "waves_proposed": len(result["waves"]),
            "workloads_per_wave": {w["name"]: list(w["workloads"]) for w in result["waves"]},
            "warnings": list(result["warnings"]),
            "incomplete": sorted(result.get("x_todo") or {}),
            "folder": str(out),
            "latest": str(latest),
            "files": {k: v for k, v in result["files"].items() if k != "waves"},
            "drafts": [str(latest / "waves" / Path(p).name) for p in result["files"]["waves"]],
        }


def build_planner_dag(inventory: str = DEFAULT_INVENTORY, specs_dir: str | None = None) -> DAG:
    """The wave planner DAG; no I/O at parse time."""
    with DAG(
        dag_id=PLANNER_DAG_ID,
        description="Plan migration waves from the workload inventory: draft specs and a heatmap",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        params=planner_params(inventory),
        tags=["migration-wave", "planning"],
        default_args={"owner": "migration-waves", "retries": 0},
        doc_md=__doc__,
    ) as dag:
        PlanWavesOperator(
            task_id="plan",
            inventory="{{ params.inventory }}",
            max_per_wave="{{ params.max_per_wave }}",
            specs_dir=specs_dir,
        )
    return dag
