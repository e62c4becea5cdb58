"""`make demo` / `make up`: build the demo inputs, start the demo services, run or serve the wave.

python -m migration_waves.airflow.demo [--wave pilot] [--fault latency|errors] [--serve]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from migration_waves.airflow.runner import PROJECT_ROOT

DEMO_ROOT = PROJECT_ROOT / ".demo"
PAYLOADS = PROJECT_ROOT / "include" / "demo" / "payloads.jsonl"


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


@contextmanager
def demo_services(
    spec: Any,
    *,
    fault: str | None,
    demo_root: Path = DEMO_ROOT,
    payloads: Path = PAYLOADS,
    writer_interval_s: float | None = 1.5,
) -> Iterator[None]:
    """Demo inputs built, services (on-prem, cloud, router) and the feature writer running.

    The ports come from the spec's first inference workload (router, baseline, candidate).
    """
    from migration_waves.canary.router import LocalRouter
    from migration_waves.demo.data import build_demo_inputs
    from migration_waves.demo.services import start_demo_services, stop_demo_services
    from migration_waves.evidence.store import freeze_marker_path, unfreeze_writes

    started = time.monotonic()
    build_demo_inputs(demo_root, payloads_path=payloads)
    _say(f"demo inputs ready in {time.monotonic() - started:.1f}s under {demo_root}")
    run_dir = demo_root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    stop_demo_services(run_dir)  # a different FAULT needs fresh processes
    if not spec.inference_workloads:
        _say(f"wave {spec.wave} has no inference workload: no demo services to start")
        yield
        return
    wl = spec.inference_workloads[0]
    ports = tuple(
        int(str(u).rsplit(":", 1)[1].split("/")[0]) for u in (wl.router.admin, wl.baseline, wl.candidate)
    )
    start_demo_services(
        model_dir=demo_root / "onprem" / "models" / "digits-classifier",
        log_dir=demo_root / "onprem" / "logs",
        state_dir=run_dir,
        ports=ports,
        fault=fault,
        run_dir=run_dir,
    )
    _say(
        f"services up: router {wl.router.admin}, on-prem {wl.baseline}, cloud {wl.candidate}"
        + (f" (fault: {fault})" if fault else "")
    )
    state_root = spec.state_root(os.environ.get("MIGRATION_WAVES_STATE_ROOT"))
    unfreeze_writes(state_root, spec.wave)
    LocalRouter(str(wl.router.admin)).set_candidate_weight(0)
    writer = None
    if writer_interval_s:
        writer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "migration_waves.demo.writer",
                "--root",
                str(demo_root),
                "--freeze-file",
                freeze_marker_path(state_root, spec.wave),
                "--interval",
                str(writer_interval_s),
            ],
            stdout=open(run_dir / "writer.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _write_pid(run_dir / "writer.pid", writer.pid)
    try:
        yield
    finally:
        if writer is not None:
            writer.send_signal(signal.SIGTERM)
            try:
                writer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                writer.kill()
            (run_dir / "writer.pid").unlink(missing_ok=True)
        stop_demo_services(run_dir)
        _say("services stopped")


def _demo_lock(demo_root: Path) -> Any:
    """An exclusive lock on the demo folder: two runs would share (and stop) the same services."""
    import fcntl

    demo_root.mkdir(parents=True, exist_ok=True)
    handle = open(demo_root / "demo.lock", "w")  # held (and released) with the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _print_outcome(spec: Any, result: Any) -> None:
    from migration_waves.evidence.store import EvidenceStore

    store = EvidenceStore(
        spec.state_root(os.environ.get("MIGRATION_WAVES_STATE_ROOT")), spec.wave, result.run_id
    )
    width = max(len(t) for t in result.task_states)
    for task, state in sorted(result.task_states.items()):
        print(f"  {task:<{width}}  {state}")
    outcome = (store.read("outcome", "outcome") or {}).get("data", {})
    print()
    print(
        f"wave {spec.wave}: run {result.run_id} ended {result.state.upper()}"
        + (f" ({outcome.get('status')})" if outcome else "")
    )
    for reason in (outcome.get("reasons") or [])[:8]:
        print(f"  - {reason}")
    print(f"report:   {store.path('report.html')}")
    print(f"evidence: {store.path('evidence.json')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wave", default="pilot")
    parser.add_argument("--fault", choices=["latency", "errors"], default=None)
    parser.add_argument("--serve", action="store_true", help="run airflow standalone instead of one test run")
    parser.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    parser.add_argument("--down", action="store_true", help="stop what make demo/up started here")
    args = parser.parse_args(argv)
    if args.down:
        stopped = stop_everything()
        _say(f"stopped: {', '.join(stopped)}" if stopped else "nothing of the demo was running")
        return 0
    # SIGTERM (a plain `kill`) must clean up like Ctrl-C: services, writer and Airflow stop too.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if not args.verbose and not args.serve:
        # dag.test() prints every task's log; the demo prints its own summary.
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
        # Airflow 3.3's own .airflowignore matcher uses a pathspec API that pathspec deprecated.
        warnings.filterwarnings("ignore", message="GitWildMatchPattern", category=DeprecationWarning)

    from migration_waves.airflow.dag_factory import SPECS_ENV, dag_id_for
    from migration_waves.spec.loader import SpecError, load_wave, spec_files

    specs_dir = Path(os.environ.get(SPECS_ENV) or PROJECT_ROOT / "include" / "waves")
    by_name = {}
    for file in spec_files([specs_dir]):
        try:
            by_name[load_wave(file).wave] = file
        except SpecError as exc:
            _say(f"skipping {file}: {exc}")
    if args.wave not in by_name:
        known = ", ".join(sorted(by_name)) or "none"
        _say(f"no wave {args.wave!r} in {specs_dir} (waves: {known}); pass WAVE=<name>")
        return 2
    spec = load_wave(by_name[args.wave])
    onprem = spec.sites.get("onprem")
    demo_root = Path(spec.resolve_path(onprem.storage)).parent if onprem else DEMO_ROOT
    lock = _demo_lock(demo_root)
    if lock is None:
        _say(f"another make demo/up is running (lock {demo_root / 'demo.lock'}); wait for it or stop it")
        return 2
    with demo_services(spec, fault=args.fault, demo_root=demo_root):
        if args.serve:
            return _serve(demo_root / "run")
        from migration_waves.airflow.runner import run_wave

        _say(f"running wave {spec.wave} (dag {dag_id_for(spec.wave)}) with dag.test() ...")
        result = run_wave(dag_id_for(spec.wave), conf={"force": True})
    _print_outcome(spec, result)
    return 0 if result.state == "success" else 1


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _write_pid(path: Path, pid: int) -> None:
    path.write_text(f"{pid}\n")


def _stop_pidfile(path: Path, must_contain: str, *, grace_s: float = 20) -> str | None:
    """Stop the process group in a pidfile if its command line is still what we started."""
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    if must_contain not in cmdline:  # a reused pid: not ours
        path.unlink(missing_ok=True)
        return None
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        os.killpg(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return must_contain


def stop_everything(demo_root: Path = DEMO_ROOT) -> list[str]:
    """`make down`: Airflow standalone, the feature writer and the demo services of this checkout."""
    from migration_waves.demo.services import stop_demo_services

    run_dir = demo_root / "run"
    stopped = [name for name in (
        _stop_pidfile(run_dir / "standalone.pid", "standalone"),
        _stop_pidfile(run_dir / "writer.pid", "migration_waves.demo.writer"),
    ) if name]  # fmt: skip
    stopped += stop_demo_services(run_dir) if run_dir.exists() else []
    return stopped


def _serve(run_dir: Path) -> int:
    home = Path(os.environ.get("AIRFLOW_HOME", PROJECT_ROOT / ".airflow"))
    port = os.environ.get("AIRFLOW__API__PORT", "8080")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "standalone"], start_new_session=True
    )
    _write_pid(run_dir / "standalone.pid", proc.pid)
    pw_file = home / "simple_auth_manager_passwords.json.generated"
    for _ in range(120):
        if pw_file.exists() or proc.poll() is not None:
            break
        time.sleep(1)
    password = pw_file.read_text().strip() if pw_file.exists() else "(see the standalone log above)"
    _say(f"Airflow UI: http://127.0.0.1:{port}  user: admin  password file: {pw_file} {password}")
    _say("trigger wave_pilot from the UI (Trigger, then pick Params); Ctrl-C stops everything")
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_pidfile(run_dir / "standalone.pid", "standalone", grace_s=30)
        return 0


if __name__ == "__main__":
    sys.exit(main())
