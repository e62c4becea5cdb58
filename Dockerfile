# The image every Airflow component of docker-compose.yaml runs: Airflow 3.3 + this project.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.lock pyproject.toml README.md /opt/migration-waves/
COPY --chown=airflow:root plugins /opt/migration-waves/plugins
RUN pip install --no-cache-dir -r /opt/migration-waves/requirements.lock \
 && pip install --no-cache-dir --no-deps -e /opt/migration-waves
