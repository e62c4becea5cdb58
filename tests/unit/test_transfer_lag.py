"""Replication lag of a sync plan against the RPO (transfer/lag.py)."""

from __future__ import annotations

import pytest

from migration_waves.transfer.engine import PlanItem
from migration_waves.transfer.lag import measure_lag

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0


def _item(path: str, action: str, reason: str, age: float) -> PlanItem:
    return PlanItem(path=path, action=action, reason=reason, size=10, mtime=T0 - age)  # type: ignore[arg-type]


def test_lag_is_oldest_pending_change_plus_sync_time() -> None:
    plan = [
        _item("a", "copy", "mtime newer", 300),
        _item("b", "copy", "new", 20),
        _item("c", "skip", "same size and mtime", 9999),
        _item("d", "delete", "not in source", 9999),
    ]
    lag = measure_lag(plan, dataset="features", started=T0, finished=T0 + 5, rpo_s=900)
    assert (lag.pending_files, lag.pending_bytes, lag.pending_deletes) == (2, 20, 1)
    assert (lag.oldest_pending_age_s, lag.newest_pending_age_s, lag.sync_s, lag.lag_s) == (300, 20, 5, 305)
    assert lag.passed and "within the RPO 900s" in lag.reasons[0]


def test_lag_over_rpo_fails_and_says_what_to_do() -> None:
    lag = measure_lag(
        [_item("a", "copy", "size differs", 890).model_dump()],
        dataset="features",
        started=T0,
        finished=T0 + 11,
        rpo_s=900,
    )
    assert lag.lag_s == 901 and not lag.passed
    assert "features" in lag.reasons[0] and "exceeds the RPO 900s" in lag.reasons[0]
    assert "rpo_minutes" in lag.reasons[0]


def test_nothing_pending_is_zero_lag_and_untimed_reasons_do_not_age() -> None:
    idle = measure_lag([_item("c", "skip", "same size and mtime", 5000)], dataset="f", started=T0,
                       finished=T0 + 2, rpo_s=60)  # fmt: skip
    assert idle.lag_s == 0 and idle.passed and idle.pending_files == 0
    # a restored older version or a re-send after failed verification: pending, but its mtime is no age
    old = measure_lag(
        [_item("r", "copy", "mtime differs", 10**6), _item("v", "copy", "failed verification", 10**6)],
        dataset="f",
        started=T0,
        finished=T0 + 2,
        rpo_s=60,
    )
    assert old.pending_files == 2 and old.oldest_pending_age_s == 0 and old.lag_s == 2 and old.passed
    # a source clock ahead of the worker never gives a negative age
    ahead = measure_lag([_item("f", "copy", "new", -30)], dataset="f", started=T0, finished=T0 + 1, rpo_s=60)
    assert ahead.oldest_pending_age_s == 0 and ahead.lag_s == 1
