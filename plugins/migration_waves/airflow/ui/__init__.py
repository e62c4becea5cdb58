"""The "Migration waves" view of the Airflow UI: a FastAPI app the plugin mounts, behind Airflow login."""
