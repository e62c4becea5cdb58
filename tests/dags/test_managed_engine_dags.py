"""A wave with managed-engine datasets renders with the managed copy tasks, still followed by our verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spec_support import wave_spec, write_spec

pytestmark = pytest.mark.dags

TASK = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0"


@pytest.fixture(scope="module")
def dag(tmp_path_factory: pytest.TempPathFactory, project_root: Path) -> Any:
    from migration_waves.airflow.dag_factory import build_wave_dag

    tmp = tmp_path_factory.mktemp("managed-dag")
    spec = wave_spec(
        project_root,
        "managed",
        state=tmp / "state",
        sites={
            "onprem": {"kind": "onprem", "storage": str(tmp / "onprem")},
            "aws": {"kind": "cloud", "storage": "s3://ml-landing", "conn_id": "aws_cloud"},
            "gcp": {"kind": "cloud", "storage": "gs://ml-landing", "conn_id": "gcp_cloud"},
        },
        datasets=[
            {"name": "corpus", "class": "immutable", "source": "onprem:corpus/", "target": "aws:corpus/",
             "engine": "datasync", "engine_options": {"task_arn": TASK}},
            {"name": "features", "class": "mutable", "source": "onprem:features/", "target": "gcp:features/",
             "engine": "storage_transfer", "engine_options": {"project_id": "ml-landing-prod"}},
            {"name": "logs", "class": "telemetry", "source": "onprem:logs/", "target": "aws:logs/"},
        ],
    )  # fmt: skip
    path = write_spec(tmp / "managed.yaml", spec)
    return build_wave_dag(path)


def test_managed_datasets_copy_through_the_managed_operator(dag: Any) -> None:
    from migration_waves.airflow.managed_transfer import ManagedCopyOperator
    from migration_waves.airflow.operators import CopyDatasetOperator, VerifyDatasetOperator

    managed = {t.task_id for t in dag.tasks if isinstance(t, ManagedCopyOperator)}
    assert managed == {
        "data.corpus.seed",
        "data.features.seed",
        "data.features.sync",
        "cutover.features-final-sync",
    }
    native = dag.get_task("data.logs.ingest")
    assert type(native) is CopyDatasetOperator  # exactly the native engine's operator
    for copy_id, verify_id in (
        ("data.corpus.seed", "data.corpus.verify"),
        ("data.features.seed", "data.features.verify"),
        ("data.features.sync", "data.features.verify-sync"),
        ("cutover.features-final-sync", "cutover.features-final-verify"),
    ):
        verify = dag.get_task(verify_id)
        assert type(verify) is VerifyDatasetOperator  # the same read-back as after the native engine
        assert dag.get_task(copy_id).downstream_task_ids & {verify_id} == {verify_id}
    assert dag.get_task("data.corpus.seed").mode == "seed"
    assert dag.get_task("cutover.features-final-sync").mode == "final"
    assert {"data.corpus.snapshot"} <= dag.get_task("data.corpus.seed").upstream_task_ids
