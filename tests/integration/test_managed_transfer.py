"""Managed transfer engines through the operators: DataSync against moto, Storage Transfer recorded.

DataSync: moto's server mode (a real HTTP server on loopback, started here) answers the DataSync
API the amazon provider's DataSyncHook calls: the task is found or created, an execution is
started, and the hook's own wait loop polls it to SUCCESS. moto moves no bytes (it has no data
plane), so these tests put the objects into moto's S3 themselves where DataSync would have
written them; that is the one stand-in, and it is what lets them show that our verify task, not
the service's SUCCESS, decides: with nothing at the target the wave fails, with the bytes there
it passes, with one byte flipped it fails again.

Storage Transfer: no emulator exists and there is no Google Cloud account here, so the Storage
Transfer API is a recorded fake: the google provider's CloudDataTransferServiceHook builds its
real discovery client (the static storagetransfer v1 document shipped with
google-api-python-client) on an HTTP double that answers each request with a recorded response
and keeps the requests, which the test then checks (methods, paths, bodies against the schema).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from spec_support import wave_spec, write_spec

pytestmark = pytest.mark.integration

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
BUCKET = "landing"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto_server on a free loopback port (S3 and DataSync on the same endpoint)."""
    port = _free_port()
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not start within 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """An Airflow aws connection to moto, a fresh bucket, and DataSync locations for it."""
    import uuid

    import boto3

    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MW_MOTO", json.dumps(conn))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    bucket = f"{BUCKET}-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, **CREDS)
    s3.create_bucket(Bucket=bucket)
    datasync = boto3.client("datasync", endpoint_url=moto_endpoint, **CREDS)
    src = datasync.create_location_smb(
        ServerHostname="nas.dc-east.example", Subdirectory="/corpus", User="svc", Password="x",
        AgentArns=["arn:aws:datasync:us-east-1:111222333444:agent/agent-00000000000000001"],
    )["LocationArn"]  # fmt: skip
    dst = datasync.create_location_s3(
        S3BucketArn=f"arn:aws:s3:::{bucket}", Subdirectory="corpus",
        S3Config={"BucketAccessRoleArn": "arn:aws:iam::111222333444:role/datasync"},
    )["LocationArn"]  # fmt: skip
    return SimpleNamespace(endpoint=moto_endpoint, bucket=bucket, s3=s3, datasync=datasync, src=src, dst=dst)


def _wave(tmp_path: Path, project_root: Path, sites: dict[str, Any], dataset: dict[str, Any]) -> Path:
    spec = wave_spec(project_root, "managed", state=tmp_path / "state", sites=sites, datasets=[dataset])
    path = write_spec(tmp_path / "managed.yaml", spec)
    return path


def _source(tmp_path: Path) -> dict[str, bytes]:
    files = {f"shards/part-{i}.bin": bytes([i]) * (2000 + i) for i in range(4)}
    files["README.md"] = b"digits corpus\n"
    for rel, data in files.items():
        path = tmp_path / "onprem" / "corpus" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _context(**params: Any) -> dict[str, Any]:
    return {"run_id": "manual__2026-12-05", "dag": SimpleNamespace(dag_id="wave_managed"), "params": params}


def _run(op_cls: Any, spec: Path, **kwargs: Any) -> dict[str, Any]:
    op = op_cls(task_id=f"t-{op_cls.__name__}", wave_spec=str(spec), subject="corpus", **kwargs)
    return op.execute(_context())


def _new_task_process(spec: Path) -> None:
    """Forget the S3 listings cached in this process, as the next task's own process starts without them.

    Airflow runs each task in a process of its own; these tests run several in one, and s3fs keeps
    the listing (with ETags) of an earlier task, which would make a read of a replaced object fail.
    """
    from migration_waves.airflow.context import resolve_fs
    from migration_waves.spec.loader import load_wave

    wave = load_wave(spec)
    resolve_fs(wave.location(wave.datasets[0].target))[0].invalidate_cache()


def _datasync_wave(tmp_path: Path, project_root: Path, aws: SimpleNamespace, **options: Any) -> Path:
    options = options or {"source_location_arn": aws.src, "destination_location_arn": aws.dst}
    sites = {
        "onprem": {"kind": "onprem", "storage": str(tmp_path / "onprem")},
        "cloud": {"kind": "cloud", "storage": f"s3://{aws.bucket}", "conn_id": "mw_moto"},
    }
    dataset = {
        "name": "corpus", "class": "immutable", "source": "onprem:corpus/", "target": "cloud:corpus/",
        "engine": "datasync", "engine_options": {**options, "poll_interval_s": 0},
    }  # fmt: skip
    return _wave(tmp_path, project_root, sites, dataset)


def test_datasync_success_is_not_verification(
    tmp_path: Path, project_root: Path, aws: SimpleNamespace
) -> None:
    from migration_waves.airflow import operators as ops
    from migration_waves.airflow.managed_transfer import ManagedCopyOperator

    files = _source(tmp_path)
    spec = _datasync_wave(tmp_path, project_root, aws)
    assert _run(ops.SnapshotManifestOperator, spec)["passed"]

    copy = _run(ManagedCopyOperator, spec)
    record = json.loads(Path(copy["evidence"]).read_text())["data"]
    assert record["engine"] == "datasync" and record["status"] == "SUCCESS"
    assert record["task_created"] and not record["attached"]
    assert record["planned"] == {"copy": 5, "skip": 0, "delete": 0}
    assert record["files_expected"] == 5 and record["files_hashed"] == 0  # digests from the snapshot
    task = aws.datasync.describe_task(TaskArn=record["task_arn"])
    assert (task["SourceLocationArn"], task["DestinationLocationArn"]) == (aws.src, aws.dst)

    # moto's DataSync reported SUCCESS and moved nothing: our verify reads the target and fails.
    with pytest.raises(ops.WaveGateFailed) as err:
        _run(ops.VerifyDatasetOperator, spec)
    assert "5 files missing at the target" in str(err.value) and "dataset corpus" in str(err.value)

    # The bytes where DataSync writes them (moto has no data plane): verify passes.
    for rel, data in files.items():
        aws.s3.put_object(Bucket=aws.bucket, Key=f"corpus/{rel}", Body=data)
    verified = _run(ops.VerifyDatasetOperator, spec)
    assert verified["passed"] and verified["files_verified"] == 5

    # One flipped byte at the target: the digest comparison catches it.
    bad = bytearray(files["shards/part-2.bin"])
    bad[100] ^= 0xFF
    aws.s3.put_object(Bucket=aws.bucket, Key="corpus/shards/part-2.bin", Body=bytes(bad))
    _new_task_process(spec)
    with pytest.raises(ops.WaveGateFailed, match=r"different blake3 digest.*shards/part-2\.bin"):
        _run(ops.VerifyDatasetOperator, spec)

    # A re-run finds the task between the same locations instead of creating another one.
    again = json.loads(Path(_run(ManagedCopyOperator, spec)["evidence"]).read_text())["data"]
    assert again["task_arn"] == record["task_arn"] and not again["task_created"]
    assert again["execution_arn"] != record["execution_arn"]
    between = [
        t for t in aws.datasync.list_tasks()["Tasks"]
        if aws.datasync.describe_task(TaskArn=t["TaskArn"])["DestinationLocationArn"] == aws.dst
    ]  # fmt: skip
    assert [t["TaskArn"] for t in between] == [record["task_arn"]]


def test_datasync_task_writing_elsewhere_is_refused(
    tmp_path: Path, project_root: Path, aws: SimpleNamespace
) -> None:
    from migration_waves.airflow import operators as ops
    from migration_waves.airflow.managed_transfer import ManagedCopyOperator

    _source(tmp_path)
    other = aws.datasync.create_location_s3(
        S3BucketArn=f"arn:aws:s3:::{aws.bucket}", Subdirectory="elsewhere",
        S3Config={"BucketAccessRoleArn": "arn:aws:iam::111222333444:role/datasync"},
    )["LocationArn"]  # fmt: skip
    task_arn = aws.datasync.create_task(SourceLocationArn=aws.src, DestinationLocationArn=other)["TaskArn"]
    spec = _datasync_wave(tmp_path, project_root, aws, task_arn=task_arn)
    with pytest.raises(ops.WaveGateFailed) as err:
        _run(ManagedCopyOperator, spec)
    message = str(err.value)
    assert "dataset corpus" in message and f"s3://{aws.bucket}/elsewhere" in message
    assert f"s3://{aws.bucket}/corpus" in message
    assert (
        aws.datasync.describe_task(TaskArn=task_arn).get("CurrentTaskExecutionArn") is None
    )  # never started


def test_datasync_deletions_are_capped_before_the_service_runs(
    tmp_path: Path, project_root: Path, aws: SimpleNamespace
) -> None:
    from migration_waves.airflow.managed_transfer import ManagedCopyOperator

    _source(tmp_path)
    for i in range(3):  # target files the source no longer has
        aws.s3.put_object(Bucket=aws.bucket, Key=f"corpus/old-{i}.bin", Body=b"old")
    spec = _datasync_wave(tmp_path, project_root, aws)
    data = yaml.safe_load(spec.read_text())
    data["datasets"][0].update({"class": "mutable", "delete": True, "max_delete": 2})
    spec.write_text(yaml.safe_dump(data))
    before = aws.datasync.list_tasks()["Tasks"]
    with pytest.raises(Exception, match=r"corpus.*(delete|max_delete)"):
        _run(ManagedCopyOperator, spec, mode="sync")
    assert aws.datasync.list_tasks()["Tasks"] == before  # refused before any DataSync call


# -- Storage Transfer: recorded fake of the API (no emulator, no account) -------------------------


def _gcp_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A google_cloud_platform connection with a service-account key made here (never used on a network)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    keyfile = {
        "type": "service_account", "project_id": "mw-landing-prod", "private_key_id": "0" * 40,
        "private_key": pem, "client_email": "mw-test@mw-landing-prod.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    }  # fmt: skip
    conn = {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": json.dumps(keyfile)}}
    monkeypatch.setenv("AIRFLOW_CONN_MW_GCP", json.dumps(conn))


class RecordedHttp:
    """httplib2.Http stand-in: answers requests in order from recorded responses and keeps them."""

    def __init__(self, responses: list[tuple[int, dict[str, Any]]]) -> None:
        self.responses = list(responses)
        self.requests: list[dict[str, Any]] = []

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **_: Any) -> Any:
        import httplib2

        self.requests.append({"uri": uri, "method": method, "body": json.loads(body) if body else None})
        status, payload = self.responses.pop(0)
        return httplib2.Response({"status": status}), json.dumps(payload).encode()


def test_storage_transfer_job_is_created_run_and_waited_for(
    tmp_path: Path, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """See the module docstring: the Storage Transfer API here is a recorded fake."""
    from googleapiclient.discovery import build
    from sts_schema_support import assert_matches_schema

    from migration_waves.airflow.managed_transfer import run_storage_transfer
    from migration_waves.spec.loader import load_wave

    _gcp_connection(monkeypatch)
    sites = {
        "cloud-aws": {"kind": "cloud", "storage": "s3://ml-corpus"},
        "cloud-gcp": {"kind": "cloud", "storage": "gs://ml-landing", "conn_id": "mw_gcp"},
    }
    dataset = {
        "name": "corpus", "class": "mutable", "source": "cloud-aws:corpus/", "target": "cloud-gcp:corpus/",
        "delete": True, "engine": "storage_transfer",
        "engine_options": {"project_id": "mw-landing-prod", "poll_interval_s": 0,
                           "aws_role_arn": "arn:aws:iam::111122223333:role/sts"},
    }  # fmt: skip
    spec = load_wave(_wave(tmp_path, project_root, sites, dataset))
    job = "transferJobs/migration-waves-managed-corpus-sync"
    op = "transferOperations/transferJobs-migration-waves-managed-corpus-sync-1"
    running = {"name": op, "done": False, "metadata": {"status": "IN_PROGRESS", "counters": {}}}
    done = {"name": op, "done": True, "metadata": {
        "status": "SUCCESS", "counters": {"objectsCopiedToSink": "5", "bytesCopiedToSink": "10024",
                                          "objectsDeletedFromSink": "1"}}}  # fmt: skip
    http = RecordedHttp([
        (409, {"error": {"code": 409, "message": "already exists", "status": "ALREADY_EXISTS"}}),
        (200, {"name": job, "projectId": "mw-landing-prod", "status": "ENABLED", "transferSpec": {}}),  # get
        (200, {"name": job}),  # patch: the old job's spec is replaced by this spec's
        (200, {}),  # operations.list: nothing running
        (200, running),  # run
        (200, running),  # poll
        (200, done),  # poll
    ])  # fmt: skip
    client = build("storagetransfer", "v1", http=http, static_discovery=True)

    from airflow.providers.google.cloud.hooks.cloud_storage_transfer_service import (
        CloudDataTransferServiceHook,
    )

    monkeypatch.setattr(CloudDataTransferServiceHook, "get_conn", lambda self: client)
    log = SimpleNamespace(info=lambda *a, **k: None)
    result = run_storage_transfer(spec, spec.dataset("corpus"), mode="sync", delete=True, log=log)

    assert result["passed"] and result["status"] == "SUCCESS" and not result["attached"]
    assert (result["files_copied"], result["bytes_copied"], result["files_deleted"]) == (5, 10024, 1)
    calls = [(r["method"], r["uri"].split("?")[0].split("/v1/")[1]) for r in http.requests]
    assert calls == [
        ("POST", "transferJobs"),
        ("GET", job),
        ("PATCH", job),
        ("GET", "transferOperations"),
        ("POST", f"{job}:run"),
        ("GET", op),
        ("GET", op),
    ]
    created = http.requests[0]["body"]
    assert_matches_schema(created, "TransferJob")
    assert created["transferSpec"]["awsS3DataSource"] == {
        "bucketName": "ml-corpus", "path": "corpus/", "roleArn": "arn:aws:iam::111122223333:role/sts"
    }  # fmt: skip
    assert created["transferSpec"]["gcsDataSink"] == {"bucketName": "ml-landing", "path": "corpus/"}
    assert created["transferSpec"]["transferOptions"]["deleteObjectsUniqueInSink"] is True
    assert "awsAccessKey" not in json.dumps(http.requests)  # a role, so no keys are sent
    assert_matches_schema(http.requests[2]["body"], "UpdateTransferJobRequest")
    assert_matches_schema(http.requests[4]["body"], "RunTransferJobRequest")
    query = parse_qs(urlsplit(http.requests[3]["uri"]).query)
    assert json.loads(query["filter"][0]) == {"project_id": "mw-landing-prod", "job_names": [job]}


def test_storage_transfer_failure_names_the_errors(
    tmp_path: Path, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded fake (see the module docstring): an existing job whose operation fails."""
    from airflow.providers.google.cloud.hooks.cloud_storage_transfer_service import (
        CloudDataTransferServiceHook,
    )
    from googleapiclient.discovery import build

    from migration_waves.airflow.managed_transfer import run_storage_transfer
    from migration_waves.spec.loader import load_wave

    _gcp_connection(monkeypatch)
    sites = {
        "onprem": {"kind": "onprem", "storage": str(tmp_path / "onprem")},
        "cloud": {"kind": "cloud", "storage": "gs://ml-landing", "conn_id": "mw_gcp"},
    }
    dataset = {
        "name": "corpus", "class": "immutable", "source": "onprem:corpus/", "target": "cloud:corpus/",
        "engine": "storage_transfer",
        "engine_options": {"project_id": "mw-landing-prod", "job_name": "transferJobs/nightly-corpus",
                           "poll_interval_s": 0},
    }  # fmt: skip
    spec = load_wave(_wave(tmp_path, project_root, sites, dataset))
    job = {"name": "transferJobs/nightly-corpus", "projectId": "mw-landing-prod", "status": "ENABLED",
           "transferSpec": {"posixDataSource": {"rootDirectory": "/srv/corpus/"},
                            "gcsDataSink": {"bucketName": "ml-landing", "path": "corpus/"}}}  # fmt: skip
    op = "transferOperations/transferJobs-nightly-corpus-7"
    running = {"name": op, "metadata": {"status": "IN_PROGRESS"}}
    failed = {"name": op, "done": True, "metadata": {"status": "FAILED", "errorBreakdowns": [
        {"errorCode": "PERMISSION_DENIED", "errorCount": "3"}]}}  # fmt: skip
    http = RecordedHttp([(200, job), (200, {"operations": [running]}), (200, failed)])
    client = build("storagetransfer", "v1", http=http, static_discovery=True)
    monkeypatch.setattr(CloudDataTransferServiceHook, "get_conn", lambda self: client)
    log = SimpleNamespace(info=lambda *a, **k: None)
    result = run_storage_transfer(spec, spec.dataset("corpus"), mode="seed", delete=False, log=log)
    assert not result["passed"] and result["attached"]  # a retry waits for the running operation
    assert [r["method"] for r in http.requests] == ["GET", "GET", "GET"]  # no create, no second run
    assert "PERMISSION_DENIED x3" in result["reasons"][-1] and "dataset corpus" in result["reasons"][-1]
