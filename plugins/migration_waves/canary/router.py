"""Traffic routers the canary steers: a protocol, the demo router's HTTP admin client, and rollback."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import httpx
from pydantic import BaseModel


class RouterError(RuntimeError):
    """The router could not be read or changed."""


@runtime_checkable
class Router(Protocol):
    """Something that splits traffic between baseline and candidate by a candidate percentage."""

    def get_candidate_weight(self) -> int: ...

    def set_candidate_weight(self, pct: int) -> int: ...


class LocalRouter:
    """Client of the demo router's admin API (`GET/PUT /admin/weights`), with retries and checks."""

    def __init__(
        self, admin_url: str, *, timeout_s: float = 5.0, tries: int = 3, backoff_s: float = 0.2
    ) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.timeout_s = timeout_s
        self.tries = max(1, tries)
        self.backoff_s = backoff_s

    def __repr__(self) -> str:
        return f"LocalRouter({self.admin_url})"

    def _request(self, method: str, json: dict[str, int] | None = None) -> dict[str, int]:
        url = f"{self.admin_url}/admin/weights"
        last = ""
        for attempt in range(1, self.tries + 1):
            try:
                resp = httpx.request(method, url, json=json, timeout=self.timeout_s)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 500:
                    if resp.status_code != 200:  # a client error will not fix itself: no retry
                        raise RouterError(
                            f"router {url} refused {method}: {resp.status_code} {resp.text[:200]}"
                        )
                    return self._check_weights(url, resp)
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            if attempt < self.tries:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))  # 0.2 s, 0.4 s, ...
        raise RouterError(f"router {url}: {method} failed after {self.tries} tries; last error: {last}")

    @staticmethod
    def _check_weights(url: str, resp: httpx.Response) -> dict[str, int]:
        try:
            body = resp.json()
            cand, base = body["candidate"], body["baseline"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RouterError(f"router {url} answered without weights: {resp.text[:200]}") from exc
        if not (isinstance(cand, int) and isinstance(base, int) and 0 <= cand <= 100 and cand + base == 100):
            raise RouterError(
                f"router {url} reports inconsistent weights {body}; expected two 0..100 summing to 100"
            )
        return {"candidate": cand, "baseline": base}

    def get_candidate_weight(self) -> int:
        """The candidate's share of traffic, in percent."""
        return self._request("GET")["candidate"]

    def set_candidate_weight(self, pct: int) -> int:
        """Set the candidate's share (0..100); returns the share the router confirms."""
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise ValueError(f"{self!r}: candidate weight must be an integer 0..100, got {pct!r}")
        confirmed = self._request("PUT", {"candidate": pct})["candidate"]
        if confirmed != pct:
            raise RouterError(f"{self!r}: asked for candidate {pct}%, router reports {confirmed}%")
        return confirmed


class RollbackRecord(BaseModel):
    """Evidence of a traffic rollback to the baseline."""

    router: str
    before_pct: int
    after_pct: int
    changed: bool
    duration_s: float
    at: float  # epoch seconds
    passed: bool
    reasons: list[str]


def restore_baseline(router: Router) -> RollbackRecord:
    """Send all traffic back to the baseline. Idempotent: no change when the candidate is already at 0%."""
    started = time.perf_counter()
    at = time.time()
    before = router.get_candidate_weight()
    if before != 0:
        router.set_candidate_weight(0)
    # Read back rather than trust the write: the record is evidence.
    after = router.get_candidate_weight()
    duration = time.perf_counter() - started
    passed = after == 0
    if before == 0:
        reason = f"{router!r}: candidate already at 0%, nothing to change"
    elif passed:
        reason = f"{router!r}: candidate traffic {before}% -> 0% in {duration * 1000:.0f} ms"
    else:
        reason = f"{router!r}: rollback failed: candidate still at {after}% after asking for 0%"
    return RollbackRecord(
        router=repr(router),
        before_pct=before,
        after_pct=after,
        changed=before != after,
        duration_s=duration,
        at=at,
        passed=passed,
        reasons=[reason],
    )
