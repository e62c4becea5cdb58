"""The operator's view wired into every wave DAG: run notifications and task extra links."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.dags

RUN_ID = "manual__2026-12-05T10:00:00+00:00"


@pytest.fixture(scope="module")
def pilot(project_root: Path) -> Any:
    from migration_waves.airflow.dag_factory import build_wave_dag

    return build_wave_dag(project_root / "include" / "waves" / "pilot.yaml")


def test_every_terminal_state_notifies(pilot: Any) -> None:
    from migration_waves.airflow.notify import WaveWebhookNotifier

    ok, bad = pilot.on_success_callback, pilot.on_failure_callback
    assert isinstance(ok, WaveWebhookNotifier) and isinstance(bad, WaveWebhookNotifier)
    assert (ok.state, bad.state, ok.wave) == ("success", "failed", "pilot")


def test_wave_tasks_link_to_the_report_and_verify_tasks_to_data_docs(pilot: Any) -> None:
    key = SimpleNamespace(run_id=RUN_ID)  # get_link reads only run_id of the task instance key
    folder = "manual__2026-12-05T10_00_00_00_00"
    verify = pilot.get_task("data.features.verify")
    links = {link.name: link.get_link(verify, ti_key=key) for link in verify.operator_extra_links}
    assert links == {
        "Wave report": f"/migration-waves/runs/pilot/{folder}/files/report.html",
        "Data Docs": f"/migration-waves/runs/pilot/{folder}/files/data-docs/features/index.html",
    }
    seed = pilot.get_task("data.features.seed")
    assert [link.name for link in seed.operator_extra_links] == ["Wave report"]


def test_links_follow_the_configured_base_url(pilot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/prod/")
    (link,) = pilot.get_task("report").operator_extra_links
    url = link.get_link(pilot.get_task("report"), ti_key=SimpleNamespace(run_id=RUN_ID))
    assert url.startswith("https://airflow.example.com/prod/migration-waves/runs/pilot/")
