"""Site governance checked through the S3 API against a real moto server on loopback.

moto stands in for AWS (no cloud account here): a moto_server subprocess on a free 127.0.0.1
port, reached by boto3 directly and through the amazon provider's S3Hook with a connection.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from migration_waves.gates.preflight import check_security
from migration_waves.spec.loader import load_wave

pytestmark = pytest.mark.integration

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = _free_port()
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
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
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def buckets(moto_endpoint: str) -> dict[str, str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, **CREDS)
    for name in ("secure-landing", "bare-landing", "access-logs"):
        s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(
        Bucket="secure-landing",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::secure-landing", "arn:aws:s3:::secure-landing/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket="secure-landing", Policy=json.dumps(policy))
    s3.put_bucket_acl(Bucket="access-logs", ACL="log-delivery-write")
    s3.put_bucket_logging(
        Bucket="secure-landing",
        BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": "access-logs", "TargetPrefix": "landing/"}},
    )
    return {"secure": "s3://secure-landing/ai", "bare": "s3://bare-landing/ai"}


def _spec(tmp_path: Path, project_root: Path, storage: str, conn_id: str | None = None) -> Path:
    data = yaml.safe_load((project_root / "include" / "waves" / "pilot.yaml").read_text())
    data["golden_images"] = str(project_root / "include" / "golden_images")
    data["budget"]["pricing"] = str(project_root / "include" / "pricing" / "default.yaml")
    data["workloads"][0]["payloads"] = str(project_root / "include" / "demo" / "payloads.jsonl")
    data["sites"]["cloud"]["storage"] = storage
    if conn_id:
        data["sites"]["cloud"]["conn_id"] = conn_id
    path = tmp_path / "pilot.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["checks"]}


def test_secure_bucket_passes_bare_bucket_fails_with_reasons(
    tmp_path: Path, project_root: Path, moto_endpoint: str, buckets: dict[str, str]
) -> None:
    import boto3

    def client(_name: str, _site: Any) -> Any:
        return boto3.client("s3", endpoint_url=moto_endpoint, **CREDS)

    good = check_security(load_wave(_spec(tmp_path, project_root, buckets["secure"])), s3_client=client)
    checks = _by_name(good)
    assert good["passed"], good["reasons"]
    assert "aws:kms" in checks["at-rest:site:cloud"]["message"]
    assert "denies plain HTTP" in checks["in-transit:site:cloud"]["message"]
    assert "s3://access-logs/landing/" in checks["audit:site:cloud"]["message"]

    bad = check_security(load_wave(_spec(tmp_path, project_root, buckets["bare"])), s3_client=client)
    assert not bad["passed"]
    reasons = " | ".join(bad["reasons"])
    assert "bucket bare-landing has no default encryption" in reasons
    assert "bucket bare-landing has no bucket policy" in reasons
    assert "bucket bare-landing has no server access logging" in reasons


def test_missing_bucket_is_a_failure_not_a_pass(
    tmp_path: Path, project_root: Path, moto_endpoint: str, buckets: dict[str, str]
) -> None:
    import boto3

    def client(_name: str, _site: Any) -> Any:
        return boto3.client("s3", endpoint_url=moto_endpoint, **CREDS)

    result = check_security(
        load_wave(_spec(tmp_path, project_root, "s3://no-such-bucket/x")), s3_client=client
    )
    assert not result["passed"]
    assert "could not be checked (NoSuchBucket" in _by_name(result)["at-rest:site:cloud"]["message"]


def test_through_the_amazon_provider_connection(
    tmp_path: Path,
    project_root: Path,
    moto_endpoint: str,
    buckets: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from migration_waves.airflow.aws import s3_client_for

    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MOTO_S3", json.dumps(conn))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    assert os.environ["AIRFLOW_CONN_MOTO_S3"]
    spec = load_wave(_spec(tmp_path, project_root, buckets["secure"], conn_id="moto_s3"))
    result = check_security(spec, s3_client=s3_client_for)
    assert result["passed"], result["reasons"]
    assert _by_name(result)["credentials:site:cloud"]["passed"]
    assert "aws:kms" in _by_name(result)["at-rest:site:cloud"]["message"]
