"""Thin operators of the wave DAG.

Each operator stores its arguments in `__init__`, and in `execute()` resolves the spec and
stores, calls one core function, writes the full result to the evidence store, pushes a small
JSON-safe summary to XCom, and raises a typed failure when a gate does not pass.
Core modules are imported inside `run()` so that DAG parsing stays fast.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from migration_waves.airflow.context import WaveRunContext, resolve_fs
from migration_waves.airflow.links import DataDocsLink, WaveReportLink
from migration_waves.spec.models import DatasetClass

if TYPE_CHECKING:
    from migration_waves.transfer.manifest import Manifest


class WaveGateFailed(AirflowFailException):
    """A gate of the wave did not pass; carries the evidence path. Not retried."""

    def __init__(self, message: str, *, evidence: str | None = None) -> None:
        self.evidence = evidence
        super().__init__(message + (f" (evidence: {evidence})" if evidence else ""))


def jsonable(result: Any) -> dict[str, Any]:
    """A core result as a plain dict."""
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json")
    if isinstance(result, dict):
        return result
    raise TypeError(f"cannot store {type(result).__name__} as evidence")


_SUMMARY_KEYS = (
    "passed", "outcome", "files_copied", "bytes_copied", "files_skipped", "files_deleted",
    "files_verified", "gflops", "time_to_recover_s", "steps_lost", "p95_ratio", "forecast_usd",
    "lag_s", "candidate_weight", "reason",
)  # fmt: skip


def summarize(record: dict[str, Any], evidence: str) -> dict[str, Any]:
    """The small XCom summary: a few figures and the path of the full record."""
    out = {k: record[k] for k in _SUMMARY_KEYS if k in record and not isinstance(record[k], dict | list)}
    out["evidence"] = evidence
    reasons = record.get("reasons") or []
    if reasons:
        out["reasons"] = list(reasons)[:5]
    return out


class WaveOperator(BaseOperator):
    """Base of every wave task: spec in, one core call, evidence out, typed failure."""

    stage: ClassVar[str] = "wave"
    action: ClassVar[str] = "task"
    skip_on_dry_run: ClassVar[bool] = True
    template_fields: Iterable[str] = ("wave_spec",)
    ui_color = "#e8f4fd"
    operator_extra_links = (WaveReportLink(),)

    def __init__(self, *, wave_spec: str, subject: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wave_spec = wave_spec
        self.subject = subject

    @property
    def evidence_name(self) -> str:
        return f"{self.subject}-{self.action}" if self.subject else self.action

    def make_context(self, context: Any) -> WaveRunContext:
        """The run context; the scheduled-sync DAG overrides it to keep its evidence apart."""
        return WaveRunContext.from_airflow(self.wave_spec, context)

    def execute(self, context: Any) -> dict[str, Any]:
        ctx = self.make_context(context)
        if self.skip_on_dry_run and ctx.dry_run:
            raise AirflowSkipException("dry run: nothing moves")
        started = time.time()
        record = jsonable(self.run(ctx))
        record.setdefault("duration_s", round(time.time() - started, 3))
        evidence = ctx.store.write(self.stage, self.evidence_name, record)
        summary = summarize(record, evidence)
        if record.get("passed") is False:
            reasons = "; ".join(record.get("reasons") or []) or "gate failed"
            raise WaveGateFailed(f"wave {ctx.spec.wave}: {self.task_id}: {reasons}", evidence=evidence)
        return summary

    def run(self, ctx: WaveRunContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


# -- preflight ------------------------------------------------------------------------------------


class SpecCheckOperator(WaveOperator):
    """Lint the wave spec and its references (golden images, pricing, payloads)."""

    stage, action, skip_on_dry_run = "preflight", "spec", False

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from pathlib import Path

        from migration_waves.spec.loader import lint_paths

        # Lint the whole folder so cross-wave rules (after, order) see the sibling waves;
        # report this wave's problems only.
        spec_file = Path(self.wave_spec).resolve()
        _, all_problems = lint_paths([spec_file.parent])
        problems = [p for p in all_problems if Path(p.file).resolve() == spec_file]
        return {
            "passed": not problems,
            "spec": self.wave_spec,
            "problems": [str(p) for p in problems],
            "reasons": [str(p) for p in problems],
        }


class EarlierWavesOperator(WaveOperator):
    """Every wave named in `after` must be accepted first."""

    stage, action, skip_on_dry_run = "preflight", "earlier-waves", False

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.evidence.store import is_accepted

        status = {dep: is_accepted(ctx.state_root, dep) for dep in ctx.spec.after}
        missing = [dep for dep, acc in status.items() if not acc]
        return {
            "passed": not missing,
            "after": ctx.spec.after,
            "accepted": {dep: acc for dep, acc in status.items() if acc},
            "reasons": [
                f"wave {ctx.spec.wave} runs after {dep!r}, which is not accepted yet; "
                f"run and accept {dep} first"
                for dep in missing
            ],
        }


class CapacityOperator(WaveOperator):
    """Room at every target for what the plan will copy; a GPU image needs a GPU-capable queue."""

    stage, action, skip_on_dry_run = "preflight", "capacity", False

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.gates.preflight import check_capacity

        return check_capacity(ctx.spec, resolve=resolve_fs)


class SecurityOperator(WaveOperator):
    """Executed security checklist: tags, no secrets, credentials, encryption, audit logs, zones."""

    stage, action, skip_on_dry_run = "preflight", "security", False

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.airflow.aws import s3_client_for
        from migration_waves.gates.preflight import check_security

        # s3:// sites are checked through the provider API (encryption, TLS policy, access logs).
        return check_security(ctx.spec, s3_client=s3_client_for)


class PlanOperator(WaveOperator):
    """List both sides of every dataset and record the transfer plan (shown on dry run)."""

    stage, action, skip_on_dry_run = "preflight", "plan", False

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.gates.preflight import plan_datasets

        plans = plan_datasets(ctx.spec, resolve=resolve_fs, previous=lambda ds: _previous(ctx, ds))
        failed = [p for p in plans if not p["passed"]]
        return {
            "passed": not failed,
            "datasets": plans,
            "bytes_to_copy": sum(p["bytes_to_copy"] for p in plans),
            "reasons": [r for p in failed for r in p["reasons"]],
        }


class EgressBudgetOperator(WaveOperator):
    """Forecast egress cost of the plan; block the wave when it exceeds the budget."""

    stage, action, skip_on_dry_run = "preflight", "egress", False

    def run(self, ctx: WaveRunContext) -> Any:
        from migration_waves.cost.egress import egress_forecast
        from migration_waves.cost.pricing import load_pricing

        plan = ctx.store.read("preflight", "plan") or {}
        data = plan.get("data", plan)
        by_dataset = {p["dataset"]: int(p["bytes_to_copy"]) for p in data.get("datasets", [])}
        pricing = load_pricing(ctx.spec.resolve_path(ctx.spec.budget.pricing))
        return egress_forecast(ctx.spec, by_dataset, pricing)


class GoGateOperator(BaseBranchOperator):
    """Dry runs stop after the plan; an accepted wave short-circuits unless forced."""

    template_fields: Iterable[str] = ("wave_spec",)
    ui_color = "#fff3cd"

    def __init__(self, *, wave_spec: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wave_spec = wave_spec

    #: Where a stopped run goes: the rollback decider, whose downstream (report, outcome) then
    #: still runs. Returning None would skip every direct downstream task, the report included.
    stop_task_id = "rollback.restore"

    def choose_branch(self, context: Any) -> list[str]:
        from migration_waves.evidence.store import is_accepted

        ctx = WaveRunContext.from_airflow(self.wave_spec, context)
        if ctx.dry_run:
            self.log.info("Dry run: the plan is recorded in preflight/plan; nothing moves.")
            return [self.stop_task_id]
        accepted = is_accepted(ctx.state_root, ctx.spec.wave)
        if accepted and not ctx.params.get("force"):
            self.log.info(
                "Wave %s was accepted by run %s; pass force=true to run it again.",
                ctx.spec.wave,
                accepted.get("run_id"),
            )
            return [self.stop_task_id]
        return sorted(self.downstream_task_ids)


# -- baseline -------------------------------------------------------------------------------------


class BaselineOperator(WaveOperator):
    """Measure the on-prem endpoint (p50/p95/p99, error rate, throughput) before anything moves."""

    stage, action = "baseline", "measure"

    @property
    def evidence_name(self) -> str:
        return str(self.subject)

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.canary.judge import summarize as summarize_samples
        from migration_waves.canary.load import load_payloads, run_load

        wl = ctx.spec.workload(str(self.subject))
        payloads = load_payloads(ctx.spec.resolve_path(wl.payloads))
        url = str(wl.baseline).rstrip("/") + wl.predict_path
        samples = run_load(
            url, payloads, n_requests=wl.canary.samples_per_step, concurrency=wl.canary.concurrency
        )
        stats = jsonable(summarize_samples(samples))
        ok = stats.get("count", 0) >= wl.canary.min_samples and stats.get("error_rate", 1) <= 0.5
        _save_samples(ctx, f"baseline-{wl.name}", samples)
        return {
            **stats,
            "workload": wl.name,
            "url": url,
            "passed": ok,
            "reasons": []
            if ok
            else [
                f"workload {wl.name}: on-prem baseline {url} answered {stats.get('count', 0)} requests with "
                f"error rate {stats.get('error_rate')}; is the endpoint up?"
            ],
        }


def _save_samples(ctx: WaveRunContext, name: str, samples: list[Any]) -> str:
    return ctx.store.write("samples", name, {"samples": [jsonable(s) for s in samples]})


# -- data -----------------------------------------------------------------------------------------


def _manifest_path(ctx: WaveRunContext, dataset: str, kind: str) -> str:
    return f"{ctx.dataset_state(dataset)}/{kind}.parquet"


def _state_fs(ctx: WaveRunContext) -> Any:
    import fsspec

    fs, _ = fsspec.core.url_to_fs(ctx.state_root)
    return fs


def _read_manifest(ctx: WaveRunContext, dataset: str, kind: str) -> Manifest | None:
    from migration_waves.transfer.manifest import Manifest

    fs = _state_fs(ctx)
    path = _manifest_path(ctx, dataset, kind)
    return Manifest.read_parquet(fs, path) if fs.exists(path) else None


def _write_manifest(ctx: WaveRunContext, dataset: str, kind: str, manifest: Manifest) -> str:
    fs = _state_fs(ctx)
    path = _manifest_path(ctx, dataset, kind)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    manifest.write_parquet(fs, path)
    return path


def _previous(ctx: WaveRunContext, dataset: str) -> Manifest | None:
    """The last verified manifest, less any path that failed verification since."""
    manifest = _read_manifest(ctx, dataset, "verified")
    bad = set(_read_recopy(ctx, dataset))
    if manifest is not None and bad:
        manifest = manifest.without(bad)
    return manifest


def _recopy_path(ctx: WaveRunContext, dataset: str) -> str:
    return f"{ctx.dataset_state(dataset)}/recopy.json"


def _read_recopy(ctx: WaveRunContext, dataset: str) -> list[str]:
    import json

    fs, path = _state_fs(ctx), _recopy_path(ctx, dataset)
    return list(json.loads(fs.cat_file(path))["paths"]) if fs.exists(path) else []


def _write_recopy(ctx: WaveRunContext, dataset: str, paths: list[str]) -> None:
    import json

    fs, path = _state_fs(ctx), _recopy_path(ctx, dataset)
    if not paths:
        if fs.exists(path):
            fs.rm_file(path)
        return
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, json.dumps({"paths": sorted(set(paths) | set(_read_recopy(ctx, dataset)))}).encode())


#: Telemetry ingest takes a file once it has been quiet this long; the file a service is still
#: appending to waits for the next ingest (append-only logs: nothing is lost, nothing torn).
TELEMETRY_QUIET_S = 5.0


def _still_written(
    fs: Any, root: str, include: list[str], exclude: list[str], *, quiet_s: float
) -> list[str]:
    from migration_waves.transfer.manifest import list_files

    now = time.time()
    return [
        rel
        for rel, _, mtime in list_files(fs, root, include=include, exclude=exclude)
        if mtime and now - mtime < quiet_s
    ]


class DatasetOperator(WaveOperator):
    """A task about one dataset; skipped when the run's `datasets` param leaves it out."""

    stage = "data"

    def execute(self, context: Any) -> dict[str, Any]:
        ctx_params = context.get("params") or {}
        chosen = ctx_params.get("datasets") or []
        if chosen and self.subject not in chosen:
            raise AirflowSkipException(f"dataset {self.subject} is not in this run's datasets {chosen}")
        return super().execute(context)


class SnapshotManifestOperator(DatasetOperator):
    """Source manifest with content digests, stored as Parquet in the state store."""

    action = "snapshot"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.transfer.manifest import build_manifest

        ds = ctx.spec.dataset(str(self.subject))
        fs, root = resolve_fs(ctx.spec.location(ds.source))
        manifest = build_manifest(
            fs, root, algorithm=ds.checksum.value, include=ds.include, exclude=ds.exclude, links=ds.links
        )
        path = _write_manifest(ctx, ds.name, "source", manifest)
        return {
            "dataset": ds.name,
            "manifest": path,
            "files": len(manifest.entries),
            "bytes": manifest.total_bytes,
            "algorithm": manifest.algorithm,
            "passed": bool(manifest.entries),
            "reasons": []
            if manifest.entries
            else [
                f"dataset {ds.name}: source {ctx.spec.location(ds.source).url} holds no files; "
                "check the site storage and the dataset path"
            ],
        }


class CopyDatasetOperator(DatasetOperator):
    """Seed or sync: copy what the plan says, hashing while streaming, placing files atomically."""

    action = "seed"

    def __init__(self, *, mode: str = "seed", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    @property
    def evidence_name(self) -> str:
        return f"{self.subject}-{self.mode}"

    def selection(self, ctx: WaveRunContext, ds: Any) -> tuple[list[str], list[str]]:
        """include/exclude patterns of this copy: the dataset's (a shard's copy selects its own files)."""
        return list(ds.include), list(ds.exclude)

    def write_target_manifest(self, ctx: WaveRunContext, dataset: str, manifest: Manifest) -> str:
        """Record what the copy placed: the dataset's "copied" manifest, which verify reads."""
        return _write_manifest(ctx, dataset, "copied", manifest)

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.airflow.progress import CopyProgress
        from migration_waves.transfer.engine import copy_tree

        ds = ctx.spec.dataset(str(self.subject))
        src_fs, src_root = resolve_fs(ctx.spec.location(ds.source))
        dst_fs, dst_root = resolve_fs(ctx.spec.location(ds.target))
        started = time.time()
        include, exclude = self.selection(ctx, ds)
        held_back: list[str] = []
        if ds.class_ is DatasetClass.TELEMETRY:
            held_back = _still_written(src_fs, src_root, ds.include, ds.exclude, quiet_s=TELEMETRY_QUIET_S)
            exclude += [glob.escape(p) for p in held_back]
        # Files/bytes of the plan done, rate and ETA in the task log every N seconds (airflow/progress.py).
        with CopyProgress(f"{ds.name} {self.mode}", log=self.log) as progress:
            result = copy_tree(
                src_fs,
                src_root,
                dst_fs,
                dst_root,
                dataset=ds.name,
                algorithm=ds.checksum.value,
                delete=ds.delete and self.mode != "seed",
                max_delete=ds.max_delete,
                previous=_previous(ctx, ds.name),
                include=include,
                exclude=exclude,
                recopy=_read_recopy(ctx, ds.name),
                links=ds.links,
                **progress.hooks(),
            )
        record = jsonable(result)
        record["manifest"] = self.write_target_manifest(ctx, ds.name, result.target_manifest)
        record.pop("target_manifest", None)
        record["mode"] = self.mode
        record["held_back"] = held_back
        # Replication lag: the target now holds the source as listed when this pass started.
        record["lag_s"] = round(time.time() - started, 3)
        if self.mode != "seed":
            rpo_s = ctx.spec.targets.rpo_minutes * 60
            if record["lag_s"] > rpo_s:
                record["passed"] = False
                record.setdefault("reasons", []).append(
                    f"dataset {ds.name}: replication lag {record['lag_s']:.0f}s exceeds the RPO {rpo_s:.0f}s"
                )
        return record


class VerifyDatasetOperator(DatasetOperator):
    """Read the target back, compare digests, and validate both manifests with Great Expectations."""

    action = "verify"
    operator_extra_links = (WaveReportLink(), DataDocsLink())

    def __init__(self, *, mode: str = "seed", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    @property
    def evidence_name(self) -> str:
        return f"{self.subject}-verify" + ("" if self.mode == "seed" else f"-{self.mode}")

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.transfer.engine import verify_tree
        from migration_waves.validation.manifests import validate_manifests

        ds = ctx.spec.dataset(str(self.subject))
        expected = _read_manifest(ctx, ds.name, "copied")
        if expected is None:
            return {
                "dataset": ds.name,
                "passed": False,
                "reasons": [f"dataset {ds.name}: nothing was copied yet; run the seed first"],
            }
        dst_fs, dst_root = resolve_fs(ctx.spec.location(ds.target))
        verify = verify_tree(dst_fs, dst_root, expected, dataset=ds.name, links=ds.links)
        docs_dir = ctx.store.path("data-docs", ds.name)
        observed = verify.observed
        if observed is None:  # verify_tree always reads back; keep GX honest if that ever changes
            raise WaveGateFailed(f"dataset {ds.name}: verification produced no read-back manifest")
        validation = validate_manifests(expected, observed, dataset=ds.name, docs_dir=docs_dir)
        record = jsonable(verify)
        record.pop("observed", None)
        record["validation"] = jsonable(validation)
        record["docs_index"] = record["validation"].get("docs_index")
        record["passed"] = bool(verify.passed and validation.passed)
        record["reasons"] = list(verify.reasons) + list(validation.reasons)
        if record["passed"]:
            record["manifest"] = _write_manifest(ctx, ds.name, "verified", expected)
            _write_recopy(ctx, ds.name, [])
            return record
        bad = sorted({*verify.missing, *verify.size_mismatch, *verify.digest_mismatch})
        if bad:
            # The next copy re-sends exactly these: a bad target file must never be vouched for
            # by an earlier verified manifest, or every re-run would skip it and fail again.
            _write_recopy(ctx, ds.name, bad)
            record["recopy"] = bad
            record["reasons"].append(
                f"dataset {ds.name}: the next run's copy re-sends these {len(bad)} file(s); "
                "re-run the wave, or clear this dataset's copy task and its downstream tasks"
            )
        if verify.extra:
            record["reasons"].append(
                f"dataset {ds.name}: {len(verify.extra)} file(s) at the target are not from the source; "
                "remove them, or set delete: true on the dataset to let sync remove them"
            )
        return record


# -- gpu ------------------------------------------------------------------------------------------


class GpuConformanceOperator(WaveOperator):
    """NVML readings of this worker against the golden image."""

    stage, action = "gpu", "conformance"

    def run(self, ctx: WaveRunContext) -> Any:
        from migration_waves.gpu.conformance import check_conformance
        from migration_waves.gpu.nvml import take_snapshot
        from migration_waves.spec.loader import golden_image_for

        image = golden_image_for(ctx.spec, str(self.subject))
        snapshot = take_snapshot()
        ctx.store.write("gpu", f"{image.name}-nvml", jsonable(snapshot))
        return check_conformance(snapshot, image)


class GpuBenchmarkOperator(WaveOperator):
    """Benchmark this worker against the golden image's recorded baselines: the full suite (rows +
    Markdown table, headline gflops/ratio) when the image has a `suite:`, else the single matmul."""

    stage, action = "gpu", "benchmark"

    def run(self, ctx: WaveRunContext) -> Any:
        from migration_waves.gpu.bench import run_benchmark
        from migration_waves.gpu.nvml import take_snapshot
        from migration_waves.gpu.suite import run_suite
        from migration_waves.spec.loader import golden_image_for

        image = golden_image_for(ctx.spec, str(self.subject))
        if image.suite is not None:
            return run_suite(image, snapshot=take_snapshot(frameworks=False))
        return run_benchmark(image, snapshot=take_snapshot())


# -- resilience -----------------------------------------------------------------------------------


class InterruptionDrillOperator(WaveOperator):
    """Kill the training job mid-run, resume it, measure recovery against RTO/RPO."""

    stage, action = "resilience", "drill"

    def run(self, ctx: WaveRunContext) -> Any:
        import tempfile
        from pathlib import Path

        from migration_waves.resilience.drill import run_interruption_drill

        wl = ctx.spec.workload(str(self.subject))
        scratch = Path(tempfile.mkdtemp(prefix=f"drill-{wl.name}-"))
        return run_interruption_drill(
            list(wl.command),
            scratch,
            workload=wl.name,
            rto_s=ctx.spec.targets.rto_minutes * 60,
            rpo_s=ctx.spec.targets.rpo_minutes * 60,
            signal=wl.drill.signal,
            grace_s=wl.drill.grace_s,
            interrupt_after_checkpoints=wl.drill.interrupt_after_checkpoints,
            timeout_s=wl.drill.timeout_s,
        )


# -- canary ---------------------------------------------------------------------------------------


def _router(wl: Any) -> Any:
    """The workload's router; AWS kinds get their boto3 client from the amazon provider's hook, a GCP
    URL map its credentials from the google provider's (GoogleBaseHook) when the spec names a conn_id."""
    from migration_waves.airflow.aws import router_client_for
    from migration_waves.airflow.gcp import router_credentials_for
    from migration_waves.canary.cloud_router import router_from_spec

    return router_from_spec(
        wl.router, client=router_client_for(wl.router), credentials=router_credentials_for(wl.router)
    )


class SyntheticCheckOperator(WaveOperator):
    """Synthetic checks of both endpoints before any traffic moves."""

    stage, action = "canary", "synthetic"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.canary.checks import synthetic_check
        from migration_waves.canary.load import load_payloads

        wl = ctx.spec.workload(str(self.subject))
        payload = load_payloads(ctx.spec.resolve_path(wl.payloads))[0]
        results = {
            side: jsonable(
                synthetic_check(
                    str(url),
                    predict_path=wl.predict_path,
                    health_path=wl.health_path,
                    payload=payload,
                    workload=wl.name,
                )
            )
            for side, url in (("baseline", wl.baseline), ("candidate", wl.candidate))
        }
        weight = _router(wl).get_candidate_weight()
        reasons = [r for res in results.values() for r in res.get("reasons", [])]
        return {
            "workload": wl.name,
            "checks": results,
            "candidate_weight": weight,
            "passed": all(r["passed"] for r in results.values()),
            "reasons": reasons,
        }


class CanaryStepOperator(WaveOperator):
    """Shift the candidate's weight, drive load through the router, judge candidate vs baseline."""

    stage, action = "canary", "step"

    def __init__(self, *, step_pct: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_pct = step_pct

    @property
    def evidence_name(self) -> str:
        return f"{self.subject}-step-{self.step_pct:03d}"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        """Measure the step; a router error mid-step records outcome "error" and the gate aborts."""
        from migration_waves.airflow.router_state import router_error_step, watched_router
        from migration_waves.canary.router import RouterError

        wl = ctx.spec.workload(str(self.subject))
        self._watched = watched_router(ctx, wl.name, _router(wl))
        try:
            rec = self._measure(ctx)
            # The router must still hold the step's weight after the load: one that died or was
            # moved mid-step leaves a measurement of an unknown split.
            now = self._watched.get_candidate_weight()
            if now != self.step_pct:
                raise RouterError(f"{self._watched!r} moved to candidate {now}% during the step")
        except RouterError as exc:
            return router_error_step(wl.name, self.step_pct, exc, self._watched)
        return rec

    def _measure(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.canary.judge import GatePolicy
        from migration_waves.canary.load import load_payloads
        from migration_waves.canary.rules import config_for, plan_samples
        from migration_waves.canary.steps import run_step

        wl = ctx.spec.workload(str(self.subject))
        if wl.canary.judge is not None:
            return self._run_judged(ctx, wl)
        # The sample size each rule needs for its power, shown before any traffic moves.
        plan = plan_samples(config_for(wl.canary))
        self.log.info("%s step %s%%: planned %s samples per side: %s", wl.name, self.step_pct,
                      plan.required, "; ".join(plan.reasons))  # fmt: skip
        policy = GatePolicy(
            p95_ratio_max=wl.canary.p95_ratio_max,
            error_rate_max=wl.canary.error_rate_max,
            min_samples=wl.canary.min_samples,
            p95_min_delta_ms=wl.canary.p95_min_delta_ms,
        )
        step = run_step(
            self._watched,
            str(wl.router.admin).rstrip("/") + wl.predict_path,
            load_payloads(ctx.spec.resolve_path(wl.payloads)),
            workload=wl.name,
            step_pct=self.step_pct,
            n_requests=wl.canary.samples_per_step,
            concurrency=wl.canary.concurrency,
            policy=policy,
            rate_rps=wl.canary.rate_rps,
            batch_sizes=wl.canary.batch_sizes,
        )
        _save_samples(ctx, f"canary-{wl.name}-{self.step_pct:03d}", step.samples)
        verdict = jsonable(step.verdict)
        return {
            "workload": wl.name,
            "step_pct": self.step_pct,
            "router_weight": step.router_weight,
            "requests_routed": step.requests_routed,
            "pinned": step.pinned,
            "unattributed": step.unattributed,
            "sample_plan": jsonable(plan),
            **{
                k: verdict.get(k)
                for k in (
                    "outcome",
                    "baseline",
                    "candidate",
                    "p95_ratio",
                    "p95_ratio_ci90",
                    "mannwhitney_p",
                    "policy",
                    "reasons",
                )
            },
            "verdict_passed": verdict.get("outcome") == "pass",
            # The step did its work (moved traffic, measured); the gate after it decides.
            "passed": True,
        }

    def _run_judged(self, ctx: WaveRunContext, wl: Any) -> dict[str, Any]:
        """canary.judge set: per-metric rules; the step holds for more samples while a rule says hold."""
        from migration_waves.canary.load import load_payloads
        from migration_waves.canary.steps import run_judged_step

        step = run_judged_step(
            self._watched,
            str(wl.router.admin).rstrip("/") + wl.predict_path,
            load_payloads(ctx.spec.resolve_path(wl.payloads)),
            workload=wl.name,
            step_pct=self.step_pct,
            n_requests=wl.canary.samples_per_step,
            concurrency=wl.canary.concurrency,
            config=wl.canary.judge,
            rate_rps=wl.canary.rate_rps,
            batch_sizes=wl.canary.batch_sizes,
        )
        _save_samples(ctx, f"canary-{wl.name}-{self.step_pct:03d}", step.samples)
        verdict = jsonable(step.verdict)
        self.log.info("%s step %s%%: %s -> %s after %d look(s); plan %s per side", wl.name, self.step_pct,
                      verdict["outcome"], verdict["action"], len(step.looks), step.plan.required)  # fmt: skip
        return {
            "workload": wl.name,
            "step_pct": self.step_pct,
            "judge": "rules",
            "router_weight": step.router_weight,
            "requests_routed": step.requests_routed,
            "pinned": step.pinned,
            "unattributed": step.unattributed,
            "sample_plan": jsonable(step.plan),
            "looks": [jsonable(look) for look in step.looks],
            "p95_ratio": step.p95_ratio,
            **{k: verdict.get(k) for k in ("outcome", "action", "baseline", "candidate", "metrics")},
            "reasons": verdict.get("reasons"),
            "verdict_passed": verdict.get("outcome") == "pass",
            "passed": True,  # the gate after the step decides
        }


class CanaryGateOperator(BaseBranchOperator):
    """Branch to the next step when the verdict passes; to this step's rollback otherwise."""

    template_fields: Iterable[str] = ("wave_spec",)
    ui_color = "#fff3cd"

    def __init__(
        self, *, wave_spec: str, subject: str, step_pct: int, on_pass: str, on_fail: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.wave_spec = wave_spec
        self.subject = subject
        self.step_pct = step_pct
        self.on_pass = on_pass
        self.on_fail = on_fail

    def choose_branch(self, context: Any) -> str:
        ctx = WaveRunContext.from_airflow(self.wave_spec, context)
        rec = ctx.store.read("canary", f"{self.subject}-step-{self.step_pct:03d}") or {}
        data = rec.get("data", rec)
        outcome = data.get("outcome", "missing")
        # Rules judge (canary.judge): its action already applied the inconclusive policy; only
        # "continue" goes on. Legacy judge: only "pass" goes on.
        action = data.get("action")
        go_on = action == "continue" if action is not None else outcome == "pass"
        decision = self.on_pass if go_on and outcome == "pass" else self.on_fail
        ctx.store.write(
            "canary",
            f"{self.subject}-gate-{self.step_pct:03d}",
            {
                "workload": self.subject,
                "step_pct": self.step_pct,
                "outcome": outcome,
                "action": action,
                "looks": len(data.get("looks") or []) or None,
                "decision": "continue" if decision == self.on_pass else "rollback",
                "decided_at": time.time(),
                "reasons": data.get("reasons", []),
            },
        )
        self.log.info("Gate at %s%%: %s -> %s (%s)", self.step_pct, outcome, decision, data.get("reasons"))
        return decision


class CanaryAbortOperator(WaveOperator):
    """Put all traffic back on-prem right away, then fail: a failed gate never ends green."""

    stage, action = "canary", "abort"

    def __init__(self, *, step_pct: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_pct = step_pct

    @property
    def evidence_name(self) -> str:
        return f"{self.subject}-abort-{self.step_pct:03d}"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.airflow.router_state import attempt_label, fail_retryable, watched_router
        from migration_waves.canary.router import RouterError, restore_baseline

        wl = ctx.spec.workload(str(self.subject))
        gate = (ctx.store.read("canary", f"{wl.name}-gate-{self.step_pct:03d}") or {}).get("data", {})
        why = "; ".join(gate.get("reasons") or []) or f"verdict {gate.get('outcome')}"
        router = watched_router(ctx, wl.name, _router(wl))
        try:
            restored = jsonable(restore_baseline(router))
        except RouterError as exc:  # retried by Airflow; the record states the split it left
            fail_retryable(ctx, self.stage, self.evidence_name, {
                "workload": wl.name, "step_pct": self.step_pct, "rolled_back": False, "passed": False,
                "reasons": [f"workload {wl.name}: canary gate at {self.step_pct}% failed ({why}); "
                            f"rollback to on-prem failed ({attempt_label(ctx)}): {exc}; "
                            f"{router.split_statement()}"],
            })  # fmt: skip
        decided = gate.get("decided_at")
        seconds = round(time.time() - decided, 3) if decided else None
        return {
            "workload": wl.name,
            "step_pct": self.step_pct,
            "restore": restored,
            "time_to_rollback_s": seconds,
            "rolled_back": True,
            "passed": False,
            "reasons": [
                f"workload {wl.name}: canary gate at {self.step_pct}% failed ({why}); "
                f"traffic restored to on-prem"
            ],
        }


class PromoteOperator(WaveOperator):
    """Record that the candidate holds 100% of the workload's traffic."""

    stage, action = "canary", "promote"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        wl = ctx.spec.workload(str(self.subject))
        weight = _router(wl).get_candidate_weight()
        return {
            "workload": wl.name,
            "candidate_weight": weight,
            "passed": weight == 100,
            "reasons": [] if weight == 100 else [f"workload {wl.name}: candidate holds {weight}%, not 100%"],
        }


# -- cutover --------------------------------------------------------------------------------------


class FreezeWritesOperator(WaveOperator):
    """Freeze on-prem writes of the wave's mutable datasets for the final sync."""

    stage, action = "cutover", "freeze"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.evidence.store import freeze_marker_path, freeze_writes

        freeze_writes(ctx.state_root, ctx.spec.wave, ctx.run_id)
        time.sleep(0.5)  # writers poll the marker; give an in-flight write time to land
        return {"frozen": True, "marker": freeze_marker_path(ctx.state_root, ctx.spec.wave), "passed": True}


class SwitchTrafficOperator(WaveOperator):
    """Make the switch final: every inference workload serves from the cloud."""

    stage, action = "cutover", "switch-traffic"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        weights = {}
        for wl in ctx.spec.inference_workloads:
            router = _router(wl)
            if router.get_candidate_weight() != 100:
                router.set_candidate_weight(100)
            weights[wl.name] = router.get_candidate_weight()
        bad = [w for w, v in weights.items() if v != 100]
        return {
            "weights": weights,
            "passed": not bad,
            "reasons": [f"workload {w}: router holds {weights[w]}% on the cloud, not 100%" for w in bad],
        }


class PostCutoverChecksOperator(WaveOperator):
    """Synthetic checks through the router after the switch."""

    stage, action = "cutover", "post-checks"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.canary.checks import synthetic_check
        from migration_waves.canary.load import load_payloads

        checks = {}
        for wl in ctx.spec.inference_workloads:
            payload = load_payloads(ctx.spec.resolve_path(wl.payloads))[0]
            url = str(wl.router.admin)
            checks[wl.name] = jsonable(
                synthetic_check(
                    url,
                    predict_path=wl.predict_path,
                    health_path=wl.health_path,
                    payload=payload,
                    workload=wl.name,
                )
            )
        return {
            "checks": checks,
            "passed": all(c["passed"] for c in checks.values()),
            "reasons": [r for c in checks.values() for r in c.get("reasons", [])],
        }


# -- acceptance, rollback, report, outcome -------------------------------------------------------


class AcceptanceOperator(WaveOperator):
    """Targets vs measured figures; when all pass, mark the wave accepted (an Asset event)."""

    stage, action = "acceptance", "evaluate"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.evidence.store import mark_accepted
        from migration_waves.gates.acceptance import evaluate_acceptance

        result = evaluate_acceptance(ctx.spec, ctx.store.records())
        if result["passed"]:
            mark_accepted(ctx.state_root, ctx.spec.wave, ctx.run_id, result)
        return result


class CostActualOperator(WaveOperator):
    """After the move (trigger rule ALL_DONE): price the bytes this run moved per flow, beside the
    forecast, into cost/actual.json. Never gates: no `passed` key, and a problem is recorded, not
    raised, so the run's outcome is the same with or without this task."""

    stage, action = "cost", "actual"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.cost.actual import actual_cost

        try:
            return jsonable(actual_cost(ctx.spec, ctx.store.records(), run_id=ctx.run_id))
        except Exception as exc:  # evidence of a broken run must not turn it red here
            self.log.exception("wave %s: moved bytes could not be priced", ctx.spec.wave)
            return {"wave": ctx.spec.wave, "run_id": ctx.run_id, "error": f"{type(exc).__name__}: {exc}"}


class RollbackOperator(WaveOperator):
    """Runs after the body whatever happened: unless the wave was accepted, put traffic back on-prem
    and unfreeze writes. Idempotent; nothing moved means nothing to do."""

    stage, action, skip_on_dry_run = "rollback", "restore", False

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.airflow.router_state import attempt_label, fail_retryable, watched_router
        from migration_waves.canary.router import restore_baseline
        from migration_waves.evidence.store import clear_marker, is_accepted, is_frozen, unfreeze_writes

        accepted = is_accepted(ctx.state_root, ctx.spec.wave)
        if accepted and accepted.get("run_id") == ctx.run_id:
            raise AirflowSkipException("wave accepted in this run; nothing to roll back")
        restored, errors = [], []
        for wl in ctx.spec.inference_workloads:
            router = None
            try:
                router = watched_router(ctx, wl.name, _router(wl))
                rec = jsonable(restore_baseline(router))
                restored.append({"workload": wl.name, **rec})
            except Exception as exc:  # every workload gets its attempt; the task fails after
                split = f"; {router.split_statement()}" if router is not None else ""
                errors.append(
                    f"workload {wl.name}: could not restore traffic ({attempt_label(ctx)}): {exc}{split}"
                )
        frozen = is_frozen(ctx.state_root, ctx.spec.wave)
        if frozen:
            unfreeze_writes(ctx.state_root, ctx.spec.wave)
        moved = [r for r in restored if r.get("changed")]
        aborted = sorted(n for n in ctx.store.records().get("canary", {}) if "-abort-" in n)
        if errors:  # retried by Airflow (a router may come back); the record carries the split
            fail_retryable(
                ctx, self.stage, self.evidence_name,
                {"workloads": restored, "unfrozen": frozen, "passed": False, "reasons": errors},
            )  # fmt: skip
        if not moved and not frozen and not aborted:
            raise AirflowSkipException("nothing moved: traffic already on-prem and writes not frozen")
        # Traffic is back on-prem, so an earlier acceptance of this wave no longer holds: the
        # next wave must not start on the strength of it.
        revoked = None
        if accepted:
            clear_marker(ctx.state_root, ctx.spec.wave, "accepted")
            revoked = accepted.get("run_id")
        why = (
            f"canary gate rolled back ({', '.join(aborted)}); traffic verified on-prem"
            if aborted and not moved
            else "wave not accepted; traffic restored to on-prem"
        )
        # A rejected (or timed-out) approval before 100%: time to rollback counts from the answer.
        rejected = {
            n: (r.get("data") or {}).get("decided_at")
            for n, r in ctx.store.records().get("canary", {}).items()
            if n.endswith("-approval-100") and (r.get("data") or {}).get("decision") == "reject"
        }
        seconds = None
        if rejected and all(rejected.values()):
            seconds = round(time.time() - min(rejected.values()), 3)
            why = f"approval rejected ({', '.join(sorted(rejected))}); traffic restored to on-prem"
        return {
            "workloads": restored,
            "unfrozen": frozen,
            "rolled_back": True,
            "acceptance_revoked": revoked,
            "approval_rejected": sorted(rejected) or None,
            "time_to_rollback_s": seconds,
            "passed": True,
            "reason": why,
        }


def run_outcome(ctx: WaveRunContext, *, exclude: Iterable[str]) -> dict[str, Any]:
    """Summarize the run from the states of its tasks and the rollback evidence."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=ctx.dag_id, run_ids=[ctx.run_id]).get(ctx.run_id, {})
    skip = set(exclude)
    failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed") and t not in skip)
    records = ctx.store.records()
    rolled_back = [
        n
        for stage in ("rollback", "canary")
        for n, r in records.get(stage, {}).items()
        if (r.get("data") or {}).get("rolled_back")
    ]
    reasons = []
    for stage in records.values():
        for rec in stage.values():
            if rec.get("passed") is False or (rec.get("data") or {}).get("passed") is False:
                reasons.extend((rec.get("data") or {}).get("reasons") or [])
    status = "rolled_back" if rolled_back else ("failed" if failed else "success")
    if status == "success" and not records.get("acceptance"):
        status = "skipped"
    return {
        "status": status,
        "failed_tasks": failed,
        "rolled_back": rolled_back,
        "reasons": reasons,
        "task_states": states,
    }


class ReportOperator(WaveOperator):
    """Always: evidence pack (evidence.json, report.html, runbook.md)."""

    stage, action, skip_on_dry_run = "report", "pack", False

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.evidence.report import build_evidence_pack

        outcome = run_outcome(ctx, exclude=[self.task_id, "outcome"])
        pack = build_evidence_pack(ctx.store, ctx.spec, outcome=outcome)
        self.log.info("Wave %s report: %s", ctx.spec.wave, jsonable(pack).get("report_html"))
        return {**jsonable(pack), "status": outcome["status"], "passed": True}


class OutcomeOperator(WaveOperator):
    """Downstream of every task: fails the run when anything failed or rolled back."""

    stage, action, skip_on_dry_run = "outcome", "outcome", False

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        outcome = run_outcome(ctx, exclude=[self.task_id])
        ok = outcome["status"] in ("success", "skipped")
        why = "; ".join(outcome["reasons"][:5]) or ", ".join(outcome["failed_tasks"])
        return {
            **outcome,
            "passed": ok,
            "reasons": [] if ok else [f"wave {ctx.spec.wave} {outcome['status'].replace('_', ' ')}: {why}"],
        }
