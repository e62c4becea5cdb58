"""The wave planner DAG: triggered from the UI, it turns the workload inventory into draft wave specs."""

from migration_waves.airflow.planner_dag import build_planner_dag

dag = build_planner_dag()
