"""A browser logs in to a real `airflow standalone` and opens the Migration waves view.

The standalone runs this project's dags/ and plugins/ in a temporary Airflow home on free ports;
the evidence store it reads is seeded with a rolled-back and an accepted run of the pilot wave.
Headless Chromium is Debian's (/usr/bin/chromium) driven by Playwright. The screenshot is kept in
the test's tmp dir (its path is printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from waves_view_support import NEW_RUN, free_port, seed_pilot, write_specs

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORD = "view-test-password"


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as r:
            body = json.loads(r.read())
    except (OSError, ValueError):
        return False
    return body.get("metadatabase", {}).get("status") == "healthy"


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory, project_root: Path) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (or set CHROMIUM)")
    pytest.importorskip("playwright", reason="install the dev extra: pip install -e '.[dev]'")
    root = tmp_path_factory.mktemp("standalone")
    specs = write_specs(root)
    seeded = seed_pilot(specs)
    home = root / "airflow-home"
    home.mkdir()
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD}))
    port = free_port()
    env = {
        **os.environ,
        # standalone starts its components as `airflow ...` from PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "MIGRATION_WAVES_SPECS": str(specs),
        "MIGRATION_WAVES_STRICT": "0",
    }
    env.pop("MIGRATION_WAVES_STATE_ROOT", None)
    log = (root / "standalone.log").open("wb")
    airflow = Path(sys.executable).parent / "airflow"
    proc = subprocess.Popen(
        [str(airflow), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "standalone.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"airflow standalone did not become healthy on port {port}:\n{tail}")
            time.sleep(2)
        yield {"url": f"http://127.0.0.1:{port}", "root": root, **seeded}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # the scheduler and its workers can outlive `standalone` itself: the whole group goes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


def test_operator_logs_in_and_sees_the_pilot_result(standalone: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url = standalone["url"]
    shot = tmp_path / "migration-waves.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # The view itself sends an anonymous browser to Airflow's login, and back after it.
            page.goto(f"{url}/migration-waves/")
            page.wait_for_url("**/auth/login**", timeout=30_000)
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/migration-waves/", timeout=30_000)
            assert page.locator('section[data-wave="pilot"]').get_attribute("data-status") == "accepted"

            # Inside the Airflow UI: the nav view renders the app in a frame.
            page.goto(f"{url}/plugin/migration-waves")
            frame = page.frame_locator("iframe")
            pilot = frame.locator('section[data-wave="pilot"]')
            pilot.wait_for(timeout=60_000)
            assert pilot.get_attribute("data-status") == "accepted"
            assert frame.locator('section[data-wave="pilot"] [data-testid="run-id"]').inner_text() == NEW_RUN
            assert (
                frame.locator('section[data-wave="pilot"] [data-testid="run-outcome"]').inner_text()
                == "SUCCESS"
            )
            assert (
                frame.locator('section[data-wave="early-adopters"]').get_attribute("data-status")
                == "not started"
            )
            page.wait_for_timeout(500)  # let the frame finish layout before the picture
            page.screenshot(path=str(shot), full_page=True)

            # The report link opens the run's report in the frame, served behind the same login.
            frame.locator('section[data-wave="pilot"] a', has_text="report.html").first.click()
            heading = frame.locator("header.top h1")
            heading.wait_for(timeout=30_000)
            assert heading.inner_text() == "Wave pilot: SUCCESS"
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("MIGRATION_WAVES_SCREENSHOT")
    if keep:  # e.g. for the README: MIGRATION_WAVES_SCREENSHOT=docs/migration-waves.png
        shutil.copyfile(shot, keep)
    print(f"screenshot: {shot}")
