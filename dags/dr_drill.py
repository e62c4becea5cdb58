"""One monthly DR drill DAG per wave spec in include/waves/ (or $MIGRATION_WAVES_SPECS)."""

from migration_waves.airflow.dr_dag import load_dr_dags

load_dr_dags(globals())
