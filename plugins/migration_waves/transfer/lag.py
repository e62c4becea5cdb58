"""Replication lag of one incremental sync, judged against the wave's RPO.

The plan of a sync lists every source change not yet at the target when the sync started (the
copy items, with the source mtime seen at listing time). What the RPO bounds is the data a
source loss would take with it, so the lag is measured from the OLDEST pending change: it was
exposed from its mtime until this sync placed it,

    lag_s = (sync start - oldest pending mtime) + time the sync took.

The age of the newest pending change is recorded as well (how fresh the pending work is). A sync
that found nothing pending has lag 0: the target already held the source when it started.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from migration_waves.transfer.engine import PlanItem

# Plan reasons that are source changes with a meaningful mtime. "mtime differs" (an older
# version restored at the source) and "failed verification" (a bad target file) are pending too,
# but their mtime says nothing about when the change happened: they count, their age does not.
TIMED_REASONS = frozenset({"new", "size differs", "mtime newer"})


class LagReport(BaseModel):
    """How far the target trailed the source at one sync, and whether that is within the RPO."""

    dataset: str
    started_at: datetime
    pending_files: int = Field(description="files the source had changed and the target lacked at start")
    pending_bytes: int = 0
    pending_deletes: int = Field(default=0, description="target files gone from the source at start")
    oldest_pending_age_s: float = Field(description="age of the oldest pending change at start (0: none)")
    newest_pending_age_s: float = Field(description="age of the newest pending change at start (0: none)")
    sync_s: float = Field(description="how long the sync took")
    lag_s: float = Field(description="oldest pending age + sync time; 0 when nothing was pending")
    rpo_s: float
    passed: bool
    reasons: list[str] = Field(default_factory=list)


def measure_lag(
    plan: Iterable[PlanItem | dict[str, object]],
    *,
    dataset: str,
    started: float,
    finished: float,
    rpo_s: float,
) -> LagReport:
    """Judge one sync's plan (items or their dicts) run from `started` to `finished` (epoch s)."""
    items = [p if isinstance(p, PlanItem) else PlanItem.model_validate(p) for p in plan]
    copies = [i for i in items if i.action == "copy"]
    ages = [max(0.0, started - i.mtime) for i in copies if i.reason in TIMED_REASONS and i.mtime is not None]
    sync_s = max(0.0, finished - started)
    oldest = max(ages, default=0.0)
    lag = round(oldest + sync_s, 3) if copies else 0.0
    report = LagReport(
        dataset=dataset,
        started_at=datetime.fromtimestamp(started, UTC),
        pending_files=len(copies),
        pending_bytes=sum(i.size for i in copies),
        pending_deletes=sum(1 for i in items if i.action == "delete"),
        oldest_pending_age_s=round(oldest, 3),
        newest_pending_age_s=round(min(ages, default=0.0), 3),
        sync_s=round(sync_s, 3),
        lag_s=lag,
        rpo_s=rpo_s,
        passed=lag <= rpo_s,
    )
    if report.passed:
        report.reasons.append(
            f"dataset {dataset}: replication lag {lag:.1f}s is within the RPO {rpo_s:.0f}s "
            f"({len(copies)} pending files, sync took {sync_s:.1f}s)"
        )
    else:
        report.reasons.append(
            f"dataset {dataset}: replication lag {lag:.1f}s exceeds the RPO {rpo_s:.0f}s: the oldest of "
            f"{len(copies)} pending changes was {oldest:.1f}s old when the sync started and the sync took "
            f"{sync_s:.1f}s; sync more often (the schedule is RPO/2), make sure the dataset_sync DAG is "
            "unpaused and its runs are not queued behind others, or raise targets.rpo_minutes"
        )
    return report
