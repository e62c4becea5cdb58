"""Remember what a router was last set to and since when it stopped answering, to state the split.

A canary that loses its router mid-step must still say where it left traffic. WatchedRouter wraps any
Router: each answer updates a small state dict (last set %, last read %, first failure time since the
last answer), handed to `on_change` so the caller can persist it (the Airflow layer keeps it in the
run's evidence, so the next task - the abort, the rollback - knows it). `split_statement` reads the
router once more and says either the split it read or what is known when it cannot be read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from migration_waves.canary.router import Router, RouterError


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class WatchedRouter:
    """A Router that records its last known split in `state` (and passes it to on_change)."""

    def __init__(
        self,
        router: Router,
        state: dict[str, Any] | None = None,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.router = router
        self.state: dict[str, Any] = dict(state or {})
        self.on_change = on_change

    def __repr__(self) -> str:
        return repr(self.router)

    def _saw(self, **update: Any) -> None:
        self.state.update(update, unreachable_since=None, last_error=None)
        if self.on_change:
            self.on_change(dict(self.state))

    def _failed(self, exc: Exception) -> None:
        # The first failure after an answer is when the router became unreachable; later ones keep it.
        if not self.state.get("unreachable_since"):
            self.state["unreachable_since"] = time.time()
        self.state["last_error"] = str(exc)[:300]
        if self.on_change:
            self.on_change(dict(self.state))

    def get_candidate_weight(self) -> int:
        try:
            pct = self.router.get_candidate_weight()
        except RouterError as exc:
            self._failed(exc)
            raise
        self._saw(last_read_pct=pct, read_at=time.time())
        return pct

    def set_candidate_weight(self, pct: int) -> int:
        try:
            confirmed = self.router.set_candidate_weight(pct)
        except RouterError as exc:
            self.state["last_asked_pct"] = pct
            self._failed(exc)
            raise
        now = time.time()
        self._saw(last_set_pct=confirmed, set_at=now, last_read_pct=confirmed, read_at=now)
        return confirmed

    def split_statement(self) -> str:
        """'candidate X% / baseline Y%' read now, or what is known when the router cannot be read."""
        try:
            pct = self.get_candidate_weight()
        except RouterError:
            return describe_unknown(self.state)
        return f"traffic split left: candidate {pct}% / baseline {100 - pct}% (read from {self!r})"


def describe_unknown(state: dict[str, Any]) -> str:
    """The split statement when the router cannot be read, from the remembered state."""
    since = state.get("unreachable_since")
    last = state.get("last_set_pct")
    text = "traffic split unknown: router unreachable"
    text += f" since {_iso(since)}" if since else ""
    text += f", last set to {last}%" if last is not None else ", never set by this run"
    if state.get("set_at"):
        text += f" candidate (at {_iso(state['set_at'])})"
    if state.get("last_asked_pct") is not None and state.get("last_asked_pct") != last:
        text += f", then asked for {state['last_asked_pct']}% unconfirmed"
    return text  # the error itself is in the caller's message; state["last_error"] keeps it
