"""migration-waves: hybrid migrations of AI workloads in waves, on Apache Airflow 3."""
