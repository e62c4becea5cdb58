"""The Migration waves view inside Airflow's real API server app (create_app), with Airflow login.

Nothing is mocked: the app is Airflow's own (plugins loaded from plugins/, SimpleAuthManager,
JWT middleware), users log in through POST /auth/token with the generated passwords, and the view
reads an evidence store written with the project's EvidenceStore and report builder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from waves_view_support import NEW_RUN, OLD_RUN, PROJECT_ROOT, STEPS, seed_pilot, write_specs

pytestmark = pytest.mark.integration

PREFIX = "/migration-waves"


@pytest.fixture(scope="module")
def view(tmp_path_factory: pytest.TempPathFactory, airflow_db: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("waves-view")
    specs = write_specs(root)
    seeded = seed_pilot(specs)
    mp = pytest.MonkeyPatch()
    mp.setenv("MIGRATION_WAVES_SPECS", str(specs))
    mp.delenv("MIGRATION_WAVES_STATE_ROOT", raising=False)
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
    try:
        from airflow.api_fastapi.app import create_app
        from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
        from fastapi.testclient import TestClient

        client = TestClient(create_app())
        passwords = SimpleAuthManager.get_passwords()
        yield {"client": client, "passwords": passwords, **seeded}
    finally:
        mp.undo()


def login(view: dict[str, Any], user: str) -> str:
    """Log in as Airflow's UI does; returns the JWT."""
    r = view["client"].post("/auth/token", json={"username": user, "password": view["passwords"][user]})
    assert r.status_code == 201, r.text
    return str(r.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_plugin_registers_the_app_and_the_nav_view(view: dict[str, Any]) -> None:
    r = view["client"].get("/api/v2/plugins", headers=bearer(login(view, "viewer")))
    plugin = next(p for p in r.json()["plugins"] if p["name"] == "migration_waves")
    assert plugin["fastapi_apps"][0]["url_prefix"] == PREFIX
    nav = plugin["external_views"][0]
    assert (nav["name"], nav["href"], nav["destination"]) == ("Migration waves", f"{PREFIX}/", "nav")


def test_every_route_requires_an_airflow_login(view: dict[str, Any]) -> None:
    client = view["client"]
    folder = view["new_folder"]
    for path in ("/", "/api/waves", "/api/waves/pilot", f"/runs/pilot/{folder}/files/report.html"):
        r = client.get(PREFIX + path, headers={"Accept": "application/json"}, follow_redirects=False)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
    # A browser asking for the page is sent to Airflow's login, and back here afterwards.
    r = client.get(f"{PREFIX}/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303
    assert (
        r.headers["location"].startswith("/auth/login?next=") and "migration-waves" in r.headers["location"]
    )


def test_forged_and_expired_tokens_are_refused(view: dict[str, Any]) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = view["client"]
    good = login(view, "admin")
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode({**claims, "role": "admin"}, "not-the-airflow-secret", algorithm="HS512")
    r = client.get(f"{PREFIX}/api/waves", headers=bearer(forged))
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    expired = get_auth_manager().generate_jwt(
        SimpleAuthManagerUser(username="admin", role="admin"), expiration_time_in_seconds=-3600
    )
    r = client.get(f"{PREFIX}/api/waves", headers=bearer(expired))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert client.get(f"{PREFIX}/api/waves", headers=bearer(good)).status_code == 200


def test_a_user_who_may_not_read_the_dags_sees_no_wave(view: dict[str, Any]) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    # A valid, correctly signed token of a user without a role: Airflow's auth manager denies DAG reads.
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="guest", role=None))
    client = view["client"]
    assert client.get(f"{PREFIX}/api/waves", headers=bearer(token)).json() == []
    assert client.get(f"{PREFIX}/api/waves/pilot", headers=bearer(token)).status_code == 403
    r = client.get(f"{PREFIX}/runs/pilot/{view['new_folder']}/files/report.html", headers=bearer(token))
    assert r.status_code == 403


def test_the_view_is_read_only(view: dict[str, Any]) -> None:
    client, headers = view["client"], bearer(login(view, "admin"))
    before = sorted(p.name for p in Path(view["root"]).rglob("*"))
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in (
            "/",
            "/api/waves",
            "/api/waves/pilot",
            f"/runs/pilot/{view['new_folder']}/files/report.html",
        ):
            r = client.request(method, PREFIX + path, headers=headers)
            assert r.status_code == 405, (method, path, r.status_code)
    assert sorted(p.name for p in Path(view["root"]).rglob("*")) == before


def test_waves_api_shows_waves_in_order_with_the_latest_run(view: dict[str, Any]) -> None:
    started = time.perf_counter()
    r = view["client"].get(f"{PREFIX}/api/waves", headers=bearer(login(view, "viewer")))
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    pilot, early = r.json()
    assert [pilot["wave"], early["wave"]] == ["pilot", "early-adopters"]
    assert pilot["status"] == "accepted" and pilot["accepted_run"] == NEW_RUN
    assert pilot["runs"] == [view["new_folder"], view["old_folder"]]
    assert pilot["cutover_eta"] is None  # accepted: already cut over
    latest = pilot["latest"]
    assert (latest["run_id"], latest["outcome"]) == (NEW_RUN, "SUCCESS")
    stages = {s["stage"]: s for s in latest["stages"]}
    assert stages["data"]["status"] == "passed" and stages["data"]["failed"] == 0
    assert stages["data"]["records"] == 11  # 5 seeds, 5 verifications, 1 sync
    assert stages["canary"]["records"] == 2 * len(STEPS)
    assert stages["rollback"]["status"] == "not run"
    sync = next(lag for lag in latest["lag"] if lag["mode"] == "sync")
    assert (sync["dataset"], sync["lag_s"], sync["rpo_s"], sync["within_rpo"]) == (
        "features",
        0.2,
        900.0,
        True,
    )
    (baseline,) = latest["baselines"]
    assert baseline["baseline_p95_ms"] == 10.1
    assert baseline["post_p95_ms"] == pytest.approx(12.0)  # the cloud side at the 100 % step
    assert baseline["target_p95_ms"] == 250.0
    assert [s["pct"] for s in latest["canary"]] == [float(p) for p in STEPS]
    assert [s["decision"] for s in latest["canary"]][-1] == "promote"
    assert latest["cost"] == {"forecast_usd": "0.00001018", "budget_usd": "50.0", "actual_bytes": 501200}
    assert set(latest["files"]) == {"report.html", "evidence.json", "runbook.md"}
    assert latest["docs"]["features"] == "data-docs/features/index.html"
    # The second wave waits for nothing (pilot is accepted) and has not run: its ETA is its window.
    assert early["status"] == "not started" and early["blocked_by"] == [] and early["cutover_eta"]
    assert elapsed < 5, f"/api/waves took {elapsed:.2f}s"


def test_a_chosen_run_and_unknown_names(view: dict[str, Any]) -> None:
    client, headers = view["client"], bearer(login(view, "viewer"))
    old = client.get(f"{PREFIX}/api/waves/pilot/runs/{view['old_folder']}", headers=headers).json()
    assert (old["run_id"], old["outcome"]) == (OLD_RUN, "ROLLED BACK")
    assert old["canary"][0]["verdict"] == "fail" and old["canary"][0]["aborted"] is True
    assert client.get(f"{PREFIX}/api/waves/pilot/runs/nope", headers=headers).status_code == 404
    assert client.get(f"{PREFIX}/api/waves/wave-x", headers=headers).status_code == 404


def test_page_renders_the_dashboard_with_the_ui_cookie(view: dict[str, Any]) -> None:
    client = view["client"]
    client.cookies.set("_token", login(view, "viewer"))
    try:
        r = client.get(f"{PREFIX}/", headers={"Accept": "text/html"})
    finally:
        client.cookies.clear()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'data-wave="pilot" data-status="accepted"' in html
    assert 'data-wave="early-adopters" data-status="not started"' in html
    assert html.index('id="wave-pilot"') < html.index('id="wave-early-adopters"')
    assert NEW_RUN in html and "SUCCESS" in html
    assert f'href="runs/pilot/{view["new_folder"]}/files/report.html"' in html
    assert f'href="runs/pilot/{view["new_folder"]}/files/data-docs/features/index.html"' in html
    assert "<code>wave_pilot</code>" in html
    assert 'target="' not in html  # the UI's frame allows no popups: links stay in the frame
    assert "signed in as viewer" in html


def test_evidence_pack_files_are_served_and_nothing_else(view: dict[str, Any]) -> None:
    client, headers = view["client"], bearer(login(view, "viewer"))
    base = f"{PREFIX}/runs/pilot/{view['new_folder']}/files"
    r = client.get(f"{base}/report.html", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == view["report_html"].read_bytes()
    evidence = client.get(f"{base}/evidence.json", headers=headers).json()
    assert evidence["run_id"] == NEW_RUN and evidence["outcome"]["label"] == "SUCCESS"
    r = client.get(f"{base}/data-docs/features/index.html", headers=headers)
    assert r.status_code == 200 and "Data Docs of features" in r.text
    # Records, markers and anything outside the run folder are not served.
    for path in (
        "outcome/outcome.json",
        "data-docs/..%2F..%2F..%2Faccepted.json",
        "..%2F..%2F..%2Faccepted.json",
        "data-docs/features",
        "data-docs/.hidden",
    ):
        assert client.get(f"{base}/{path}", headers=headers).status_code == 404, path
    assert (
        client.get(f"{PREFIX}/runs/pilot/..%2F..%2Fwaves/files/report.html", headers=headers).status_code
        == 404
    )
    assert json.loads((view["new_dir"] / "evidence.json").read_text())["run_id"] == NEW_RUN


def test_page_shows_the_latest_plan_heatmap_and_serves_only_its_two_files(view: dict[str, Any]) -> None:
    from migration_waves.planning.output import write_plan

    latest = Path(view["root"]) / "planning" / "latest"  # where the wave_planner DAG copies its newest plan
    plan = write_plan(PROJECT_ROOT / "include" / "inventory" / "workloads.yaml", latest, max_per_wave=3)
    client, token = view["client"], login(view, "viewer")
    client.cookies.set("_token", token)
    try:
        html = client.get(f"{PREFIX}/", headers={"Accept": "text/html"}).text
    finally:
        client.cookies.clear()
    base = "runs/pilot/plan/files/planning/latest"
    assert 'data-testid="wave-plan"' in html and f'<img src="{base}/heatmap.png"' in html
    assert f'href="{base}/heatmap.html">interactive heatmap</a>' in html
    assert f"{len(plan['waves'])} wave(s) proposed" in html
    headers = bearer(token)
    r = client.get(f"{PREFIX}/{base}/heatmap.png", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (latest / "heatmap.png").read_bytes()
    r = client.get(f"{PREFIX}/{base}/heatmap.html", headers=headers)
    assert (
        r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8" and "<svg" in r.text
    )
    # Nothing else of the plan, and the heatmap only through the plan token, not a run folder.
    for path in (
        f"{base}/plan.json",
        f"{base}/waves/pilot.yaml",
        f"runs/pilot/{view['new_folder']}/files/planning/latest/heatmap.png",
        "runs/pilot/plan/files/planning/..%2F..%2Faccepted.json",
        "runs/pilot/plan/files/planning/latest/..%2F..%2Fplanning/latest/heatmap.png",
    ):
        assert client.get(f"{PREFIX}/{path}", headers=headers).status_code == 404, path
