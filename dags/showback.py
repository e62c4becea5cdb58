"""The daily showback DAG: cost per wave, workload and dataset from the evidence store."""

from migration_waves.airflow.showback_dag import build_showback_dag

dag = build_showback_dag()
