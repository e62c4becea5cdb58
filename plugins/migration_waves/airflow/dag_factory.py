"""Wave spec -> Airflow DAG, with the stage groups of DESIGN.md.

A closed vocabulary: every task is one of the operators in `operators.py`; nothing in YAML
names an import path. Only the spec is read at parse time (YAML + pydantic, milliseconds).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, Param, TaskGroup, TriggerRule

from migration_waves.airflow import operators as ops
from migration_waves.airflow.approval import APPROVAL_PARAM, NeedApprovalOperator, approval_task
from migration_waves.airflow.data_operators import MergeShardsOperator, PlanShardsOperator, ShardCopyOperator
from migration_waves.airflow.managed_transfer import copy_operator_for
from migration_waves.airflow.notify import wave_notifiers
from migration_waves.spec.loader import SpecError, load_wave, spec_files
from migration_waves.spec.models import Dataset, DatasetClass, WaveSpec

log = logging.getLogger(__name__)

SPECS_ENV = "MIGRATION_WAVES_SPECS"
STRICT_ENV = "MIGRATION_WAVES_STRICT"
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def accepted_asset(wave: str) -> Asset:
    """The Asset a wave's acceptance emits; later waves and dashboards watch it."""
    return Asset(name=f"wave-{wave}-accepted", uri=f"migration-waves://waves/{wave}/accepted")


def dag_id_for(wave: str) -> str:
    return f"wave_{wave.replace('-', '_')}"


def _params(spec: WaveSpec) -> dict[str, Param]:
    return {
        "dry_run": Param(False, type="boolean", description="Plan and forecast only; nothing moves."),
        "force": Param(False, type="boolean", description="Run again even though the wave was accepted."),
        "datasets": Param(
            [],
            type="array",
            items={"type": "string", "enum": [d.name for d in spec.datasets] or [""]},
            description="Move only these datasets (empty: all).",
        ),
        APPROVAL_PARAM: Param(
            any(wl.canary.approve_before_full for wl in spec.inference_workloads),
            type="boolean",
            description="Ask a human (HITL approval) before a canary takes 100%; workloads whose spec "
            "sets canary.approve_before_full always ask.",
        ),
    }


def build_wave_dag(spec_path: str | Path) -> DAG:
    """Render one wave spec file as a DAG."""
    spec_path = str(Path(spec_path).resolve())
    spec = load_wave(spec_path)
    common = {"wave_spec": spec_path}
    default_args: dict[str, Any] = {"owner": spec.owners.launch, "retries": 0}
    dag = DAG(
        dag_id=dag_id_for(spec.wave),
        description=spec.description or f"Migration wave {spec.wave}",
        schedule=spec.window,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        params=_params(spec),
        tags=["migration-wave", f"wave:{spec.wave}", f"order:{spec.order}"],
        default_args=default_args,
        # Every terminal state of a run, setup failures included, is announced (webhook if configured).
        **wave_notifiers(spec.wave, spec_path),
        doc_md=f"Wave **{spec.wave}** (order {spec.order}) from `{Path(spec_path).name}`. "
        f"Owners: launch {spec.owners.launch}, cutover {spec.owners.cutover}, "
        f"rollback {spec.owners.rollback}.",
    )
    with dag:
        with TaskGroup("preflight"):
            chain_ = [
                ops.SpecCheckOperator(task_id="spec", **common),
                ops.EarlierWavesOperator(task_id="earlier-waves", **common),
                ops.CapacityOperator(task_id="capacity", **common),
                ops.SecurityOperator(task_id="security", **common),
                ops.PlanOperator(task_id="plan", **common),
                ops.EgressBudgetOperator(task_id="egress-budget", **common),
            ]
            for a, b in itertools.pairwise(chain_):
                a >> b
            go = ops.GoGateOperator(task_id="go", **common)
            chain_[-1] >> go

        with TaskGroup("baseline") as baseline:
            for wl in spec.inference_workloads:
                ops.BaselineOperator(task_id=wl.name, subject=wl.name, **common)

        with TaskGroup("data") as data:
            for ds in spec.datasets:
                _dataset_tasks(ds, spec, common)

        with TaskGroup("gpu") as gpu:
            for image in spec.golden_image_names:
                queue = _queue_for_image(spec, image)
                with TaskGroup(image):
                    conf = ops.GpuConformanceOperator(
                        task_id="conformance", subject=image, queue=queue, **common
                    )
                    bench = ops.GpuBenchmarkOperator(
                        task_id="benchmark", subject=image, queue=queue, **common
                    )
                    conf >> bench

        with TaskGroup("resilience") as resilience:
            for wl in spec.training_workloads:
                ops.InterruptionDrillOperator(task_id=f"{wl.name}-drill", subject=wl.name, **common)

        with TaskGroup("canary"):
            ends = [_canary_tasks(wl, common, spec) for wl in spec.inference_workloads]

        with TaskGroup("cutover"):
            freeze = ops.FreezeWritesOperator(
                task_id="freeze", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, **common
            )
            last = freeze
            mutable = [d for d in spec.datasets if d.class_ is DatasetClass.MUTABLE]
            for ds in mutable:
                sync = copy_operator_for(ds)(
                    task_id=f"{ds.name}-final-sync", subject=ds.name, mode="final", **common
                )
                verify = ops.VerifyDatasetOperator(
                    task_id=f"{ds.name}-final-verify", subject=ds.name, mode="final", **common
                )
                last >> sync >> verify
                last = verify
            switch = ops.SwitchTrafficOperator(task_id="switch-traffic", **common)
            post = ops.PostCutoverChecksOperator(task_id="post-checks", **common)
            last >> switch >> post

        with TaskGroup("acceptance"):
            accept = ops.AcceptanceOperator(task_id="evaluate", outlets=[accepted_asset(spec.wave)], **common)
            # Moved bytes priced per flow once everything that copies is done, whatever happened.
            cost = ops.CostActualOperator(task_id="cost", trigger_rule=TriggerRule.ALL_DONE, **common)

        with TaskGroup("rollback"):
            restore = ops.RollbackOperator(
                task_id="restore",
                trigger_rule=TriggerRule.ALL_DONE,
                retries=3,
                retry_delay=timedelta(seconds=5),
                **common,
            )

        report = ops.ReportOperator(task_id="report", trigger_rule=TriggerRule.ALL_DONE, **common)
        outcome = ops.OutcomeOperator(task_id="outcome", trigger_rule=TriggerRule.ALL_DONE, **common)

        body = [g for g in (baseline, data, gpu, resilience) if g.children]
        go >> (body or [freeze])
        for group in body:
            if ends:
                group >> [start for start, _ in ends]
            else:
                group >> freeze
        for _, promote in ends:
            promote >> freeze
        post >> accept
        # Rollback runs once the body is done, whatever happened; it decides for itself.
        # An approval task (HITL) skips all its direct downstream tasks on Reject, so it feeds only
        # its 100% step; restore/report/outcome still wait for it through that step.
        approvals = {t for t in dag.tasks if t.task_id.rsplit(".", 1)[-1].startswith("approve-")}
        for task in dag.tasks:
            if task in approvals:
                continue
            if task.task_id.startswith(("canary.", "cutover.")) or task in (accept, go):
                task >> restore
        for task in dag.tasks:
            if task not in (cost, report, outcome) and task not in approvals:
                task >> cost
        # report and the outcome watcher sit downstream of every task: a failure anywhere fails
        # the run (a leaf rollback that succeeded would otherwise mark a failed wave green).
        for task in dag.tasks:
            if task not in (report, outcome) and task not in approvals:
                task >> report
        report >> outcome
        for task in dag.tasks:
            if task is not outcome and task not in approvals:
                task >> outcome
    return dag


def _queue_for_image(spec: WaveSpec, image: str) -> str:
    cloud = [s for s in spec.sites.values() if s.kind == "cloud"]
    return cloud[0].queue if cloud else "default"


def _dataset_tasks(ds: Dataset, spec: WaveSpec, common: dict[str, Any]) -> None:
    """snapshot -> seed -> verify (mutable: -> sync -> verify); a managed engine's dataset copies through
    the service (managed_transfer.py), a sharded one's seed is mapped over its shards
    (data_operators.py); the same verify task reads the target back after each."""
    name, klass = ds.name, ds.class_
    copy_op = copy_operator_for(ds)
    with TaskGroup(name):
        snap = ops.SnapshotManifestOperator(task_id="snapshot", subject=name, **common)
        verify = ops.VerifyDatasetOperator(task_id="verify", subject=name, mode="seed", **common)
        if ds.shards > 1:
            # plan-shards -> seed mapped over the shards (dynamic task mapping) -> merge-shards
            plan = PlanShardsOperator(task_id="plan-shards", subject=name, **common)
            seed = ShardCopyOperator.partial(
                task_id="seed", subject=name, mode="seed",
                map_index_template=ShardCopyOperator.MAP_INDEX_TEMPLATE, **common,
            ).expand(shard=plan.output)  # fmt: skip
            merge = MergeShardsOperator(task_id="merge-shards", subject=name, mode="seed", **common)
            snap >> plan >> seed >> merge >> verify
        else:
            seed = copy_op(
                task_id="seed" if klass is not DatasetClass.TELEMETRY else "ingest",
                subject=name,
                mode="seed",
                **common,
            )
            snap >> seed >> verify
        if klass is DatasetClass.MUTABLE:
            sync = copy_op(task_id="sync", subject=name, mode="sync", **common)
            verify_sync = ops.VerifyDatasetOperator(
                task_id="verify-sync", subject=name, mode="sync", **common
            )
            verify >> sync >> verify_sync


def _canary_tasks(wl: Any, common: dict[str, Any], spec: WaveSpec) -> tuple[Any, Any]:
    """Synthetic checks, then per step: shift+measure -> gate -> (next step | abort); then promote."""
    with TaskGroup(wl.name) as group:
        prefix = f"{group.group_id}."
        # A join: runs when its upstream groups did not fail, even if a dataset was left out.
        synthetic = ops.SyntheticCheckOperator(
            task_id="synthetic",
            subject=wl.name,
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
            **common,
        )
        promote = ops.PromoteOperator(task_id="promote", subject=wl.name, **common)
        prev: Any = synthetic
        steps = list(wl.canary.steps)
        for i, pct in enumerate(steps):
            extra: dict[str, Any] = {}
            if pct == 100:
                # Optional human approval before 100%: a branch asks (spec or run param) or skips ahead.
                need = NeedApprovalOperator(
                    task_id="need-approval-100", subject=wl.name, ask=f"{prefix}approve-100",
                    skip_to=f"{prefix}step-100", **common,
                )  # fmt: skip
                approve = approval_task(
                    task_id="approve-100", wave=spec.wave, workload=wl.name, owner=spec.owners.rollback,
                    wave_spec=common["wave_spec"],
                )  # fmt: skip
                prev >> need >> approve
                prev = need
                # Reached from the branch directly or through the approval: one success is enough.
                extra["trigger_rule"] = TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
            step = ops.CanaryStepOperator(
                task_id=f"step-{pct:03d}", subject=wl.name, step_pct=pct, **extra, **common
            )
            if pct == 100:
                approve >> step
            nxt = f"{prefix}step-{steps[i + 1]:03d}" if i + 1 < len(steps) else f"{prefix}promote"
            if i + 1 < len(steps) and steps[i + 1] == 100:
                nxt = f"{prefix}need-approval-100"
            gate = ops.CanaryGateOperator(
                task_id=f"gate-{pct:03d}",
                subject=wl.name,
                step_pct=pct,
                on_pass=nxt,
                on_fail=f"{prefix}abort-{pct:03d}",
                **common,
            )
            abort = ops.CanaryAbortOperator(
                task_id=f"abort-{pct:03d}",
                subject=wl.name,
                step_pct=pct,
                retries=3,
                retry_delay=timedelta(seconds=2),
                **common,
            )
            prev >> step >> gate >> abort
            prev = gate
        prev >> promote
    return synthetic, promote


def load_dags_per_spec(
    target: dict[str, Any],
    build: Callable[[Path], DAG | None],
    specs_dir: str | Path | None = None,
    *,
    what: str = "",
) -> list[str]:
    """Build DAGs from every wave spec in the folder into `target` (a DAG file's globals()).

    `build` may return None (no DAG for that spec). A bad spec is logged and skipped so the
    other waves keep working; with MIGRATION_WAVES_STRICT=1 (CI) it raises instead.
    """
    folder = Path(specs_dir or os.environ.get(SPECS_ENV) or _default_specs_dir())
    built = []
    for file in spec_files([folder]):
        try:
            dag = build(file)
        except SpecError as exc:
            if os.environ.get(STRICT_ENV) == "1":
                raise
            log.error("Skipping wave spec %s%s:\n%s", file, f" for its {what}" if what else "", exc)
            continue
        if dag is not None:
            target[dag.dag_id] = dag
            built.append(dag.dag_id)
    return built


def load_waves(target: dict[str, Any], specs_dir: str | Path | None = None) -> list[str]:
    """One wave DAG per spec in the folder into `target` (a DAG file's globals())."""
    return load_dags_per_spec(target, build_wave_dag, specs_dir)


def _default_specs_dir() -> Path:
    # plugins/migration_waves/airflow/dag_factory.py -> project root / include / waves
    return Path(__file__).resolve().parents[3] / "include" / "waves"
