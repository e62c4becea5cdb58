"""One scheduled sync DAG (every RPO/2) per wave spec with mutable datasets in include/waves/."""

from migration_waves.airflow.sync_dag import load_sync_dags

load_sync_dags(globals())
