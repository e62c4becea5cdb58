"""Read model of the waves dashboard: every wave in order, its status and its latest run.

Built only from the wave specs and what the runs left in the evidence store (no Airflow import),
so the Airflow UI view, the CLI and tests read the same figures. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import fsspec
from pydantic import BaseModel, Field

from migration_waves.evidence.report import (
    COPY_KINDS,
    _data,
    _f,
    _split_dataset,
    _status,
    canary_section,
    resolve_outcome,
)
from migration_waves.evidence.store import (
    STAGES,
    EvidenceStore,
    _check_name,
    _read_json,
    _resolve,
    is_accepted,
    is_frozen,
)
from migration_waves.spec.models import WaveSpec

#: Files of a run folder the view may serve: the pack and the Great Expectations Data Docs.
SERVABLE_FILES = ("report.html", "evidence.json", "runbook.md")
SERVABLE_DIRS = ("data-docs",)
#: The latest wave plan (written by the wave_planner DAG under <state root>/planning/latest/): only
#: these two files are served, through the file route with the run folder token PLAN_FOLDER.
PLANNING_DIR = "planning"
PLANNING_LATEST = "latest"
PLAN_FOLDER = "plan"
PLANNING_FILES = (
    f"{PLANNING_DIR}/{PLANNING_LATEST}/heatmap.png",
    f"{PLANNING_DIR}/{PLANNING_LATEST}/heatmap.html",
)
_PROJECT_ROOT = Path(__file__).absolute().parents[3]
_RUN_FOLDER = re.compile(r"^[A-Za-z0-9._-]{1,250}$")
_RUN_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}[_:]\d{2}[_:]\d{2})")


class StageView(BaseModel):
    """One pipeline stage of a run: its status and how many records passed, failed or were skipped."""

    stage: str
    status: str = Field(description="passed, failed, skipped, recorded or not run")
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    records: int = 0


class LagView(BaseModel):
    """Replication lag of one dataset copy pass against the wave's RPO."""

    dataset: str
    mode: str
    lag_s: float
    rpo_s: float
    within_rpo: bool
    written_at: str = ""


class BaselineView(BaseModel):
    """On-prem baseline of a workload next to the figures measured on the cloud side."""

    workload: str
    baseline_p95_ms: float | None = None
    baseline_error_rate: float | None = None
    post_p95_ms: float | None = None
    post_error_rate: float | None = None
    post_source: str = Field(default="", description="which record the post-migration figures come from")
    target_p95_ms: float | None = None


class CanaryStepView(BaseModel):
    workload: str
    pct: float
    verdict: str
    p95_ratio: float | None = None
    decision: str | None = None
    aborted: bool = False
    written_at: str = ""


class CostView(BaseModel):
    forecast_usd: str | None = None
    budget_usd: str | None = None
    actual_bytes: int | None = None


class RunView(BaseModel):
    """What the latest (or a chosen) run of a wave left in the evidence store."""

    wave: str
    run_id: str
    folder: str
    outcome: str = Field(description="SUCCESS, FAILED, ROLLED BACK, SKIPPED or RUNNING (no outcome yet)")
    reasons: list[str] = Field(default_factory=list)
    updated_at: str = ""
    stages: list[StageView] = Field(default_factory=list)
    lag: list[LagView] = Field(default_factory=list)
    baselines: list[BaselineView] = Field(default_factory=list)
    canary: list[CanaryStepView] = Field(default_factory=list)
    cost: CostView = Field(default_factory=CostView)
    files: list[str] = Field(default_factory=list, description="servable pack files present")
    docs: dict[str, str] = Field(default_factory=dict, description="dataset -> Data Docs index, run-relative")


class WaveView(BaseModel):
    """One wave as the operator sees it."""

    wave: str
    order: int
    description: str = ""
    after: list[str] = Field(default_factory=list)
    status: str = Field(description="accepted, failed, rolled back, running, skipped, blocked or not started")
    accepted_at: str | None = None
    accepted_run: str | None = None
    frozen: bool = False
    blocked_by: list[str] = Field(default_factory=list)
    cutover_eta: str | None = Field(default=None, description="start of the next change window (UTC)")
    runs: list[str] = Field(default_factory=list, description="run folders, newest first")
    latest: RunView | None = None
    error: str | None = None


class PlanView(BaseModel):
    """The newest wave plan (planning/latest/) as the view shows it."""

    wave: str = Field(description="the wave whose file route serves the heatmap (its state root holds it)")
    run_id: str = ""
    generated_at: str = ""
    waves: dict[str, list[str]] = Field(default_factory=dict, description="proposed wave -> workloads")
    warnings: list[str] = Field(default_factory=list)
    heatmap_png: str | None = Field(default=None, description="run-relative path for the file route")
    heatmap_html: str | None = None


def load_specs(specs_dir: str | Path) -> list[WaveSpec]:
    """Every wave spec in the folder, in wave order (bad specs are left to `migration-waves lint`)."""
    from migration_waves.spec.loader import SpecError, load_wave, spec_files

    out = []
    for file in spec_files([Path(specs_dir)]):
        try:
            out.append(load_wave(file))
        except SpecError:
            continue
    return sorted(out, key=lambda s: (s.order, s.wave))


def state_root_of(spec: WaveSpec, override: str | None = None) -> str:
    """The spec's state root, or the override (MIGRATION_WAVES_STATE_ROOT) the tasks also honour."""
    return spec.state_root(override or os.environ.get("MIGRATION_WAVES_STATE_ROOT"))


def planning_state_root(specs: list[WaveSpec], override: str | None = None) -> str:
    """Where plans go: MIGRATION_WAVES_STATE_ROOT, else the first wave's state root, else .demo/state.

    The wave_planner DAG writes with it and the view reads with it, so both find the same folder.
    """
    override = override or os.environ.get("MIGRATION_WAVES_STATE_ROOT")
    if override:
        return override.rstrip("/")
    for spec in sorted(specs, key=lambda s: (s.order, s.wave))[:1]:
        try:
            return spec.state_root()
        except ValueError:  # no state root in the first spec: its own runs fail; plans use the default
            break
    return str(_PROJECT_ROOT / ".demo" / "state")


def latest_plan(
    specs: list[WaveSpec], *, state_root: str | None = None, fs: fsspec.AbstractFileSystem | None = None
) -> PlanView | None:
    """The newest plan under the state root of the first of `specs`, or None when there is none."""
    if not specs:
        return None
    first = min(specs, key=lambda s: (s.order, s.wave))
    try:
        fs_, base = _resolve(planning_state_root([first], state_root), fs)
        folder = f"{base}/{PLANNING_DIR}/{PLANNING_LATEST}"
        summary = _read_json(fs_, f"{folder}/plan.json") or {}
        present = {name for name in PLANNING_FILES if fs_.isfile(f"{base}/{name}")}
    except (ValueError, OSError):
        return None
    if not present and not summary:
        return None
    waves = summary.get("waves") if isinstance(summary.get("waves"), list) else []
    png, html = PLANNING_FILES
    return PlanView(
        wave=first.wave,
        run_id=str(summary.get("run_id") or ""),
        generated_at=str(summary.get("generated_at") or ""),
        waves={
            str(w.get("name")): [str(x) for x in w.get("workloads", [])] for w in waves if isinstance(w, dict)
        },
        warnings=[str(w) for w in summary.get("warnings") or []][:20],
        heatmap_png=png if png in present else None,
        heatmap_html=html if html in present else None,
    )


def check_run_folder(folder: str) -> str:
    """A run folder name from a URL: the safe form only, never a path."""
    if not _RUN_FOLDER.match(folder) or set(folder) <= {"."}:
        raise ValueError(f"run {folder!r} is not a run folder name; use the name from the runs list")
    return folder


def list_runs(root: str, wave: str, fs: fsspec.AbstractFileSystem | None = None) -> list[str]:
    """Run folders of a wave, newest first (by the last change in the folder, then by name)."""
    fs_, base = _resolve(root, fs)
    runs_dir = f"{base}/waves/{_check_name('wave', wave)}/runs"
    try:
        entries = fs_.ls(runs_dir, detail=True)
    except FileNotFoundError:
        return []
    found: list[tuple[float, str, str]] = []
    for entry in entries:
        if entry.get("type") != "directory":
            continue
        name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
        if not _RUN_FOLDER.match(name):
            continue
        found.append((_last_change(fs_, str(entry["name"]), name), _run_time(name), name))
    return [name for _, _, name in sorted(found, reverse=True)]


def _run_time(name: str) -> str:
    match = _RUN_TIME.search(name)
    return match[1].replace("_", ":") if match else ""


def _last_change(fs: fsspec.AbstractFileSystem, path: str, name: str) -> float:
    # Local folders: mtime of the newest stage folder (a task writing a record touches it).
    # Object stores have no folder times: fall back to the timestamp inside the run id.
    try:
        times = [_mtime(e) for e in fs.ls(path, detail=True)]
    except (FileNotFoundError, NotADirectoryError):
        times = []
    times = [t for t in times if t]
    if times:
        return max(times)
    stamp = _run_time(name)
    try:
        return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp() if stamp else 0.0
    except ValueError:
        return 0.0


def _mtime(entry: dict[str, Any]) -> float:
    value = entry.get("mtime", entry.get("LastModified", entry.get("updated")))
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def next_window(cron: str, now: dt.datetime | None = None) -> str | None:
    """Start of the next change window (the wave's cron) in UTC, ISO format; None if unparseable."""
    try:
        from croniter import croniter

        start = now or dt.datetime.now(dt.UTC)
        nxt = croniter(cron, start).get_next(dt.datetime)
    except (ImportError, ValueError, KeyError):
        return None
    return nxt.astimezone(dt.UTC).isoformat(timespec="minutes")


def _stage_views(records: dict[str, dict[str, dict[str, Any]]]) -> list[StageView]:
    out = []
    for stage in STAGES:
        statuses = [_status(env) for env in records.get(stage, {}).values()]
        view = StageView(
            stage=stage,
            status="not run",
            passed=statuses.count("passed"),
            failed=statuses.count("failed"),
            skipped=statuses.count("skipped"),
            records=len(statuses),
        )
        if view.failed:
            view.status = "failed"
        elif statuses and view.skipped == len(statuses):
            view.status = "skipped"
        elif view.passed:
            view.status = "passed"
        elif statuses:
            view.status = "recorded"
        out.append(view)
    return out


def _lag_views(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> list[LagView]:
    rpo_s = spec.targets.rpo_minutes * 60.0
    names = [ds.name for ds in spec.datasets]
    out = []
    for stage in ("data", "cutover"):
        for name, env in sorted(records.get(stage, {}).items()):
            data = _data(env)
            lag = _f(data.get("lag_s"))
            if lag is None:
                continue
            dataset, kind = _split_dataset(name, names)
            out.append(
                LagView(
                    dataset=str(data.get("dataset") or dataset),
                    mode=str(data.get("mode") or kind),
                    lag_s=lag,
                    rpo_s=rpo_s,
                    within_rpo=lag <= rpo_s,
                    written_at=str(env.get("written_at", "")),
                )
            )
    return out


def _p95(summary: Any) -> float | None:
    if not isinstance(summary, dict):
        return None
    return _f(summary.get("p95_ms", summary.get("p95")))


def _baseline_views(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> list[BaselineView]:
    out = []
    for wl in spec.inference_workloads:
        base = _data(records.get("baseline", {}).get(wl.name))
        view = BaselineView(
            workload=wl.name,
            baseline_p95_ms=_p95(base),
            baseline_error_rate=_f(base.get("error_rate")),
            target_p95_ms=float(spec.targets.p95_ms),
        )
        # Post-migration: the candidate side of the widest canary step that measured something.
        steps = []
        for name, env in records.get("canary", {}).items():
            data = _data(env)
            if name.startswith(f"{wl.name}-step-") and isinstance(data.get("candidate"), dict):
                steps.append((_f(data.get("step_pct")) or 0.0, name, data["candidate"]))
        if steps:
            pct, name, cand = max(steps, key=lambda s: s[0])
            view.post_p95_ms, view.post_error_rate = _p95(cand), _f(cand.get("error_rate"))
            view.post_source = f"canary/{name} (cloud side at {pct:g}%)"
        out.append(view)
    return out


def _canary_views(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> list[CanaryStepView]:
    out = []
    for wl in canary_section(spec, records):
        for step in wl["steps"]:
            written = ""
            for kind in ("step", "gate", "abort"):
                env = records.get("canary", {}).get(f"{wl['workload']}-{kind}-{int(step['pct']):03d}")
                written = str((env or {}).get("written_at") or written)
            out.append(
                CanaryStepView(
                    workload=wl["workload"],
                    pct=float(step["pct"]),
                    verdict=str(step.get("verdict") or "not run"),
                    p95_ratio=_f(step.get("p95_ratio")),
                    decision=step.get("decision") if isinstance(step.get("decision"), str) else None,
                    aborted=bool(step.get("aborted")),
                    written_at=written,
                )
            )
    return out


def _cost_view(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> CostView:
    forecast = _data(records.get("preflight", {}).get("egress"))
    names = [ds.name for ds in spec.datasets]
    moved = 0
    seen = False
    for name, env in records.get("data", {}).items():
        _, kind = _split_dataset(name, names)
        nbytes = _f(_data(env).get("bytes_copied"))
        if kind in COPY_KINDS and nbytes is not None:
            moved += int(nbytes)
            seen = True
    value = forecast.get("forecast_usd")
    return CostView(
        forecast_usd=None if value is None else str(value),
        budget_usd=str(forecast.get("budget_usd", spec.budget.egress_usd)),
        actual_bytes=moved if seen else None,
    )


def run_view(spec: WaveSpec, root: str, folder: str, fs: fsspec.AbstractFileSystem | None = None) -> RunView:
    """Everything the dashboard shows about one run folder of the wave."""
    store = EvidenceStore(root, spec.wave, check_run_folder(folder), fs=fs)
    records = store.records()
    outcome_env = records.get("outcome", {}).get("outcome")
    run_id = next(
        (str(env["run_id"]) for stage in records.values() for env in stage.values() if env.get("run_id")),
        folder,
    )
    if outcome_env is None:
        label, reasons = "RUNNING", []
    else:
        label, reasons = resolve_outcome(_data(outcome_env), records)
    written = [str(env.get("written_at", "")) for stage in records.values() for env in stage.values()]
    files = [name for name in SERVABLE_FILES if store.fs.exists(store.path(name))]
    docs = {}
    for name, env in records.get("data", {}).items():
        index = _data(env).get("docs_index")
        if isinstance(index, str) and index:
            relative = _relative(index, store.run_dir)
            if relative:
                dataset = str(_data(env).get("dataset") or name)
                docs[dataset] = relative
    return RunView(
        wave=spec.wave,
        run_id=run_id,
        folder=folder,
        outcome=label,
        reasons=reasons[:10],
        updated_at=max(written, default=""),
        stages=_stage_views(records),
        lag=_lag_views(spec, records),
        baselines=_baseline_views(spec, records),
        canary=_canary_views(spec, records),
        cost=_cost_view(spec, records),
        files=files,
        docs=docs,
    )


def _relative(path: str, run_dir: str) -> str | None:
    """A Data Docs path as run-relative, only when it lies under a servable folder of the run."""
    path = path.split("://", 1)[-1] if "://" in path else path
    run_dir = run_dir.split("://", 1)[-1]
    if not path.startswith(run_dir.rstrip("/") + "/"):
        return None
    rel = path[len(run_dir.rstrip("/")) + 1 :]
    return rel if rel.split("/", 1)[0] in SERVABLE_DIRS else None


def wave_view(
    spec: WaveSpec,
    *,
    accepted: dict[str, bool],
    state_root: str | None = None,
    now: dt.datetime | None = None,
) -> WaveView:
    """One wave's card: status from its markers and latest run. `accepted` maps wave -> accepted."""
    view = WaveView(
        wave=spec.wave,
        order=spec.order,
        description=spec.description,
        after=list(spec.after),
        status="not started",
    )
    try:
        root = state_root_of(spec, state_root)
        marker = is_accepted(root, spec.wave)
        view.frozen = is_frozen(root, spec.wave)
        view.runs = list_runs(root, spec.wave)
        if view.runs:
            view.latest = run_view(spec, root, view.runs[0])
    except (ValueError, OSError) as exc:
        view.error = f"wave {spec.wave}: evidence could not be read: {exc}"
        view.status = "unknown"
        return view
    view.blocked_by = [w for w in spec.after if not accepted.get(w)]
    if marker:
        view.status = "accepted"
        view.accepted_at = str(marker.get("accepted_at") or "") or None
        view.accepted_run = str(marker.get("run_id") or "") or None
    elif view.latest is not None:
        view.status = view.latest.outcome.lower()
    elif view.blocked_by:
        view.status = "blocked"
    if not marker:
        view.cutover_eta = next_window(spec.window, now)
    return view


def dashboard(specs: list[WaveSpec], *, state_root: str | None = None) -> list[WaveView]:
    """Every wave in order with its status and latest run."""
    accepted: dict[str, bool] = {}
    for spec in specs:
        try:
            accepted[spec.wave] = is_accepted(state_root_of(spec, state_root), spec.wave) is not None
        except (ValueError, OSError):
            accepted[spec.wave] = False
    return [wave_view(spec, accepted=accepted, state_root=state_root) for spec in specs]


def read_run_file(
    spec: WaveSpec, folder: str, relpath: str, *, state_root: str | None = None
) -> tuple[bytes, str]:
    """Bytes and file name of a servable file of a run (report, evidence, runbook, Data Docs).

    Raises FileNotFoundError for anything else, so the view can never read outside a run's pack.
    """
    parts = [p for p in relpath.split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
        raise FileNotFoundError(f"{relpath!r} is not a file of the evidence pack")
    if "/".join(parts) in PLANNING_FILES:
        # The latest plan's heatmap, from the wave's state root; only with the PLAN_FOLDER token.
        if folder != PLAN_FOLDER:
            raise FileNotFoundError(
                f"{relpath!r} is served only as runs/<wave>/{PLAN_FOLDER}/files/{relpath}"
            )
        fs, base = _resolve(state_root_of(spec, state_root), None)
        raw = _read_bytes(fs, f"{base}/{'/'.join(parts)}")
        if raw is None:
            raise FileNotFoundError(f"no wave plan yet: trigger the wave_planner DAG ({relpath} is missing)")
        return raw, parts[-1]
    if not ((len(parts) == 1 and parts[0] in SERVABLE_FILES) or parts[0] in SERVABLE_DIRS):
        raise FileNotFoundError(
            f"{relpath!r} is not served; only {', '.join(SERVABLE_FILES)} and Data Docs under data-docs/"
        )
    store = EvidenceStore(state_root_of(spec, state_root), spec.wave, check_run_folder(folder))
    path = store.path(*parts)
    raw = _read_bytes(store.fs, path)
    if raw is None:
        raise FileNotFoundError(f"wave {spec.wave}: run {folder} has no {relpath}")
    return raw, parts[-1]


def _read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes | None:
    try:
        if fs.isdir(path):
            return None
        return bytes(fs.cat_file(path))
    except (FileNotFoundError, IsADirectoryError):
        return None


def read_outcome(spec: WaveSpec, folder: str, *, state_root: str | None = None) -> dict[str, Any] | None:
    """The outcome record of a run (used by notifications)."""
    store = EvidenceStore(state_root_of(spec, state_root), spec.wave, check_run_folder(folder))
    return _read_json(store.fs, store.record_path("outcome", "outcome"))
