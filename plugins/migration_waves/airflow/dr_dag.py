"""Wave spec -> monthly DR drill DAG (``dr_drill_<wave>``): restore from the cloud copy, fail over, time it.

One task runs ``migration_waves.resilience.dr.run_dr_drill`` on a worker of the on-prem site's
queue (the restore lands on-prem): it restores each dataset (a checkpoint dataset: its newest
checkpoint) from the cloud copy into a scratch folder under the state root, verifies it, fails the
inference routes over to the on-prem side and back, and judges time against the RTO and data age
against the RPO. The full report goes to the evidence store (stage ``resilience``, record
``dr-drill``); a failed drill fails the task with the reasons.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, BaseOperator

from migration_waves.airflow.context import WaveRunContext, resolve_fs
from migration_waves.airflow.dag_factory import load_dags_per_spec
from migration_waves.airflow.operators import WaveGateFailed, jsonable, summarize
from migration_waves.spec.loader import load_wave

log = logging.getLogger(__name__)

DR_SCHEDULE = "0 4 1 * *"  # 04:00 on the first of every month
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
SCRATCH_ENV = "MIGRATION_WAVES_DR_SCRATCH"


def dr_dag_id(wave: str) -> str:
    return f"dr_drill_{wave.replace('-', '_')}"


class DrDrillOperator(BaseOperator):
    """Restore + failover + RTO/RPO judgement of one wave; evidence out, typed failure."""

    template_fields: Iterable[str] = ("wave_spec",)
    ui_color = "#fde8e8"

    def __init__(self, *, wave_spec: str, failback: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wave_spec = wave_spec
        self.failback = failback

    def execute(self, context: Any) -> dict[str, Any]:
        from migration_waves.canary.router import LocalRouter
        from migration_waves.resilience.dr import run_dr_drill

        ctx = WaveRunContext.from_airflow(self.wave_spec, context)
        base = os.environ.get(SCRATCH_ENV) or tempfile.gettempdir()
        scratch = Path(base) / f"dr-{ctx.spec.wave}-{int(time.time())}"
        report = run_dr_drill(
            ctx.spec,
            scratch,
            resolve=resolve_fs,
            router_for=lambda wl: LocalRouter(str(wl.router.admin)),
            failback=self.failback,
        )
        record = jsonable(report)
        evidence = ctx.store.write("resilience", "dr-drill", record)
        if not report.passed:
            raise WaveGateFailed(
                f"DR drill of wave {ctx.spec.wave}: " + "; ".join(report.reasons), evidence=evidence
            )
        return summarize(record, evidence) | {"time_to_recover_s": report.time_to_recover_s,
                                              "worst_data_age_s": report.worst_data_age_s}  # fmt: skip


def build_dr_dag(spec_path: str | Path) -> DAG:
    """Render one wave spec file as its monthly DR drill DAG."""
    spec_path = str(Path(spec_path).resolve())
    spec = load_wave(spec_path)
    onprem = [s for s in spec.sites.values() if s.kind == "onprem"]
    queue = onprem[0].queue if onprem else "default"
    with DAG(
        dag_id=dr_dag_id(spec.wave),
        description=f"Monthly DR drill of wave {spec.wave}: restore from the cloud copy, fail over, RTO/RPO",
        schedule=DR_SCHEDULE,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["migration-wave", "dr-drill", f"wave:{spec.wave}"],
        default_args={"owner": spec.owners.rollback, "retries": 0},
        doc_md=f"DR drill of wave **{spec.wave}** from `{Path(spec_path).name}`: RTO "
        f"{spec.targets.rto_minutes:g} min, RPO {spec.targets.rpo_minutes:g} min.",
    ) as dag:
        DrDrillOperator(task_id="restore_failover_measure", wave_spec=spec_path, queue=queue)
    return dag


def load_dr_dags(target: dict[str, Any], specs_dir: str | Path | None = None) -> list[str]:
    """One DR drill DAG per wave spec into ``target`` (a DAG file's globals()); bad specs as load_waves."""
    return load_dags_per_spec(target, build_dr_dag, specs_dir, what="DR drill")
