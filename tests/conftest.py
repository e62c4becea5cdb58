"""Test session setup: an isolated Airflow home, an isolated transfer state store, the marker rule.

The Airflow settings are environment variables set here, before anything imports airflow, so
the tests never touch a developer's `.airflow/` (nor their default migration-waves state).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mw-airflow-home-"))

os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ["MIGRATION_WAVES_STRICT"] = "1"
# transfer runs without --state keep their journals here, never in ~/.local/state/migration-waves
os.environ["MIGRATION_WAVES_STATE"] = tempfile.mkdtemp(prefix="mw-transfer-state-")

MARKERS = {"unit", "dags", "integration", "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries exactly one layer marker; a test without one fails collection."""
    unmarked = [item.nodeid for item in items if not MARKERS & {m.name for m in item.iter_markers()}]
    if unmarked:
        raise pytest.UsageError(
            f"tests without a layer marker ({', '.join(sorted(MARKERS))}): {unmarked[:10]}"
        )


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the session's Airflow home (about 15 s, once)."""
    import subprocess
    import sys

    db = _AIRFLOW_HOME / "airflow.db"
    if not db.exists():
        airflow = Path(sys.executable).parent / "airflow"
        proc = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return db
