"""The Airflow plugin of migration-waves: macros, the "Migration waves" view (an app behind Airflow
login, in the UI's nav) and the extra links of wave tasks.

Operators are not registered here: DAGs import them from the installed `migration_waves` package.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from migration_waves.airflow.links import DataDocsLink, WaveReportLink
from migration_waves.airflow.ui.app import URL_PREFIX
from migration_waves.airflow.ui.app import app as waves_app


def wave_run_dir(state_root: str, wave: str, run_id: str) -> str:
    """Folder of a wave run's evidence pack, for templated fields.

    Use as {{ macros.migration_waves.wave_run_dir(state_root, wave, run_id) }}.
    """
    from migration_waves.evidence.store import EvidenceStore

    return EvidenceStore(state_root, wave, run_id).run_dir


class MigrationWavesPlugin(AirflowPlugin):
    name = "migration_waves"
    # AirflowPlugin declares these as class lists.
    macros = [wave_run_dir]  # noqa: RUF012
    fastapi_apps = [{"app": waves_app, "url_prefix": URL_PREFIX, "name": "Migration waves"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Migration waves",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "migration-waves",
        }
    ]
    operator_extra_links = [WaveReportLink(), DataDocsLink()]  # noqa: RUF012
