"""docker-compose.yaml cannot run here (no Docker engine): check its structure instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit


def test_compose_has_the_deployment_shape(project_root: Path) -> None:
    compose = yaml.safe_load((project_root / "docker-compose.yaml").read_text())
    services = compose["services"]
    for name in (
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "worker-default",
        "worker-onprem",
        "worker-cloud-gpu",
        "seaweedfs",
    ):
        assert name in services, name
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    queues = {n: s["command"][s["command"].index("--queues") + 1] for n, s in services.items()
              if "--queues" in s.get("command", [])}  # fmt: skip
    assert set(queues.values()) == {"default", "onprem", "cloud_gpu"}
    gpu = services["worker-cloud-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    mounts = {v.split(":")[1] for v in services["worker-onprem"]["volumes"]}
    assert {f"/opt/migration-waves/{d}" for d in ("dags", "plugins", "include")} <= mounts
