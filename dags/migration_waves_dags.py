"""One DAG per wave spec in include/waves/ (or $MIGRATION_WAVES_SPECS)."""

from migration_waves.airflow.dag_factory import load_waves

load_waves(globals())
