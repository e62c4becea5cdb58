"""The Airflow plugin of migration-waves: macros (UI views and listeners join in later issues).

Operators are not registered here: DAGs import them from the installed `migration_waves` package.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


def wave_run_dir(state_root: str, wave: str, run_id: str) -> str:
    """Folder of a wave run's evidence pack, for templated fields.

    Use as {{ macros.migration_waves.wave_run_dir(state_root, wave, run_id) }}.
    """
    from migration_waves.evidence.store import EvidenceStore

    return EvidenceStore(state_root, wave, run_id).run_dir


class MigrationWavesPlugin(AirflowPlugin):
    name = "migration_waves"
    macros = [wave_run_dir]  # noqa: RUF012 - AirflowPlugin declares these as class lists
