"""A GCS JSON-API emulator on loopback (`pip install gcp-storage-emulator`), reached through gcsfs.

The emulator is a real HTTP server speaking the GCS JSON and upload APIs; it runs in memory on a
free port and is stopped by its own PID (SIGTERM, a short wait, then SIGKILL), never by name.

Recent gcsfs (2026.10.1 here) swaps its class for `ExtendedGcsFileSystem` on import unless
`GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT` is false; that class asks the Storage Control API over gRPC
for each bucket's layout (zonal / hierarchical) and, against an emulator that serves no gRPC,
retries for about 60 s per lookup without caching the failure. `ENV` turns it off for child
processes, and `plain_gcsfs()` makes this process open `gs://` with the plain HTTP class.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = "mw-test"
ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}  # no gRPC bucket-layout probe (see above)


def emulator_binary() -> str | None:
    """The `gcp-storage-emulator` next to this interpreter (the venv's), else None."""
    beside = Path(sys.executable).parent / "gcp-storage-emulator"
    return str(beside) if beside.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def plain_gcsfs() -> Iterator[None]:
    """Within the block, fsspec opens gs:// and gcs:// with gcsfs's plain HTTP class (no gRPC probe).

    The environment variable is enough before gcsfs is first imported; when something in this
    process imported it earlier, the fsspec registry entry decides which class `url_to_fs`
    builds, so both are set, and both are put back afterwards.
    """
    import fsspec
    from fsspec.registry import _registry

    old_env = {k: os.environ.get(k) for k in ENV}
    old_registry = {p: _registry.get(p) for p in ("gs", "gcs")}
    os.environ.update(ENV)
    import gcsfs.core

    for protocol in ("gs", "gcs"):
        fsspec.register_implementation(protocol, gcsfs.core.GCSFileSystem, clobber=True)
    try:
        yield
    finally:
        for protocol, cls in old_registry.items():
            if cls is None:
                _registry.pop(protocol, None)
            else:
                _registry[protocol] = cls
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class GcsEmulator:
    """A running `gcp-storage-emulator` (in memory); `fs()` gives a gcsfs filesystem on it."""

    log_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> GcsEmulator:
        binary = emulator_binary()
        if binary is None:
            raise RuntimeError("gcp-storage-emulator is missing: install the dev extra")
        self.port = self.port or _free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [binary, "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory", "-q"]
        with open(self.log_dir / f"gcs-emulator-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gcp-storage-emulator on {self.endpoint} not listening after {timeout_s:.0f} s")

    def conf(self) -> dict[str, Any]:
        """gcsfs settings for gs:// URLs opened through fsspec (its `conf["gs"]` entry)."""
        return {"endpoint_url": self.endpoint, "token": "anon", "project": PROJECT}

    def fs(self) -> Any:
        import gcsfs.core

        return gcsfs.core.GCSFileSystem(**self.conf(), skip_instance_cache=True, use_listings_cache=False)

    def stop(self, grace_s: float = 3.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
