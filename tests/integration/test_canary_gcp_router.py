"""GCP URL map router against a loopback HTTP server serving Compute API responses from fixtures.

No emulator exists for the Compute API and no Google Cloud account can be used here, so the API is a
small real HTTP server on 127.0.0.1 that answers with the JSON fixtures in tests/fixtures/gcp/ (shaped
exactly like the documented urlMaps / Operation / error resources, not captured from a live project:
see each fixture's `source`). The server keeps the URL map's state, applies PATCH bodies with the
API's semantics (named top-level fields replaced, fingerprint checked, a new fingerprint after each
write, a RUNNING operation finished by operations.wait) and validates every PATCH body. The router
talks to it over real HTTP through google-auth's AuthorizedSession with anonymous credentials.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from migration_waves.canary.cloud_router import router_from_spec
from migration_waves.canary.gcp_router import GcpUrlMapRouter
from migration_waves.canary.router import RouterError, restore_baseline
from migration_waves.spec.models import RouterSpec

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gcp"
PROJECT = "mw-demo"
BS = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/backendServices"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())["response"]


class ComputeApi:
    """State and checks of the fake Compute API (urlMaps get/patch, globalOperations wait)."""

    def __init__(self) -> None:
        self.maps = {m["name"]: m for m in (fixture("urlmap_default_route"), fixture("urlmap_path_matcher"))}
        self.patches: list[dict[str, Any]] = []
        self.conflicts = 0  # concurrent edits to simulate just before the next PATCHes
        self.fail_operation = False
        self.problems: list[str] = []  # PATCH bodies the real API would reject
        self._n = 0

    def check_body(self, um: dict[str, Any], body: dict[str, Any]) -> None:
        allowed = {"fingerprint", "defaultRouteAction", "pathMatchers"}
        if set(body) - allowed:
            self.problems.append(f"unexpected fields {sorted(set(body) - allowed)}")
        actions = [body.get("defaultRouteAction")] + [
            pm.get("defaultRouteAction") for pm in body.get("pathMatchers") or []
        ]
        for action in filter(None, actions):
            for e in action.get("weightedBackendServices") or []:
                w = e.get("weight")
                if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= 1000:
                    self.problems.append(f"weight {w!r} is not an integer 0..1000")
            ws = [e.get("weight") for e in action.get("weightedBackendServices") or []]
            if ws and sum(ws) == 0:
                self.problems.append("all weights 0")
        if "pathMatchers" in body and len(body["pathMatchers"]) != len(um.get("pathMatchers") or []):
            self.problems.append("PATCH would drop path matchers")

    def patch(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        um = self.maps[name]
        self.patches.append(copy.deepcopy(body))
        if self.conflicts:
            self.conflicts -= 1
            self._n += 1
            um["fingerprint"] = f"concurrent-{self._n}="  # someone else wrote in between
        if body.get("fingerprint") != um["fingerprint"]:
            return 412, fixture("error_412_fingerprint")
        self.check_body(um, body)
        if self.fail_operation:
            return 200, fixture("operation_failed")
        for key, value in body.items():
            if key != "fingerprint":
                um[key] = value
        self._n += 1
        um["fingerprint"] = f"fp-{self._n}="
        return 200, fixture("operation_running")


@pytest.fixture
def api() -> Iterator[tuple[ComputeApi, str]]:
    state = ComputeApi()
    prefix = f"/compute/v1/projects/{PROJECT}/global/"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=UTF-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _target(self) -> tuple[str, str]:
            assert self.path.startswith(prefix), self.path
            kind, _, name = self.path[len(prefix) :].partition("/")
            return kind, name

        def do_GET(self) -> None:
            kind, name = self._target()
            if kind == "urlMaps" and name in state.maps:
                self._send(200, state.maps[name])
            else:
                self._send(404, fixture("error_404"))

        def do_PATCH(self) -> None:
            kind, name = self._target()
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if kind != "urlMaps" or name not in state.maps:
                self._send(404, fixture("error_404"))
                return
            self._send(*state.patch(name, body))

        def do_POST(self) -> None:
            kind, rest = self._target()
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if kind == "operations" and rest.endswith("/wait"):
                self._send(200, fixture("operation_done"))
            else:
                self._send(404, fixture("error_404"))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _router(url: str, url_map: str = "inference-lb", **kwargs: Any) -> GcpUrlMapRouter:
    from google.auth.credentials import AnonymousCredentials

    kwargs.setdefault("baseline", f"{BS}/onprem-neg")
    kwargs.setdefault("candidate", f"{BS}/cloud-run-neg")
    return GcpUrlMapRouter(
        PROJECT, url_map, kwargs.pop("baseline"), kwargs.pop("candidate"),
        credentials=AnonymousCredentials(), api_endpoint=url, **kwargs,
    )  # fmt: skip


def test_steps_write_weights_keep_the_route_and_are_idempotent(api: tuple[ComputeApi, str]) -> None:
    state, url = api
    router = _router(url)
    assert router.get_candidate_weight() == 0
    assert router.set_candidate_weight(25) == 25
    body = state.patches[-1]
    assert body["fingerprint"] == "q0Ksd1z8bF4="  # the fingerprint of the read, as the lock
    action = body["defaultRouteAction"]
    assert [e["weight"] for e in action["weightedBackendServices"]] == [75, 25]
    # Everything else in the route action survives the write (PATCH replaces the whole field).
    assert action["retryPolicy"] == {"retryConditions": ["5xx"], "numRetries": 1}
    assert action["weightedBackendServices"][1]["headerAction"]["requestHeadersToAdd"][0]["headerValue"] == (
        "candidate"
    )
    assert state.maps["inference-lb"]["fingerprint"] == "fp-1="
    writes = len(state.patches)
    assert router.set_candidate_weight(25) == 25
    assert len(state.patches) == writes  # unchanged: no write
    rec = restore_baseline(router)
    assert (rec.before_pct, rec.after_pct, rec.passed, rec.changed) == (25, 0, True, True)
    stored = state.maps["inference-lb"]["defaultRouteAction"]["weightedBackendServices"]
    assert [e["weight"] for e in stored] == [100, 0]
    again = restore_baseline(router)
    assert not again.changed and len(state.patches) == writes + 1
    assert state.problems == []


def test_path_matcher_by_backend_names(api: tuple[ComputeApi, str]) -> None:
    state, url = api
    router = _router(
        url, "shared-lb", baseline="onprem-neg", candidate="cloud-run-neg", path_matcher="inference"
    )
    assert router.get_candidate_weight() == 10
    assert router.set_candidate_weight(50) == 50
    body = state.patches[-1]
    assert [pm["name"] for pm in body["pathMatchers"]] == ["web", "inference"]  # the other matcher kept
    assert body["pathMatchers"][0] == fixture("urlmap_path_matcher")["pathMatchers"][0]
    assert state.maps["shared-lb"]["defaultService"].endswith("/static-site")
    assert router.set_candidate_weight(100) == 100
    assert state.problems == []


def test_fingerprint_conflict_rereads_and_retries_once(api: tuple[ComputeApi, str]) -> None:
    state, url = api
    router = _router(url)
    state.conflicts = 1
    assert router.set_candidate_weight(5) == 5
    assert [p["fingerprint"] for p in state.patches] == ["q0Ksd1z8bF4=", "concurrent-1="]
    state.conflicts = 2
    with pytest.raises(RouterError, match="fingerprint changed again"):
        router.set_candidate_weight(50)
    assert router.get_candidate_weight() == 5  # nothing half-written


def test_preconditions_refuse_before_any_write(api: tuple[ComputeApi, str]) -> None:
    state, url = api
    foreign = state.maps["inference-lb"]["defaultRouteAction"]["weightedBackendServices"]
    foreign.append({"backendService": f"{BS}/shadow", "weight": 1})
    with pytest.raises(RouterError, match=r"also sends traffic to .*shadow.*would drop"):
        _router(url).set_candidate_weight(25)
    del foreign[1:]
    with pytest.raises(RouterError, match=r"candidate .*cloud-run-neg.* missing"):
        _router(url).set_candidate_weight(25)
    with pytest.raises(RouterError, match="no path matcher 'nope'"):
        _router(url, "shared-lb", path_matcher="nope").get_candidate_weight()
    with pytest.raises(RouterError, match=r"no defaultRouteAction.*static-site"):
        _router(url, "shared-lb", path_matcher="web").get_candidate_weight()
    with pytest.raises(RouterError, match=r"HTTP 404.*was not found"):
        _router(url, "nope").get_candidate_weight()
    for bad in (-1, 101, 2.5, True):
        with pytest.raises(ValueError, match=r"integer 0\.\.100"):
            _router(url).set_candidate_weight(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the same"):
        _router(url, baseline="onprem-neg", candidate=f"{BS}/onprem-neg")
    assert state.patches == []


def test_failed_operation_and_unreachable_api(api: tuple[ComputeApi, str]) -> None:
    state, url = api
    state.fail_operation = True
    with pytest.raises(RouterError, match="RESOURCE_NOT_READY"):
        _router(url).set_candidate_weight(25)
    with pytest.raises(RouterError, match="cannot read the URL map: ConnectionError"):
        _router("http://127.0.0.1:9", timeout_s=2).get_candidate_weight()


def test_spec_kind_builds_the_router(api: tuple[ComputeApi, str]) -> None:
    _, url = api
    from google.auth.credentials import AnonymousCredentials

    spec = RouterSpec(
        kind="gcp_urlmap", admin="http://lb.example.test", project=PROJECT, url_map="inference-lb",
        baseline_backend_service="onprem-neg", candidate_backend_service="cloud-run-neg", endpoint_url=url,
    )  # fmt: skip
    router = router_from_spec(spec, credentials=AnonymousCredentials())
    assert isinstance(router, GcpUrlMapRouter) and router.get_candidate_weight() == 0
    with pytest.raises(ValueError, match="gcp_urlmap needs url_map, candidate_backend_service"):
        RouterSpec(kind="gcp_urlmap", admin="http://x.test", project=PROJECT, baseline_backend_service="a")


def test_airflow_connection_credentials_drive_the_router(
    api: tuple[ComputeApi, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """conn_id: credentials come from the google provider's GoogleBaseHook (a generated service-account
    key in an env-var connection); the token exchange is the only thing not exercised (no account)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2.service_account import Credentials

    from migration_waves.airflow.gcp import router_credentials_for

    state, url = api
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = {
        "type": "service_account", "project_id": PROJECT, "private_key_id": "k1", "private_key": pem.decode(),
        "client_email": f"canary@{PROJECT}.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }  # fmt: skip
    conn = {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": json.dumps(key)}}
    monkeypatch.setenv("AIRFLOW_CONN_CANARY_GCP", json.dumps(conn))
    spec = RouterSpec(
        kind="gcp_urlmap", admin="http://lb.example.test", project=PROJECT, url_map="inference-lb",
        baseline_backend_service="onprem-neg", candidate_backend_service="cloud-run-neg",
        endpoint_url=url, conn_id="canary_gcp",
    )  # fmt: skip
    creds = router_credentials_for(spec)
    assert isinstance(creds, Credentials) and creds.service_account_email == key["client_email"]
    assert router_credentials_for(spec.model_copy(update={"conn_id": None})) is None
    router = router_from_spec(spec, credentials=creds)
    assert router._credentials is creds and state.patches == []
