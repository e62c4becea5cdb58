"""The only package that imports airflow: operators, branch gates, the DAG factory."""
