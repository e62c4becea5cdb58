"""The users' flows against the real deployment shape: PostgreSQL + CeleryExecutor on Redis.

Airflow's API server, scheduler and dag-processor run as separate processes on a fresh PostgreSQL
database (created for this run, dropped after it); two Celery workers take the tasks from Redis:
`onprem` (queues default and onprem) and `cloud-gpu` (queue cloud_gpu), each with its own
`--celery-hostname` and log. The waves are purpose-built to be quick: one dataset and one tiny
training workload each, whose golden image (training-cpu-dev, no GPU needed) puts the gpu group on
the cloud site's queue; no inference workloads, so no demo services.

  (a) a run of `celery-lane` triggered through the REST API as the UI does it (POST /auth/token,
      PATCH unpause, POST dagRuns) succeeds, every gpu task on the cloud_gpu worker, every other
      task on the onprem worker (task instance queues + each worker's own log);
  (b) at the same time `nightly-lane` is unpaused and its latest window's scheduled run breaks (the
      training job is misconfigured: it starts over after a restart, which the interruption drill
      catches); once fixed, `airflow backfill create --reprocess-behavior failed` re-runs the window
      and it succeeds;
  (c) in between, its scheduled `dataset_sync_nightly_lane` DAG (dags/dataset_sync.py) runs on its
      own schedule and really syncs a change (the dataset is seeded, the wave not accepted yet).

Addresses: MIGRATION_WAVES_TEST_PG (a PostgreSQL server URL whose user may create databases,
default postgresql://root@127.0.0.1:5432/postgres) and MIGRATION_WAVES_TEST_REDIS (default
redis://127.0.0.1:6379/0; this run's keys get their own prefix and are deleted after). When either
is unreachable, or the celery provider is missing, the test skips and says what is missing.
Process logs stay in the test's tmp dir (their tails are printed on failure).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

PG_ENV, REDIS_ENV = "MIGRATION_WAVES_TEST_PG", "MIGRATION_WAVES_TEST_REDIS"
PG_DEFAULT = "postgresql://root@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
TRAINER, IMAGE = "tiny-trainer", "celery-smoke-cpu"
PASSWORD = "deployment-test-password"
WORKERS = {"onprem": "default,onprem", "cloud-gpu": "cloud_gpu"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- what must be there ---------------------------------------------------------------------------


def _reachable_pg(url: str) -> Any:
    """The server's URL (sqlalchemy URL object), or a skip naming what is missing."""
    from sqlalchemy.engine import make_url

    try:
        import psycopg2
    except ImportError:
        pytest.skip("psycopg2 is missing: pip install psycopg2-binary (PostgreSQL metadata DB)")
    try:
        import asyncpg  # noqa: F401  (Airflow opens an async engine on the same database)
    except ImportError:
        pytest.skip("asyncpg is missing: pip install asyncpg (Airflow's async PostgreSQL driver)")
    parsed = make_url(url).set(drivername="postgresql")
    try:
        psycopg2.connect(parsed.render_as_string(hide_password=False), connect_timeout=3).close()
    except psycopg2.Error as exc:
        pytest.skip(
            f"PostgreSQL is not reachable at {parsed.render_as_string()} ({str(exc).strip()}); "
            f"start one, or set {PG_ENV}=postgresql://USER@HOST:PORT/DB (a user that may create databases)"
        )
    return parsed


def _reachable_redis(url: str) -> None:
    try:
        import redis
    except ImportError:
        pytest.skip("the redis client is missing: pip install apache-airflow-providers-celery")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.skip(
            f"Redis is not reachable at {url} ({exc}); start one, or set {REDIS_ENV}=redis://HOST:PORT/DB"
        )


def _celery_provider() -> None:
    try:
        metadata.version("apache-airflow-providers-celery")
    except metadata.PackageNotFoundError:
        pytest.skip("apache-airflow-providers-celery is not installed: pip install -e . (it is a dependency)")


# -- the waves ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wave:
    name: str
    window: str
    dataset: str
    klass: str

    @property
    def dag_id(self) -> str:
        return f"wave_{self.name.replace('-', '_')}"


# (a) its window has not come yet (29 February 2028), so unpausing schedules nothing: the run the
# user triggers is its only run.
TRIGGERED = Wave("celery-lane", "0 2 29 2 *", "corpus", "immutable")
# (b), (c): a nightly window; unpausing runs the latest one. Its mutable dataset gets a sync DAG.
NIGHTLY = Wave("nightly-lane", "0 2 * * *", "features", "mutable")


def _spec(wave: Wave, root: Path, include: Path, *, resume: bool) -> dict[str, Any]:
    """A purpose-built wave; resume=False is the fault (a job that starts over after a restart)."""
    trainer = [
        sys.executable,
        "-m",
        "migration_waves.demo.trainer",
        "--steps",
        "16",
        "--checkpoint-every",
        "4",
    ]
    if not resume:
        trainer.append("--no-resume")
    governance = {
        "encryption": {"at_rest": "required", "in_transit": "required"},
        "audit_logging": True,
    }
    dataset: dict[str, Any] = {
        "name": wave.dataset,
        "class": wave.klass,
        "source": f"onprem:{wave.name}/",
        "target": f"cloud:{wave.name}/",
    }
    if wave.klass == "mutable":
        dataset.update(delete=True, max_delete=10)
    return {
        "wave": wave.name,
        "description": "Deployment test: one dataset and a tiny trainer over Celery queues.",
        "order": 1,
        "after": [],
        "window": wave.window,
        "owners": {"launch": "team-ml-platform", "validation": "team-ml-quality",
                   "rollback": "team-ml-platform", "cutover": "team-sre"},
        "targets": {"rto_minutes": 10, "rpo_minutes": 15, "p95_ms": 250, "error_rate": 0.01},
        "budget": {"egress_usd": 5, "pricing": str(include / "pricing" / "default.yaml")},
        "tags": {"cost_center": "ml-platform", "wave": wave.name, "owner": "team-ml-platform"},
        "state": str(root / "state"),
        "golden_images": str(root / "golden_images"),
        "sites": {
            "onprem": {"kind": "onprem", "storage": str(root / "onprem"), "queue": "onprem",
                       "region": "dc-east", **governance,
                       "zones": {"training": "10.10.0.0/16", "admin": "10.19.0.0/24"}},
            "cloud": {"kind": "cloud", "storage": str(root / "cloud"), "queue": "cloud_gpu",
                      "region": "us-east-1", **governance,
                      "zones": {"training": "10.40.0.0/16", "admin": "10.49.0.0/24"}},
        },
        "datasets": [dataset],
        "workloads": [{"name": TRAINER, "kind": "training", "golden_image": IMAGE,
                       "command": [*trainer, "--checkpoint-dir", "{checkpoint_dir}"],
                       "checkpoint": f"onprem:ckpt-{wave.name}/",
                       "drill": {"signal": "KILL", "interrupt_after_checkpoints": 2, "timeout_s": 120}}],
    }  # fmt: skip


def _write_spec(wave: Wave, root: Path, include: Path, *, resume: bool) -> Path:
    path = root / "specs" / f"{wave.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_spec(wave, root, include, resume=resume), sort_keys=False))
    return path


def _write_golden_image(root: Path, include: Path) -> None:
    """training-cpu-dev with throughput floors 20x lower: this test proves routing, not speed.

    Seven Airflow processes share the CPUs here, and two waves run at once: numpy measured 30x
    under its idle figure while they did. The NVML snapshot and the checks themselves are unchanged.
    """
    image = yaml.safe_load((include / "golden_images" / "training-cpu-dev.yaml").read_text())
    image["name"] = IMAGE
    image["benchmark"]["baseline_gflops"] /= 20
    suite = image.get("suite") or {}
    for metric, value in (suite.get("baselines") or {}).items():
        if not metric.startswith("soak"):  # a ceiling, not a floor
            suite["baselines"][metric] = value / 20
    (root / "golden_images").mkdir(parents=True, exist_ok=True)
    (root / "golden_images" / f"{IMAGE}.yaml").write_text(yaml.safe_dump(image, sort_keys=False))


def _seed_source(wave: Wave, root: Path) -> Path:
    source = root / "onprem" / wave.name
    source.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (source / f"part-{i}.csv").write_text("".join(f"{i},{j},{i * j}\n" for j in range(200)))
    (root / "onprem" / f"ckpt-{wave.name}").mkdir(parents=True, exist_ok=True)
    return source


# -- the deployment -------------------------------------------------------------------------------


@dataclass
class Deployment:
    """Running Airflow components, their logs, and a REST client with a token."""

    url: str
    root: Path
    env: dict[str, str]
    logs: dict[str, Path] = field(default_factory=dict)
    token: str = ""

    def log_tail(self, *names: str, chars: int = 2500) -> str:
        out = []
        for name in names or tuple(self.logs):
            text = self.logs[name].read_text(errors="replace") if self.logs[name].exists() else ""
            out.append(f"--- {name} ({self.logs[name]}) ---\n{text[-chars:]}")
        return "\n".join(out)

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def login(self) -> None:
        """What the UI's login does: POST /auth/token with the user's password."""
        got = self.request("POST", "/auth/token", {"username": "admin", "password": PASSWORD}, auth=False)
        self.token = got["access_token"]

    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).parent / "airflow"
        return subprocess.run(
            [str(exe), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def wait(self, what: str, probe: Callable[[], Any], *, timeout: float, logs: tuple[str, ...] = ()) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = probe()
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                got = None
            if got:
                return got
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.log_tail(*logs)}")
            time.sleep(1)

    def run_state(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def wait_run(self, dag_id: str, run_id: str, *, timeout: float = 150) -> dict[str, Any]:
        """The run once it ended (success or failed)."""

        def ended() -> dict[str, Any] | None:
            run = self.run_state(dag_id, run_id)
            return run if run["state"] in ("success", "failed") else None

        return self.wait(
            f"{dag_id} run {run_id} to end", ended, timeout=timeout, logs=("scheduler", *WORKERS)
        )

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        rid = urllib.parse.quote(run_id, safe="")
        got = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{rid}/taskInstances?limit=200")
        return {ti["task_id"]: ti for ti in got["task_instances"]}


def _env(
    root: Path, project_root: Path, db_url: str, redis_url: str, port: int, prefix: str
) -> dict[str, str]:
    home = root / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD}))
    env = {
        **os.environ,
        # components started by name (and the drill's `python`) come from this venv
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
        # This run's queues live under their own key prefix: runs sharing a Redis never steal tasks.
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": prefix,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The deployment default: new DAGs wait paused until someone unpauses them (as a user does).
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        # Loop again sooner when idle: each task's successor is scheduled on the next loop.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        # Parse once at start (the DAGs' shape never changes here; specs are read at run time):
        # re-parsing every 30 s only takes CPU from the tasks.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "MIGRATION_WAVES_SPECS": str(root / "specs"),
        "MIGRATION_WAVES_STRICT": "1",
    }
    env.pop("MIGRATION_WAVES_STATE_ROOT", None)
    return env


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process group we started, then SIGKILL what is still there."""
    for proc in procs.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 20
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:  # the group, not just the leader: forked task runners and log servers too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, project_root: Path) -> Iterator[Deployment]:
    _celery_provider()
    pg = _reachable_pg(os.environ.get(PG_ENV) or PG_DEFAULT)
    redis_url = os.environ.get(REDIS_ENV) or REDIS_DEFAULT
    _reachable_redis(redis_url)
    import psycopg2

    root = tmp_path_factory.mktemp("celery")
    include = project_root / "include"
    _write_golden_image(root, include)
    _write_spec(TRIGGERED, root, include, resume=True)
    _write_spec(NIGHTLY, root, include, resume=False)  # the fault is there from the start
    for wave in (TRIGGERED, NIGHTLY):
        _seed_source(wave, root)
    db_name = f"mw_e2e_{secrets.token_hex(5)}"
    admin = psycopg2.connect(pg.render_as_string(hide_password=False), connect_timeout=3)
    admin.autocommit = True
    prefix = f"mw-e2e-{secrets.token_hex(5)}:"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    handles = []
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db_name}"')
        db_url = pg.set(drivername="postgresql+psycopg2", database=db_name).render_as_string(
            hide_password=False
        )
        port = _free_port()
        env = _env(root, project_root, db_url, redis_url, port, prefix)
        dep = Deployment(url=f"http://127.0.0.1:{port}", root=root, env=env)
        migrated = dep.airflow("db", "migrate", timeout=240)
        assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
        commands = {
            "api-server": ["api-server"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            **{
                name: ["celery", "worker", "--queues", queues, "--concurrency", "2", "--celery-hostname",
                       f"{name}@%h", "--pid", str(root / f"{name}.pid"), "--skip-serve-logs"]
                for name, queues in WORKERS.items()
            },
        }  # fmt: skip
        exe = Path(sys.executable).parent / "airflow"
        for name, args in commands.items():
            dep.logs[name] = root / f"{name}.log"
            handle = dep.logs[name].open("wb")
            handles.append(handle)
            procs[name] = subprocess.Popen(
                [str(exe), *args],
                env=dep.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def healthy() -> bool:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}\n{dep.log_tail(name)}")
            body = dep.request("GET", "/api/v2/monitor/health", auth=False)
            return all(body.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler"))

        dep.wait(
            "the API server and scheduler to be healthy",
            healthy,
            timeout=120,
            logs=("api-server", "scheduler"),
        )
        for name in WORKERS:  # a worker is ready once Celery prints its banner line
            dep.wait(f"celery worker {name}", lambda n=name: b" ready." in dep.logs[n].read_bytes(),
                     timeout=90, logs=(name,))  # fmt: skip
        dep.login()
        yield dep
    finally:
        _stop(procs)
        for handle in handles:
            handle.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.close()
        _clear_redis(redis_url, prefix)


def _clear_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def _ran_on(log: str, run_id: str, task_id: str) -> bool:
    """Celery logs each workload it executes with its task and run ids."""
    return any(
        "Executing workload in Celery" in line and f"task_id='{task_id}'" in line and run_id in line
        for line in log.splitlines()
    )


def _assert_routed(dep: Deployment, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    """gpu tasks ran on queue cloud_gpu at the cloud-gpu worker, every other task at onprem."""
    tis = dep.task_instances(dag_id, run_id)
    gpu = {t for t in tis if t.startswith("gpu.")}
    assert gpu == {f"gpu.{IMAGE}.conformance", f"gpu.{IMAGE}.benchmark"}, sorted(tis)
    logs = {name: dep.logs[name].read_text(errors="replace") for name in WORKERS}
    assert "cloud-gpu@" in logs["cloud-gpu"] and "onprem@" in logs["onprem"]  # their celery hostnames
    ran = 0
    for task_id, ti in tis.items():
        if ti["state"] not in ("success", "failed"):
            continue  # skipped and upstream_failed tasks never reach a worker
        want = "cloud_gpu" if task_id in gpu else "default"
        assert ti["queue"] == want, (dag_id, run_id, task_id, ti["queue"])
        where = {name for name, text in logs.items() if _ran_on(text, run_id, task_id)}
        assert where == ({"cloud-gpu"} if task_id in gpu else {"onprem"}), (dag_id, run_id, task_id, where)
        ran += 1
    assert ran >= 10, {t: ti["state"] for t, ti in tis.items()}
    return tis


def _latest_run(dep: Deployment, dag_id: str, run_type: str) -> dict[str, Any] | None:
    runs = dep.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type={run_type}")["dag_runs"]
    return runs[0] if runs else None


def test_triggered_run_scheduled_break_sync_and_backfill_on_celery_queues(
    deployment: Deployment, project_root: Path
) -> None:
    dep = deployment
    sync_dag = f"dataset_sync_{NIGHTLY.name.replace('-', '_')}"
    for dag_id in (TRIGGERED.dag_id, NIGHTLY.dag_id, sync_dag):
        serialized = lambda d=dag_id: dep.request("GET", f"/api/v2/dags/{d}")  # noqa: E731
        dep.wait(f"{dag_id} to be parsed and serialized", serialized, timeout=90, logs=("dag-processor",))
        assert dep.request("GET", f"/api/v2/dags/{dag_id}")["is_paused"] is True, dag_id

    # (a) What the UI does: unpause, then trigger (the token came from POST /auth/token).
    dep.request("PATCH", f"/api/v2/dags/{TRIGGERED.dag_id}", {"is_paused": False})
    triggered = dep.request(
        "POST", f"/api/v2/dags/{TRIGGERED.dag_id}/dagRuns", {"logical_date": None, "conf": {}}
    )
    assert triggered["run_type"] == "manual"
    # (b) Meanwhile the nightly wave is unpaused: the scheduler runs its latest window, which breaks.
    dep.request("PATCH", f"/api/v2/dags/{NIGHTLY.dag_id}", {"is_paused": False})
    scheduled = lambda: _latest_run(dep, NIGHTLY.dag_id, "scheduled")  # noqa: E731
    window = dep.wait("the nightly window's scheduled run", scheduled, timeout=60, logs=("scheduler",))

    # (c) As soon as the nightly run has seeded and verified its dataset (its tail still running), the
    # scheduled sync DAG runs on its own schedule: seeded, not accepted, not frozen, so it syncs.
    def seeded() -> dict[str, Any] | None:
        ti = dep.task_instances(NIGHTLY.dag_id, window["dag_run_id"]).get(
            f"data.{NIGHTLY.dataset}.verify-sync"
        )
        return ti if ti and ti["state"] in ("success", "failed", "upstream_failed") else None

    verified = dep.wait(
        "the nightly run to seed its dataset", seeded, timeout=150, logs=("scheduler", *WORKERS)
    )
    assert verified["state"] == "success", verified
    source = dep.root / "onprem" / NIGHTLY.name
    (source / "part-9.csv").write_text("9,9,81\n")  # a change since the seed
    dep.request("PATCH", f"/api/v2/dags/{sync_dag}", {"is_paused": False})
    sync = dep.wait("a scheduled sync run", lambda: _latest_run(dep, sync_dag, "scheduled"), timeout=60)
    sync = dep.wait_run(sync_dag, sync["dag_run_id"])
    sync_tis = dep.task_instances(sync_dag, sync["dag_run_id"])
    assert sync["state"] == "success", sync_tis
    assert sync_tis[f"{NIGHTLY.dataset}.sync"]["state"] == "success", sync_tis  # really synced, not skipped
    assert (dep.root / "cloud" / NIGHTLY.name / "part-9.csv").read_text() == "9,9,81\n"
    dep.request("PATCH", f"/api/v2/dags/{sync_dag}", {"is_paused": True})

    # (b) The window's run broke on the drill (its gpu tasks on the cloud_gpu worker all the same).
    broken = dep.wait_run(NIGHTLY.dag_id, window["dag_run_id"])
    tis = _assert_routed(dep, NIGHTLY.dag_id, window["dag_run_id"])
    assert broken["state"] == "failed", {t: ti["state"] for t, ti in tis.items()}
    assert tis[f"resilience.{TRAINER}-drill"]["state"] == "failed"

    # (b) Fix the job, backfill the window reprocessing the failed run: it succeeds.
    _write_spec(NIGHTLY, dep.root, project_root / "include", resume=True)
    date = window["logical_date"]
    created = dep.airflow(
        "backfill", "create", "--dag-id", NIGHTLY.dag_id, "--from-date", date, "--to-date", date,
        "--reprocess-behavior", "failed",
    )  # fmt: skip
    assert created.returncode == 0, created.stdout[-2000:] + created.stderr[-2000:]
    backfills = dep.request("GET", f"/api/v2/backfills?dag_id={NIGHTLY.dag_id}")["backfills"]
    assert len(backfills) == 1 and backfills[0]["reprocess_behavior"] == "failed", backfills
    run = dep.run_state(NIGHTLY.dag_id, window["dag_run_id"])
    assert run["run_type"] == "backfill" and run["state"] != "failed", run  # the failed run, taken over
    fixed = dep.wait_run(NIGHTLY.dag_id, window["dag_run_id"])
    tis = dep.task_instances(NIGHTLY.dag_id, window["dag_run_id"])
    assert fixed["state"] == "success", {t: ti["state"] for t, ti in tis.items()}
    assert tis[f"resilience.{TRAINER}-drill"]["state"] == "success"
    assert tis["acceptance.evaluate"]["state"] == "success"

    # (a) The triggered run (done by now, or soon): success, every task on its queue's worker.
    done = dep.wait_run(TRIGGERED.dag_id, triggered["dag_run_id"])
    tis = _assert_routed(dep, TRIGGERED.dag_id, triggered["dag_run_id"])
    assert done["state"] == "success", {t: ti["state"] for t, ti in tis.items()}
    assert tis["acceptance.evaluate"]["state"] == "success"
    runs = dep.request("GET", f"/api/v2/dags/{TRIGGERED.dag_id}/dagRuns")["total_entries"]
    assert runs == 1, f"{TRIGGERED.window!r} fired since the DAGs' start date: pick a window still to come"
