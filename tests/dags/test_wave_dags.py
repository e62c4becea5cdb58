"""DAG integrity: dags/ imports cleanly, every wave spec renders, the safety wiring holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.dags


@pytest.fixture(scope="module")
def dagbag(project_root: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(project_root / "dags"))


def test_no_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}


def test_every_spec_renders(dagbag: Any, project_root: Path) -> None:
    import yaml

    from migration_waves.airflow.dag_factory import dag_id_for
    from migration_waves.spec.loader import spec_files

    waves = [yaml.safe_load(f.read_text())["wave"] for f in spec_files([project_root / "include" / "waves"])]
    assert waves
    for wave in waves:
        dag = dagbag.dags.get(dag_id_for(wave))
        assert dag is not None, wave
        assert dag.schedule is not None  # backfill needs a periodic schedule
        assert dag.max_active_runs == 1 and not dag.catchup


def test_pilot_has_every_stage(dagbag: Any) -> None:
    dag = dagbag.dags.get("wave_pilot")
    groups = {t.task_id.split(".", 1)[0] for t in dag.tasks}
    assert groups == {
        "preflight",
        "baseline",
        "data",
        "gpu",
        "resilience",
        "canary",
        "cutover",
        "acceptance",
        "rollback",
        "report",
        "outcome",
    }
    for ds in ("digits-corpus", "features", "checkpoints", "serving-logs", "minilm-model"):
        assert f"data.{ds}.snapshot" in dag.task_ids
    assert "data.features.sync" in dag.task_ids  # mutable: seed then sync
    assert "data.serving-logs.ingest" in dag.task_ids  # telemetry: ingest


def test_outcome_watches_every_task_and_always_runs(dagbag: Any) -> None:
    dag = dagbag.dags.get("wave_pilot")
    outcome = dag.get_task("outcome")
    assert outcome.trigger_rule == "all_done"
    # HITL approvals skip their direct downstream tasks on Reject, so they feed only their 100%
    # step (tests/dags/test_canary_approval.py checks outcome still waits for them through it).
    approvals = {t for t in dag.task_ids if t.endswith(".approve-100")}
    assert outcome.upstream_task_ids == set(dag.task_ids) - {"outcome"} - approvals
    assert outcome.downstream_task_ids == set()
    report = dag.get_task("report")
    assert report.trigger_rule == "all_done"
    assert report.upstream_task_ids == set(dag.task_ids) - {"outcome", "report"} - approvals


def test_rollback_reachable_and_not_blockable(dagbag: Any) -> None:
    dag = dagbag.dags.get("wave_pilot")
    restore = dag.get_task("rollback.restore")
    assert restore.trigger_rule == "all_done"
    assert restore.retries >= 3
    canary_and_cutover = {t for t in dag.task_ids if t.startswith(("canary.", "cutover."))}
    gates = {t for t in canary_and_cutover if ".gate-" in t}
    # HITL approvals reach it through their step (a Reject would skip a direct downstream restore).
    gates |= {t for t in canary_and_cutover if t.endswith(".approve-100")}
    # Every non-branch task after traffic can move feeds the rollback decider.
    assert canary_and_cutover - gates <= restore.upstream_task_ids
    assert "acceptance.evaluate" in restore.upstream_task_ids


def test_each_gate_branches_to_next_step_or_its_own_abort(dagbag: Any) -> None:
    dag = dagbag.dags.get("wave_pilot")
    steps = [5, 25, 50, 100]
    prefix = "canary.digits-classifier."
    for i, pct in enumerate(steps):
        gate = dag.get_task(f"{prefix}gate-{pct:03d}")
        nxt = f"{prefix}step-{steps[i + 1]:03d}" if i + 1 < len(steps) else f"{prefix}promote"
        if i + 1 < len(steps) and steps[i + 1] == 100:
            nxt = f"{prefix}need-approval-100"  # the optional HITL approval's branch
        assert {nxt, f"{prefix}abort-{pct:03d}"} <= gate.downstream_task_ids
        assert (gate.on_pass, gate.on_fail) == (nxt, f"{prefix}abort-{pct:03d}")
        abort = dag.get_task(f"{prefix}abort-{pct:03d}")
        assert abort.upstream_task_ids == {gate.task_id}  # only its own gate can choose it


def test_go_gate_keeps_report_reachable(dagbag: Any) -> None:
    dag = dagbag.dags.get("wave_pilot")
    go = dag.get_task("preflight.go")
    assert go.stop_task_id in go.downstream_task_ids
    assert {"report", "outcome"} <= dag.get_task(go.stop_task_id).downstream_task_ids


def test_params_of_the_trigger_form(dagbag: Any) -> None:
    dag = dagbag.dags.get("wave_pilot")
    assert set(dag.params.keys()) >= {"dry_run", "force", "datasets"}


def test_second_wave_waits_for_pilot(dagbag: Any) -> None:
    dag = dagbag.dags.get("wave_early_adopters")
    assert "preflight.earlier-waves" in dag.task_ids
    assert (
        dag.get_task("acceptance.evaluate").outlets[0].uri
        == "migration-waves://waves/early-adopters/accepted"
    )


def test_dags_folder_imports_no_heavy_module(project_root: Path) -> None:
    # boto3 is not in the list: creating any Asset makes Airflow load the providers' asset URI
    # handlers (the amazon one imports S3Hook). That is Airflow's cost, paid once per process.
    import subprocess
    import sys

    code = (
        "import sys, runpy; runpy.run_path('dags/migration_waves_dags.py');"
        "heavy = [m for m in ('great_expectations','pandas','pyarrow','scipy','sklearn','pynvml')"
        " if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project_root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""
