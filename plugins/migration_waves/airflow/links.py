"""Extra links of wave tasks: the run's wave report and a dataset's Great Expectations Data Docs.

Both point at the "Migration waves" view (`ui/app.py`), which serves the evidence pack behind the
Airflow login, so a link works wherever the state root lives (local disk or an object store).
Airflow computes a link when the task finishes and keeps it as XCom.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

# The mount point of the view (ui.app.URL_PREFIX); not imported from there, to keep DAG parsing light.
URL_PREFIX = "/migration-waves"


def _base_url() -> str:
    """The Airflow UI's base URL ([api] base_url) without the trailing '/'; '' means same host."""
    from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or "").rstrip("/")


def run_file_url(wave: str, run_id: str, relpath: str, *, base: str | None = None) -> str:
    """URL of a file of a run's evidence pack in the Migration waves view."""
    from migration_waves.evidence.store import safe_run_id

    root = _base_url() if base is None else base.rstrip("/")
    return f"{root}{URL_PREFIX}/runs/{wave}/{safe_run_id(run_id)}/files/{relpath.lstrip('/')}"


def _wave_of(operator: Any) -> str:
    from migration_waves.spec.loader import load_wave

    return load_wave(operator.wave_spec).wave


class WaveReportLink(BaseOperatorLink):
    """The wave report (report.html) of the run this task belongs to."""

    name = "Wave report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return run_file_url(_wave_of(operator), str(ti_key.run_id), "report.html")


class DataDocsLink(BaseOperatorLink):
    """Great Expectations Data Docs of the dataset a verify task validated."""

    name = "Data Docs"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        subject = getattr(operator, "subject", None)
        if not subject:
            return ""
        return run_file_url(_wave_of(operator), str(ti_key.run_id), f"data-docs/{subject}/index.html")
