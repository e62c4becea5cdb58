"""Start and stop the demo services: router, on-prem baseline and cloud candidate, as real processes.

Each service runs in its own process group with a pidfile and a log file under `run_dir`, so a later
`make` (or another process) can find and stop what an earlier one started. Starting is idempotent: a
service already running healthy with the same command line is left alone; one with a different
command line (for example a new fault) is restarted.

    python -m migration_waves.demo.services start --run-dir .demo/run --model DIR --log-dir DIR
    python -m migration_waves.demo.services stop --run-dir .demo/run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from pydantic import BaseModel

ROUTER, BASELINE, CANDIDATE = "router", "onprem", "cloud"
SERVICE_NAMES = (ROUTER, BASELINE, CANDIDATE)
FAULTS: dict[str, list[str]] = {
    "latency": ["--delay-ms", "60"],  # the cloud candidate answers slowly
    "errors": ["--error-rate", "0.2"],  # one in five candidate requests fails
}
ROUTER_STATE_FILE = "router-weights.json"


class ServiceInfo(BaseModel):
    """One running demo service."""

    name: str
    pid: int
    url: str
    log_file: str
    argv: list[str]


class DemoServices(BaseModel):
    """The three demo services; URLs as a wave spec names them."""

    run_dir: str
    router_url: str
    baseline_url: str
    candidate_url: str
    fault: str | None
    services: dict[str, ServiceInfo]
    started: list[str] = []  # services this call started (empty when all were already running)


class ServiceStatus(BaseModel):
    name: str
    pid: int | None
    alive: bool
    healthy: bool
    url: str | None


class DemoServicesError(RuntimeError):
    """A demo service could not be started or stopped."""


def _pidfile(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def _metafile(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        # Reap it when it is our own exited child, so it does not linger as a zombie.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child (started by an earlier `make`): fall through to a signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def _is_ours(pid: int) -> bool:
    """True when pid still runs one of our demo modules (guards against a recycled pid)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # no procfs (macOS): trust the pidfile
        return _alive(pid)
    try:
        return b"migration_waves.demo." in cmdline.read_bytes()
    except OSError:
        return False


def _healthy(url: str, timeout_s: float = 1.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout_s, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log file)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(log is empty)"


def _read_running(run_dir: Path, name: str) -> ServiceInfo | None:
    meta = _metafile(run_dir, name)
    pidfile = _pidfile(run_dir, name)
    if not pidfile.exists() or not meta.exists():
        return None
    try:
        info = ServiceInfo.model_validate_json(meta.read_text())
        pid = int(pidfile.read_text().strip())
    except (ValueError, OSError):
        return None
    if pid != info.pid or not _alive(pid) or not _is_ours(pid):
        return None
    return info


def _stop_one(run_dir: Path, name: str, grace_s: float) -> bool:
    """Stop one service by its pidfile; True when a live process was signalled."""
    pidfile = _pidfile(run_dir, name)
    signalled = False
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text().strip())
        except ValueError:
            pid = 0
        if pid > 0 and _alive(pid) and _is_ours(pid):
            signalled = True
            # start_new_session made the service a group leader: pgid == pid, children included.
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    _metafile(run_dir, name).unlink(missing_ok=True)
    return signalled


def _argv(
    name: str,
    *,
    ports: Sequence[int],
    model_dir: Path,
    log_dir: Path,
    candidate_log_dir: Path,
    state_dir: Path,
    fault: str | None,
    log_rotate_lines: int,
) -> list[str]:
    router_port, baseline_port, candidate_port = ports
    if name == ROUTER:
        return [
            sys.executable, "-m", "migration_waves.demo.router", "--port", str(router_port),
            "--baseline", f"http://127.0.0.1:{baseline_port}",
            "--candidate", f"http://127.0.0.1:{candidate_port}",
            "--state-file", str(state_dir / ROUTER_STATE_FILE),
        ]  # fmt: skip
    port = baseline_port if name == BASELINE else candidate_port
    argv = [
        sys.executable, "-m", "migration_waves.demo.inference", "--name", name, "--port", str(port),
        "--model", str(model_dir), "--log-dir", str(log_dir if name == BASELINE else candidate_log_dir),
        "--log-rotate-lines", str(log_rotate_lines),
    ]  # fmt: skip
    if name == CANDIDATE and fault:
        argv += FAULTS[fault]
    return argv


def start_demo_services(
    *,
    model_dir: str | Path,
    log_dir: str | Path,
    state_dir: str | Path,
    ports: Sequence[int] = (8100, 8101, 8102),
    fault: str | None = None,
    run_dir: str | Path,
    candidate_log_dir: str | Path | None = None,
    log_rotate_lines: int = 1000,
    timeout_s: float = 30.0,
) -> DemoServices:
    """Start router, on-prem baseline and cloud candidate (ports in that order) and wait until healthy.

    `fault` is None, "latency" (candidate +60 ms per request) or "errors" (20% of candidate requests
    answer 500). Serving logs go to `log_dir` (the candidate's to `candidate_log_dir`, default the
    same folder; file names carry the backend name). Raises DemoServicesError with the log tail when
    a service does not become healthy within `timeout_s`.
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; use one of {sorted(FAULTS)} or none")
    ports = tuple(int(p) for p in ports)
    if len(ports) != 3 or len(set(ports)) != 3:
        raise ValueError(f"ports must be three distinct ports (router, baseline, candidate), got {ports}")
    model_path = Path(model_dir).resolve()
    if not (model_path / "model.npz").is_file():
        raise DemoServicesError(
            f"model folder {model_path} has no model.npz; train the digits model first (make demo-data)"
        )
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    logs = Path(log_dir).resolve()
    cand_logs = Path(candidate_log_dir).resolve() if candidate_log_dir else logs
    state = Path(state_dir).resolve()
    for folder in (logs, cand_logs, state):
        folder.mkdir(parents=True, exist_ok=True)

    urls = {name: f"http://127.0.0.1:{port}" for name, port in zip(SERVICE_NAMES, ports, strict=True)}
    infos: dict[str, ServiceInfo] = {}
    launched: dict[str, subprocess.Popen[bytes]] = {}
    # Backends first, router last: it is pointless without them (and starting in parallel saves time).
    for name in (BASELINE, CANDIDATE, ROUTER):
        argv = _argv(
            name, ports=ports, model_dir=model_path, log_dir=logs, candidate_log_dir=cand_logs,
            state_dir=state, fault=fault, log_rotate_lines=log_rotate_lines,
        )  # fmt: skip
        running = _read_running(run, name)
        if running is not None and running.argv == argv and _healthy(running.url):
            infos[name] = running
            continue
        _stop_one(run, name, grace_s=5)  # stale or reconfigured: replace it
        port = int(urls[name].rsplit(":", 1)[1])
        if _port_in_use(port):
            raise DemoServicesError(
                f"port {port} for demo service {name!r} is in use by another process; stop it or pick other "
                f"ports (--ports / ports=)"
            )
        log_file = run / f"{name}.log"
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        _pidfile(run, name).write_text(f"{proc.pid}\n")
        info = ServiceInfo(name=name, pid=proc.pid, url=urls[name], log_file=str(log_file), argv=argv)
        _metafile(run, name).write_text(info.model_dump_json(indent=2) + "\n")
        infos[name] = info
        launched[name] = proc

    deadline = time.monotonic() + timeout_s
    pending = dict(launched)
    while pending:
        for name, proc in list(pending.items()):
            if proc.poll() is not None:
                raise DemoServicesError(
                    f"demo service {name!r} exited with code {proc.returncode} during start; "
                    f"last lines of {infos[name].log_file}:\n{_tail(Path(infos[name].log_file))}"
                )
            if _healthy(infos[name].url, timeout_s=0.5):
                del pending[name]
        if pending and time.monotonic() > deadline:
            name = next(iter(pending))
            raise DemoServicesError(
                f"demo service {name!r} at {infos[name].url} was not healthy after {timeout_s:.0f} s; "
                f"last lines of {infos[name].log_file}:\n{_tail(Path(infos[name].log_file))}"
            )
        if pending:
            time.sleep(0.1)

    result = DemoServices(
        run_dir=str(run),
        router_url=urls[ROUTER],
        baseline_url=urls[BASELINE],
        candidate_url=urls[CANDIDATE],
        fault=fault,
        services=infos,
        started=sorted(launched),
    )
    (run / "services.json").write_text(result.model_dump_json(indent=2) + "\n")
    return result


def stop_demo_services(run_dir: str | Path, *, grace_s: float = 5.0) -> list[str]:
    """Stop every demo service recorded under run_dir (SIGTERM the group, wait, SIGKILL).

    Idempotent: returns the names of services that were running; an empty list when none were.
    """
    run = Path(run_dir)
    if not run.exists():
        return []
    # Router first so no traffic reaches a backend that is going away.
    stopped = [name for name in (ROUTER, CANDIDATE, BASELINE) if _stop_one(run, name, grace_s)]
    (run / "services.json").unlink(missing_ok=True)
    return stopped


def demo_status(run_dir: str | Path) -> list[ServiceStatus]:
    """Whether each demo service under run_dir is alive and answers /health."""
    run = Path(run_dir)
    out: list[ServiceStatus] = []
    for name in SERVICE_NAMES:
        pid: int | None = None
        url: str | None = None
        if _metafile(run, name).exists():
            try:
                info = ServiceInfo.model_validate_json(_metafile(run, name).read_text())
                pid, url = info.pid, info.url
            except ValueError:
                pass
        alive = pid is not None and _alive(pid) and _is_ours(pid)
        out.append(
            ServiceStatus(
                name=name, pid=pid, alive=alive, healthy=bool(alive and url and _healthy(url)), url=url
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: start | stop | status."""
    parser = argparse.ArgumentParser(prog="python -m migration_waves.demo.services", description=__doc__)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--run-dir", required=True, help="pidfiles and service logs")
    parser.add_argument("--model", help="folder with model.npz (start)")
    parser.add_argument("--log-dir", help="serving-log folder (start)")
    parser.add_argument("--state-dir", help="router state folder (start; default RUN_DIR/state)")
    parser.add_argument("--fault", choices=[*sorted(FAULTS), "none"], default="none")
    parser.add_argument("--ports", default="8100,8101,8102", help="router,baseline,candidate")
    args = parser.parse_args(argv)

    if args.action == "stop":
        stopped = stop_demo_services(args.run_dir)
        print(f"stopped: {', '.join(stopped)}" if stopped else "no demo services were running")
        return 0
    if args.action == "status":
        statuses = demo_status(args.run_dir)
        print(json.dumps([s.model_dump() for s in statuses], indent=2))
        return 0 if all(s.healthy for s in statuses) else 1
    if not args.model or not args.log_dir:
        parser.error("start needs --model and --log-dir")
    try:
        ports = [int(p) for p in args.ports.split(",")]
    except ValueError:
        parser.error(f"--ports must be three comma-separated integers, got {args.ports!r}")
    try:
        services = start_demo_services(
            model_dir=args.model,
            log_dir=args.log_dir,
            state_dir=args.state_dir or Path(args.run_dir) / "state",
            ports=ports,
            fault=None if args.fault == "none" else args.fault,
            run_dir=args.run_dir,
        )
    except (DemoServicesError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    started = ", ".join(services.started) or "none (all were running)"
    print(
        f"router {services.router_url}, baseline {services.baseline_url}, "
        f"candidate {services.candidate_url}; "
        f"fault: {services.fault or 'none'}; started: {started}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
