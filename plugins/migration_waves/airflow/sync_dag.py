"""Wave spec -> scheduled incremental sync DAG (``dataset_sync_<wave>``) of its mutable datasets.

Between the seed and the cutover a mutable dataset keeps changing at the source; this DAG keeps
the target within the wave's RPO. It runs every RPO/2 (a periodic timedelta schedule, so it can be
backfilled), one run at a time, no catch-up:

    gate >> <dataset>.sync >> <dataset>.verify      (one group per mutable dataset)

- ``gate`` short-circuits the run (every task skipped) when the wave is accepted (nothing left to
  sync), when writes are frozen for cutover (the wave run's final sync owns the data: a scheduled
  sync must not race it), or when no mutable dataset is seeded yet (the wave run seeds first).
  Parse time does no I/O, so the DAG always exists and decides at run time.
- ``sync`` re-checks the freeze and the seed, copies what changed (deletions per the dataset's
  ``delete``), and records the replication lag (transfer/lag.py); lag over the RPO fails the task.
- ``verify`` reads the target back (digests + Great Expectations) and advances the dataset's
  verified manifest, the reference of the next sync and of the wave run's final sync. After a
  failed sync it does not run (upstream_failed), so the run fails: Airflow judges a run by its
  leaf tasks. Data a sync placed over the RPO is verified by the next run (nothing is re-sent:
  the plan finds it current at the target).

Evidence goes to the same state root, under ``waves/<wave>/sync/<run>/`` rather than ``runs/``:
a run every few minutes must not bury the wave runs the report and the dashboard list.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, BaseOperator, TaskGroup
from airflow.sdk.exceptions import AirflowSkipException

from migration_waves.airflow.context import WaveRunContext
from migration_waves.airflow.dag_factory import load_dags_per_spec
from migration_waves.airflow.operators import CopyDatasetOperator, VerifyDatasetOperator, jsonable
from migration_waves.spec.loader import load_wave
from migration_waves.spec.models import DatasetClass, WaveSpec

log = logging.getLogger(__name__)

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
SYNC_FOLDER = "sync"  # waves/<wave>/sync/<run>/: evidence of scheduled syncs


def sync_dag_id(wave: str) -> str:
    return f"dataset_sync_{wave.replace('-', '_')}"


def sync_interval(spec: WaveSpec) -> timedelta:
    """Half the RPO: a change waits at most one interval plus one sync before it is at the target."""
    return timedelta(minutes=spec.targets.rpo_minutes / 2)


def mutable_datasets(spec: WaveSpec) -> list[str]:
    return [d.name for d in spec.datasets if d.class_ is DatasetClass.MUTABLE]


def sync_store(ctx: WaveRunContext) -> Any:
    """The evidence store of a scheduled sync run: same root and record layout, its own folder."""
    from migration_waves.evidence.store import EvidenceStore, safe_run_id

    store = EvidenceStore(ctx.state_root, ctx.spec.wave, ctx.run_id)
    store.run_dir = f"{store._base}/waves/{ctx.spec.wave}/{SYNC_FOLDER}/{safe_run_id(ctx.run_id)}"
    return store


def _context(wave_spec: str, context: Any) -> WaveRunContext:
    ctx = WaveRunContext.from_airflow(wave_spec, context)
    ctx.__dict__["store"] = sync_store(ctx)  # fills the cached_property: every write goes under sync/
    return ctx


def hold_reason(ctx: WaveRunContext) -> str | None:
    """Why no scheduled sync may run now (wave accepted, writes frozen), or None."""
    from migration_waves.evidence.store import is_accepted, read_marker

    wave = ctx.spec.wave
    accepted = is_accepted(ctx.state_root, wave)
    if accepted is not None:
        return (
            f"wave {wave} was accepted by run {accepted.get('run_id')} at {accepted.get('accepted_at')}: "
            "nothing left to sync; pause or remove the dataset_sync DAG"
        )
    frozen = read_marker(ctx.state_root, wave, "frozen")
    if frozen is not None:
        return (
            f"writes of wave {wave} are frozen for cutover (run {frozen.get('run_id')}, since "
            f"{frozen.get('frozen_at')}): the wave run's final sync owns the data; scheduled sync skipped"
        )
    return None


def _seeded(ctx: WaveRunContext, dataset: str) -> bool:
    from migration_waves.airflow.operators import _manifest_path, _state_fs

    return bool(_state_fs(ctx).exists(_manifest_path(ctx, dataset, "verified")))


def _skip(message: str) -> None:
    log.warning("%s", message)
    raise AirflowSkipException(message)


class SyncGateOperator(BaseOperator):
    """First task: skip the whole run when the wave is accepted, frozen, or not seeded yet."""

    template_fields = ("wave_spec",)
    ui_color = "#fff4d6"

    def __init__(self, *, wave_spec: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wave_spec = wave_spec

    def execute(self, context: Any) -> dict[str, Any]:
        ctx = _context(self.wave_spec, context)
        if reason := hold_reason(ctx):
            _skip(reason)
        names = mutable_datasets(ctx.spec)
        seeded = [n for n in names if _seeded(ctx, n)]
        if not seeded:
            _skip(
                f"wave {ctx.spec.wave}: no mutable dataset ({', '.join(names)}) is seeded yet; the wave run "
                "seeds and verifies them first, scheduled syncs start after that"
            )
        return {"wave": ctx.spec.wave, "datasets": seeded, "not_seeded": sorted(set(names) - set(seeded))}


class ScheduledSyncOperator(CopyDatasetOperator):
    """Incremental sync of one mutable dataset with its replication lag judged against the RPO."""

    ui_color = "#fff4d6"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(mode="scheduled-sync", **kwargs)

    def make_context(self, context: Any) -> WaveRunContext:
        return _context(self.wave_spec, context)

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.airflow.context import resolve_fs
        from migration_waves.airflow.operators import _previous, _read_recopy, _write_manifest
        from migration_waves.evidence.store import is_frozen
        from migration_waves.transfer.engine import copy_tree
        from migration_waves.transfer.lag import measure_lag

        ds = ctx.spec.dataset(str(self.subject))
        if reason := hold_reason(ctx):
            _skip(reason)
        if not _seeded(ctx, ds.name):
            _skip(f"dataset {ds.name}: not seeded yet (no verified manifest); the wave run seeds it first")
        src_fs, src_root = resolve_fs(ctx.spec.location(ds.source))
        dst_fs, dst_root = resolve_fs(ctx.spec.location(ds.target))
        started = time.time()
        result = copy_tree(
            src_fs,
            src_root,
            dst_fs,
            dst_root,
            dataset=ds.name,
            algorithm=ds.checksum.value,
            delete=ds.delete,
            max_delete=ds.max_delete,
            previous=_previous(ctx, ds.name),
            include=ds.include,
            exclude=ds.exclude,
            recopy=_read_recopy(ctx, ds.name),
            links=ds.links,
        )
        finished = time.time()
        if is_frozen(ctx.state_root, ctx.spec.wave):
            # The freeze came while this pass ran: its manifest must not replace the final sync's.
            _skip(
                f"dataset {ds.name}: writes of wave {ctx.spec.wave} were frozen while this sync ran; "
                "its result is discarded, the wave run's final sync owns the data"
            )
        lag = measure_lag(
            result.plan,
            dataset=ds.name,
            started=started,
            finished=finished,
            rpo_s=ctx.spec.targets.rpo_minutes * 60,
        )
        record = jsonable(result)
        record["manifest"] = _write_manifest(ctx, ds.name, "copied", result.target_manifest)
        record.pop("target_manifest", None)
        record["mode"] = self.mode
        record["lag"] = jsonable(lag)
        record["lag_s"] = lag.lag_s
        record["passed"] = bool(result.passed and lag.passed)
        record["reasons"] = list(result.reasons) + list(lag.reasons)
        log.info("%s", lag.reasons[0])
        return record


class ScheduledVerifyOperator(VerifyDatasetOperator):
    """Read-back + Great Expectations after a scheduled sync; advances the verified manifest."""

    ui_color = "#fff4d6"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(mode="scheduled-sync", **kwargs)

    def make_context(self, context: Any) -> WaveRunContext:
        return _context(self.wave_spec, context)


def build_sync_dag(spec_path: str | Path) -> DAG | None:
    """The scheduled sync DAG of one wave spec file, or None when the wave has no mutable dataset."""
    spec_path = str(Path(spec_path).resolve())
    spec = load_wave(spec_path)
    names = mutable_datasets(spec)
    if not names:
        return None
    every = sync_interval(spec)
    with DAG(
        dag_id=sync_dag_id(spec.wave),
        description=f"Incremental sync of wave {spec.wave}'s mutable datasets every {every} (RPO/2)",
        schedule=every,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["migration-wave", "dataset-sync", f"wave:{spec.wave}"],
        default_args={"owner": spec.owners.launch, "retries": 0},
        doc_md=f"Scheduled sync of wave **{spec.wave}** from `{Path(spec_path).name}`: "
        f"{', '.join(names)} every {every} (RPO {spec.targets.rpo_minutes:g} min). Skips itself once "
        "the wave is accepted, while writes are frozen for cutover, and until the wave run seeded.",
    ) as dag:
        gate = SyncGateOperator(task_id="gate", wave_spec=spec_path)
        for name in names:
            with TaskGroup(name):
                sync = ScheduledSyncOperator(task_id="sync", subject=name, wave_spec=spec_path)
                verify = ScheduledVerifyOperator(task_id="verify", subject=name, wave_spec=spec_path)
                gate >> sync >> verify
    return dag


def load_sync_dags(target: dict[str, Any], specs_dir: str | Path | None = None) -> list[str]:
    """One sync DAG per wave spec with mutable datasets into ``target``; bad specs as load_waves."""
    return load_dags_per_spec(target, build_sync_dag, specs_dir, what="dataset sync")
