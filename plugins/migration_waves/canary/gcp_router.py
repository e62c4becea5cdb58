"""Google Cloud load-balancing router: weighted backend services of a global URL map.

The canary's split lives in `weightedBackendServices` of the URL map's `defaultRouteAction` (or, with
`path_matcher`, of that path matcher's `defaultRouteAction`). The Compute REST API is called directly
(GET / PATCH projects/{project}/global/urlMaps/{name}) over an authorized requests session, so the
endpoint can be pointed elsewhere (tests) and no extra client library is needed. Guarantees as the
AWS routers: preconditions before a write (both backend services present, no other backend a write
would drop), weights always (100 - pct, pct) so both are never 0, no write when nothing changes,
the urlMap's `fingerprint` as optimistic lock (a 412 re-reads and retries once), the operation
waited for, and every write read back.
"""

from __future__ import annotations

import time
from typing import Any

from migration_waves.canary.cloud_router import _percent, guard_weights
from migration_waves.canary.router import RouterError

COMPUTE_API = "https://compute.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/compute"


def _same_backend(link: str, ref: str) -> bool:
    """A backendService self-link matches a name or a self-link (any host / API version prefix)."""
    link, ref = link.rstrip("/"), ref.rstrip("/")
    if "/" not in link or "/" not in ref:
        return link.rsplit("/", 1)[-1] == ref.rsplit("/", 1)[-1] and "/backendBuckets/" not in link + ref
    return link[link.find("projects/") :] == ref[ref.find("projects/") :]


class GcpUrlMapRouter:
    """Baseline vs candidate backend service weights in a global URL map's route action."""

    def __init__(
        self,
        project: str,
        url_map: str,
        baseline_backend_service: str,
        candidate_backend_service: str,
        *,
        path_matcher: str | None = None,
        credentials: Any = None,
        session: Any = None,
        api_endpoint: str | None = None,
        timeout_s: float = 30.0,
        operation_timeout_s: float = 300.0,
    ) -> None:
        if _same_backend(baseline_backend_service, candidate_backend_service):
            raise ValueError(
                f"URL map {url_map}: baseline and candidate backend services are the same "
                f"({baseline_backend_service}); name two different backend services"
            )
        self.project, self.url_map, self.path_matcher = project, url_map, path_matcher
        self.sides = {"baseline": baseline_backend_service, "candidate": candidate_backend_service}
        self.api = (api_endpoint or COMPUTE_API).rstrip("/") + f"/compute/v1/projects/{project}/global"
        self.timeout_s, self.operation_timeout_s = timeout_s, operation_timeout_s
        self._session, self._credentials = session, credentials
        self.writes = 0  # PATCH requests sent (evidence and tests)

    def __repr__(self) -> str:
        where = f" pathMatcher {self.path_matcher}" if self.path_matcher else ""
        return f"GcpUrlMapRouter(projects/{self.project}/global/urlMaps/{self.url_map}{where})"

    @property
    def session(self) -> Any:
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            creds = self._credentials
            if creds is None:
                creds, _ = google.auth.default(scopes=[SCOPE])
            self._session = AuthorizedSession(creds)
        return self._session

    def _call(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        import requests

        try:
            return self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise RouterError(f"{self!r}: cannot {what}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _error(resp: Any) -> str:
        try:
            err = resp.json()["error"]
            return f"HTTP {resp.status_code} {err.get('status', '')}: {err.get('message', '')}".strip()
        except (ValueError, KeyError, TypeError):
            return f"HTTP {resp.status_code}: {resp.text[:200]}"

    def url_map_resource(self) -> dict[str, Any]:
        """The urlMaps resource as the API returns it (with its fingerprint)."""
        resp = self._call("GET", f"{self.api}/urlMaps/{self.url_map}", "read the URL map")
        if resp.status_code != 200:
            raise RouterError(f"{self!r}: cannot read the URL map: {self._error(resp)}")
        return dict(resp.json())

    def _entries(self, um: dict[str, Any]) -> list[dict[str, Any]]:
        """The weightedBackendServices list the split lives in (a reference into `um`)."""
        holder: dict[str, Any] = um
        if self.path_matcher:
            matchers = {pm.get("name"): pm for pm in um.get("pathMatchers") or []}
            if self.path_matcher not in matchers:
                raise RouterError(
                    f"{self!r}: no path matcher {self.path_matcher!r}; the URL map has {sorted(matchers)}"
                )
            holder = matchers[self.path_matcher]
        entries = (holder.get("defaultRouteAction") or {}).get("weightedBackendServices")
        if not entries:
            plain = holder.get("defaultService")
            raise RouterError(
                f"{self!r}: the route has no defaultRouteAction.weightedBackendServices"
                + (f" (it sends everything to {plain})" if plain else "")
                + "; configure both backend services there (baseline weight 100, candidate 0) first"
            )
        return list(entries)

    def _side(self, entry: dict[str, Any]) -> str | None:
        link = str(entry.get("backendService", ""))
        return next((s for s, ref in self.sides.items() if _same_backend(link, ref)), None)

    def _weights(self, entries: list[dict[str, Any]]) -> dict[str, int]:
        foreign = sorted(str(e.get("backendService")) for e in entries if self._side(e) is None)
        if foreign:
            raise RouterError(
                f"{self!r}: the route also sends traffic to {foreign}; a canary write would drop them. "
                "Keep only the baseline and candidate backend services in this route"
            )
        weights = {self._side(e): int(e.get("weight", 0)) for e in entries}
        missing = [f"{side} ({ref})" for side, ref in self.sides.items() if side not in weights]
        if missing:
            raise RouterError(
                f"{self!r}: backend service(s) {', '.join(missing)} missing from weightedBackendServices; "
                "add both (baseline weight 100, candidate 0) before the canary"
            )
        return {"baseline": weights["baseline"], "candidate": weights["candidate"]}

    def weights(self) -> dict[str, int]:
        """Current weights {baseline, candidate}; refuses a route with other backend services."""
        return self._weights(self._entries(self.url_map_resource()))

    def get_candidate_weight(self) -> int:
        w = self.weights()
        return _percent(w["baseline"], w["candidate"], repr(self))

    def set_candidate_weight(self, pct: int) -> int:
        wanted = dict(zip(("baseline", "candidate"), guard_weights(pct, repr(self)), strict=True))
        for attempt in (1, 2):
            um = self.url_map_resource()
            entries = self._entries(um)
            if self._weights(entries) == wanted:
                return pct  # idempotent: nothing to write
            for entry in entries:  # in place: headerAction and other per-backend fields stay
                entry["weight"] = wanted[str(self._side(entry))]
            # PATCH replaces lists and top-level fields it names: send the whole route action (or all
            # path matchers), changed only in the two weights, with the fingerprint as the lock.
            key = "pathMatchers" if self.path_matcher else "defaultRouteAction"
            body = {"fingerprint": um.get("fingerprint"), key: um[key]}
            resp = self._call(
                "PATCH", f"{self.api}/urlMaps/{self.url_map}", f"set candidate {pct}%", json=body
            )
            self.writes += 1
            if resp.status_code == 412 and attempt == 1:
                continue  # someone changed the map since our read: re-read, re-check, retry once
            if resp.status_code == 412:
                raise RouterError(
                    f"{self!r}: the URL map's fingerprint changed again while setting candidate {pct}%; "
                    "someone else is editing it, try later"
                )
            if resp.status_code != 200:
                raise RouterError(f"{self!r}: could not set candidate {pct}%: {self._error(resp)}")
            self._wait(resp.json(), pct)
            break
        confirmed = self.get_candidate_weight()
        if confirmed != pct:
            raise RouterError(f"{self!r}: asked for candidate {pct}%, URL map reports {confirmed}%")
        return confirmed

    def _wait(self, op: dict[str, Any], pct: int) -> None:
        """Wait for a global operation (operations.wait long-polls) and raise on its error."""
        deadline = time.monotonic() + self.operation_timeout_s
        while op.get("status") != "DONE":
            if time.monotonic() > deadline:
                raise RouterError(
                    f"{self!r}: operation {op.get('name')} for candidate {pct}% not done after "
                    f"{self.operation_timeout_s:.0f} s"
                )
            resp = self._call("POST", f"{self.api}/operations/{op['name']}/wait", "wait for the operation")
            if resp.status_code != 200:
                raise RouterError(f"{self!r}: waiting for {op.get('name')} failed: {self._error(resp)}")
            op = resp.json()
        errors = (op.get("error") or {}).get("errors") or []
        if errors:
            what = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
            raise RouterError(f"{self!r}: operation {op.get('name')} for candidate {pct}% failed: {what}")
