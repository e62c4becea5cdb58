"""Managed transfer engines: spec validation and lint, and the pure core (request bodies, manifests).

The Storage Transfer request body is checked against the API's documented schema (the
storagetransfer v1 discovery document shipped with google-api-python-client): no emulator of
the service exists, so that schema is what the body can be held to here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from spec_support import wave_spec, write_spec
from sts_schema_support import assert_matches_schema, schema_problems

from migration_waves.spec.loader import SpecError, lint_paths, load_wave
from migration_waves.spec.models import DataSyncOptions, StorageTransferOptions, TransferEngine, WaveSpec

pytestmark = pytest.mark.unit

TASK = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0"
LOC_A = "arn:aws:datasync:us-east-1:111122223333:location/loc-0123456789abcdef0"
LOC_B = "arn:aws:datasync:us-east-1:111122223333:location/loc-0123456789abcdef1"


def _spec(tmp_path: Path, project_root: Path, datasets: list[dict[str, Any]]) -> Path:
    data = wave_spec(
        project_root,
        "managed",
        state=tmp_path / "state",
        sites={
            "onprem": {"kind": "onprem", "storage": "/srv/onprem"},
            "aws": {"kind": "cloud", "storage": "s3://ml-landing", "conn_id": "aws_cloud"},
            "gcp": {"kind": "cloud", "storage": "gs://ml-landing", "conn_id": "gcp_cloud"},
        },
        datasets=datasets,
    )
    path = write_spec(tmp_path / "managed.yaml", data)
    return path


def _ds(name: str, target: str = "aws:corpus/", **extra: Any) -> dict[str, Any]:
    return {"name": name, "class": "immutable", "source": "onprem:corpus/", "target": target, **extra}


def _problems(tmp_path: Path, project_root: Path, datasets: list[dict[str, Any]]) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        load_wave(_spec(tmp_path, project_root, datasets))
    return {p.field: str(p) for p in err.value.problems}


def test_managed_datasets_load_with_typed_options(tmp_path: Path, project_root: Path) -> None:
    spec = load_wave(_spec(tmp_path, project_root, [
        _ds("native"),
        _ds("by-task", engine="datasync", engine_options={"task_arn": TASK}),
        _ds("by-locations", engine="datasync",
            engine_options={"source_location_arn": LOC_A, "destination_location_arn": LOC_B}),
        _ds("to-gcs", target="gcp:corpus/", engine="storage_transfer",
            engine_options={"project_id": "ml-landing-prod", "source_agent_pool":
                            "projects/ml-landing-prod/agentPools/dc-east"}),
    ]))  # fmt: skip
    native, task, locations, gcs = spec.datasets
    assert native.engine is TransferEngine.NATIVE and not native.managed and native.engine_options is None
    assert isinstance(task.engine_options, DataSyncOptions) and task.engine_options.task_arn == TASK
    assert task.managed and locations.engine_options.destination_location_arn == LOC_B  # type: ignore[union-attr]
    assert isinstance(gcs.engine_options, StorageTransferOptions)
    assert gcs.engine_options.project_id == "ml-landing-prod" and gcs.engine_options.job_name is None


def test_engine_and_target_store_must_fit(tmp_path: Path, project_root: Path) -> None:
    fields = _problems(tmp_path, project_root, [
        _ds("corpus", target="gcp:corpus/", engine="datasync", engine_options={"task_arn": TASK}),
        _ds("models", target="aws:models/", engine="storage_transfer",
            engine_options={"project_id": "ml-landing-prod", "aws_role_arn": "arn:aws:iam::1:role/x"}),
        _ds("logs", engine="datasync", **{"class": "telemetry"}, include=["*.log"]),
    ])  # fmt: skip
    datasync_gcs = fields["datasets[0].engine"]
    assert "wave managed, dataset corpus" in datasync_gcs and "gs://" in datasync_gcs
    assert "use engine: storage_transfer" in datasync_gcs and "(value: 'datasync')" in datasync_gcs
    sts_s3 = fields["datasets[1].target"]
    assert "dataset models" in sts_s3 and "writes only to Google Cloud Storage, not to s3://" in sts_s3
    assert "gs:// site" in sts_s3
    # an s3:// role for a local source makes no sense
    assert "aws_role_arn applies only to an s3:// source" in fields["datasets[1].engine_options.aws_role_arn"]
    assert "needs engine_options with task_arn" in fields["datasets[2].engine_options"]
    assert "include applies only to engine native" in fields["datasets[2].include"]
    assert "use engine: native for telemetry" in fields["datasets[2].class"]
    assert "<root>" not in " ".join(fields)


def test_options_are_checked_field_by_field(tmp_path: Path, project_root: Path) -> None:
    fields = _problems(tmp_path, project_root, [
        _ds("a", engine="datasync", engine_options={"task_arn": "task-1", "colour": "blue"}),
        _ds("b", engine="datasync", engine_options={"task_arn": TASK, "source_location_arn": LOC_A}),
        _ds("c", engine_options={"project_id": "ml-landing-prod"}),
        _ds("d", target="gcp:d/", engine="storage_transfer",
            engine_options={"project_id": "X", "job_name": "nightly"}),
        _ds("e", engine="rsync"),
    ])  # fmt: skip
    assert "wave managed, dataset a" in fields["datasets[0].engine_options.task_arn"]
    assert "not a DataSync task ARN; e.g. arn:aws:datasync:" in fields["datasets[0].engine_options.task_arn"]
    assert "unknown key" in fields["datasets[0].engine_options.colour"]
    assert "not both" in fields["datasets[1].engine_options"]
    assert (
        "engine_options apply only to engine: datasync or storage_transfer"
        in fields["datasets[2].engine_options"]
    )
    assert "not a Google Cloud project id" in fields["datasets[3].engine_options.project_id"]
    assert "e.g. transferJobs/" in fields["datasets[3].engine_options.job_name"]
    assert "'datasync' or 'storage_transfer'" in fields["datasets[4].engine"]


def test_wave_model_enforces_the_site_rules_without_the_loader(tmp_path: Path, project_root: Path) -> None:
    data = yaml.safe_load(_spec(tmp_path, project_root, [
        _ds("corpus", target="gcp:corpus/", engine="datasync", engine_options={"task_arn": TASK}),
    ]).read_text())  # fmt: skip
    with pytest.raises(
        ValueError, match=r"datasets\[0\]\.engine: wave managed, dataset corpus: engine datasync"
    ):
        WaveSpec.model_validate(data)


def test_lint_cli_reports_engine_problems(tmp_path: Path, project_root: Path) -> None:
    path = _spec(tmp_path, project_root, [
        _ds("corpus", target="gcp:corpus/", engine="datasync", engine_options={"task_arn": TASK}),
    ])  # fmt: skip
    _, problems = lint_paths([path])
    assert [p.field for p in problems] == ["datasets[0].engine"]
    env = {**os.environ, "PYTHONPATH": str(project_root / "plugins")}
    out = subprocess.run([sys.executable, "-m", "migration_waves.cli", "lint", "--json", str(path)],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert out.returncode == 1, out.stderr
    (problem,) = json.loads(out.stdout)["problems"]
    assert problem["field"] == "datasets[0].engine" and "use engine: storage_transfer" in problem["message"]


# -- the pure core: transfer/managed.py ---------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind", "expected"),
    [
        ("s3://ml-corpus/corpus", "awsS3DataSource", {"bucketName": "ml-corpus", "path": "corpus/"}),
        ("gs://old-bucket/a/b/", "gcsDataSource", {"bucketName": "old-bucket", "path": "a/b/"}),
        ("/srv/onprem/corpus", "posixDataSource", {"rootDirectory": "/srv/onprem/corpus/"}),
    ],
)
def test_transfer_job_body_follows_the_api_schema(source: str, kind: str, expected: dict[str, str]) -> None:
    from migration_waves.transfer.managed import storage_transfer_job_body, sts_job_name

    body = storage_transfer_job_body(
        project_id="ml-landing-prod",
        job_name=sts_job_name("pilot", "digits corpus", "seed"),
        description="migration-waves wave pilot",
        source_url=source,
        target_url="gs://ml-landing",
        delete=False,
        source_agent_pool="projects/ml-landing-prod/agentPools/dc-east"
        if kind == "posixDataSource"
        else None,
    )
    assert_matches_schema(body, "TransferJob")
    spec = body["transferSpec"]
    assert spec[kind] == expected and spec["gcsDataSink"] == {"bucketName": "ml-landing", "path": ""}
    assert body["name"] == "transferJobs/migration-waves-pilot-digits-corpus-seed"
    assert "schedule" not in body  # runs only when the copy task asks (transferJobs.run)
    assert ("sourceAgentPoolName" in spec) == (kind == "posixDataSource")


def test_the_schema_check_itself_rejects_what_the_api_does_not_document() -> None:
    bad = {
        "transferSpec": {"gcsDataSink": {"bucket": "x"}, "transferOptions": {"overwriteWhen": "SOMETIMES"}}
    }
    problems = schema_problems(bad, {"$ref": "TransferJob"}, "TransferJob")
    assert any("gcsDataSink.bucket: not a field" in p for p in problems)
    assert any("'SOMETIMES' is not one of" in p for p in problems)


def test_bad_urls_are_refused() -> None:
    from migration_waves.transfer.managed import bucket_and_path, storage_transfer_job_body

    assert bucket_and_path("gcs://b/p/q") == ("gs", "b", "p/q/")
    with pytest.raises(ValueError, match="not an s3:// or gs:// URL"):
        bucket_and_path("file:///srv/x")
    with pytest.raises(ValueError, match="Google Cloud Storage only"):
        storage_transfer_job_body(project_id="p-1234", job_name="transferJobs/x", description="",
                                  source_url="/srv", target_url="s3://b/p", delete=False)  # fmt: skip


def test_datasync_execution_options() -> None:
    from migration_waves.transfer.managed import datasync_execution_options

    assert datasync_execution_options(delete=True) == {"OverrideOptions": {"PreserveDeletedFiles": "REMOVE"}}
    assert datasync_execution_options(delete=False)["OverrideOptions"]["PreserveDeletedFiles"] == "PRESERVE"


def test_expected_manifest_reuses_digests_only_for_unchanged_files(tmp_path: Path) -> None:
    from fsspec.implementations.local import LocalFileSystem

    from migration_waves.transfer.managed import expected_manifest
    from migration_waves.transfer.manifest import build_manifest, hash_file

    fs = LocalFileSystem()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(bytes([i]) * 100)
    snapshot = build_manifest(fs, str(src), algorithm="sha256")
    (src / "f1.bin").write_bytes(b"changed after the snapshot")
    os.utime(src / "f1.bin", (1_700_000_000, 1_700_000_000))
    (src / "new.bin").write_bytes(b"new")
    manifest, hashed = expected_manifest(fs, str(src), algorithm="sha256", target_url="s3://b/corpus",
                                         known=[snapshot])  # fmt: skip
    assert hashed == 2  # f1 (changed) and new.bin; f0 and f2 keep the snapshot's digests
    assert manifest.root == "s3://b/corpus" and manifest.algorithm == "sha256"
    got = manifest.by_path()
    assert sorted(got) == ["f0.bin", "f1.bin", "f2.bin", "new.bin"]
    for rel in got:
        assert got[rel].digest == hash_file(fs, str(src / rel), "sha256")[0]
    # a snapshot of another algorithm is no use: everything is hashed
    _, all_hashed = expected_manifest(fs, str(src), algorithm="blake3", target_url="x", known=[snapshot])
    assert all_hashed == 4


def test_deletions_are_capped_before_a_managed_copy(tmp_path: Path) -> None:
    from fsspec.implementations.local import LocalFileSystem

    from migration_waves.transfer.engine import DeleteLimitExceeded
    from migration_waves.transfer.managed import check_deletions

    fs = LocalFileSystem()
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    (tmp_path / "src" / "keep.bin").write_bytes(b"k")
    for i in range(3):
        (tmp_path / "dst" / f"gone-{i}.bin").write_bytes(b"g")
    args = (fs, str(tmp_path / "src"), fs, str(tmp_path / "dst"))
    plan = check_deletions(*args, dataset="corpus", delete=False, max_delete=0)
    assert plan.counts() == {"copy": 1, "skip": 0, "delete": 0} and len(plan.extra_kept) == 3
    with pytest.raises(DeleteLimitExceeded, match="corpus"):
        check_deletions(*args, dataset="corpus", delete=True, max_delete=2)
    assert check_deletions(*args, dataset="corpus", delete=True, max_delete=3).counts()["delete"] == 3
