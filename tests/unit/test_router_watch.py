"""WatchedRouter keeps the last known split, and states it when the router stops answering."""

from __future__ import annotations

import re
from typing import Any

import pytest

from migration_waves.canary.router import RouterError
from migration_waves.canary.router_watch import WatchedRouter, describe_unknown

pytestmark = pytest.mark.unit


class FlakyRouter:
    """An in-memory router that can be switched off (a stand-in for a lost admin API)."""

    def __init__(self) -> None:
        self.pct, self.up = 0, True

    def __repr__(self) -> str:
        return "FlakyRouter"

    def _check(self) -> None:
        if not self.up:
            raise RouterError("FlakyRouter: connection refused")

    def get_candidate_weight(self) -> int:
        self._check()
        return self.pct

    def set_candidate_weight(self, pct: int) -> int:
        self._check()
        self.pct = pct
        return pct


def test_state_survives_into_a_new_watcher_and_states_the_split() -> None:
    inner, saved = FlakyRouter(), []
    watched = WatchedRouter(inner, on_change=saved.append)
    assert watched.set_candidate_weight(25) == 25
    assert (
        watched.split_statement()
        == "traffic split left: candidate 25% / baseline 75% (read from FlakyRouter)"
    )
    inner.up = False
    with pytest.raises(RouterError):
        watched.get_candidate_weight()
    first = saved[-1]["unreachable_since"]
    # A later task (abort, rollback) starts from the persisted state; the first failure time stays.
    later = WatchedRouter(inner, state=saved[-1], on_change=saved.append)
    with pytest.raises(RouterError):
        later.set_candidate_weight(0)
    text = later.split_statement()
    assert saved[-1]["unreachable_since"] == first
    assert re.fullmatch(
        r"traffic split unknown: router unreachable since \S+Z, last set to 25% candidate \(at \S+Z\), "
        r"then asked for 0% unconfirmed",
        text,
    ), text
    inner.up = True
    assert later.get_candidate_weight() == 25 and later.state["unreachable_since"] is None


def test_never_set() -> None:
    state: dict[str, Any] = {"unreachable_since": 0.0}
    assert describe_unknown(state) == "traffic split unknown: router unreachable, never set by this run"
    assert describe_unknown({"unreachable_since": 1.0}).endswith(
        "since 1970-01-01T00:00:01Z, never set by this run"
    )
