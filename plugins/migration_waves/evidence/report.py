"""Evidence pack of a wave run: evidence.json, a self-contained report.html and runbook.md.

The report is built from whatever records the run left. A failed run has holes; each section is
built on its own and a section that cannot be built shows why instead of failing the report.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from migration_waves.evidence.runbook import render_runbook
from migration_waves.evidence.store import STAGES, EvidenceStore
from migration_waves.evidence.svg import bars_svg, latency_svg, ratio_bar_svg
from migration_waves.spec.models import WaveSpec

OUTCOME_LABELS = ("SUCCESS", "FAILED", "ROLLED BACK", "SKIPPED")
COPY_KINDS = ("seed", "ingest", "sync", "final", "final-sync")  # record name suffixes that moved bytes
VERIFY_KINDS = ("verify-final", "final-verify", "verify-sync", "verify")  # latest verification first
_CANARY = re.compile(r"^(?P<workload>.+)-(?P<kind>step|gate|abort)-(?P<pct>\d+)$")


class EvidencePack(BaseModel):
    """Where a run's evidence pack was written, and its verdict."""

    wave: str
    run_id: str
    outcome: str = Field(description="SUCCESS, FAILED or ROLLED BACK")
    reasons: list[str] = Field(default_factory=list)
    evidence_json: str
    report_html: str
    runbook_md: str
    docs: list[str] = Field(default_factory=list, description="Data Docs index pages named by records")
    missing: list[str] = Field(default_factory=list, description="stage/name records the run did not write")
    section_errors: list[str] = Field(default_factory=list)


# -- small tolerant accessors -------------------------------------------------------------------------


def _data(envelope: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(envelope, dict):
        return {}
    data = envelope.get("data")
    return data if isinstance(data, dict) else {}


def _f(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _passed(envelope: dict[str, Any] | None) -> bool | None:
    if not isinstance(envelope, dict):
        return None
    for source in (envelope, _data(envelope)):
        if isinstance(source.get("passed"), bool):
            return source["passed"]
    return None


def _status(envelope: dict[str, Any] | None) -> str:
    if envelope is None:
        return "not run"
    data = _data(envelope)
    if envelope.get("skipped") or data.get("skipped") or data.get("outcome") == "skipped":
        return "skipped"
    passed = _passed(envelope)
    if isinstance(data.get("verdict_passed"), bool):  # a canary step that ran; its verdict is the gate
        passed = data["verdict_passed"]
    if envelope.get("error"):
        return "failed"
    return {True: "passed", False: "failed", None: "recorded"}[passed]


def fmt_bytes(value: Any) -> str:
    """Decimal units, as price lists use."""
    n = _f(value)
    if n is None:
        return "–"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(value)


def fmt_num(value: Any, digits: int = 2, unit: str = "") -> str:
    n = _f(value)
    if n is None:
        return "–" if value is None else str(value)
    text = f"{n:,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{n:,.0f}"
    return f"{text}{unit}"


def fmt_ratio(value: Any) -> str:
    """Ratios keep two decimals (1.00, 2.50): they are compared against limits like 1.5."""
    n = _f(value)
    return "–" if n is None else f"{n:.2f}"


def fmt_pct(value: Any) -> str:
    n = _f(value)
    return "–" if n is None else f"{n * 100:.2f}%"


def fmt_usd(value: Any) -> str:
    if value is None:
        return "–"
    try:
        from migration_waves.cost.egress import format_usd

        return format_usd(Decimal(str(value)))
    except (ArithmeticError, ValueError):
        return str(value)


_FIGURES: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("files_copied", "copied", lambda v: fmt_num(v, 0)),
    ("bytes_copied", "bytes", fmt_bytes),
    ("files_skipped", "skipped", lambda v: fmt_num(v, 0)),
    ("files_verified", "verified", lambda v: fmt_num(v, 0)),
    ("gflops", "GFLOP/s", lambda v: fmt_num(v, 1)),
    ("ratio", "ratio", lambda v: fmt_num(v, 2)),
    ("time_to_recover_s", "recover", lambda v: fmt_num(v, 1, " s")),
    ("recover_s", "recover", lambda v: fmt_num(v, 1, " s")),
    ("time_to_rollback_s", "rollback", lambda v: fmt_num(v, 2, " s")),
    ("steps_lost", "steps lost", lambda v: fmt_num(v, 0)),
    ("p95_ratio", "p95 ratio", lambda v: fmt_num(v, 2)),
    ("p95", "p95", lambda v: fmt_num(v, 1, " ms")),
    ("p95_ms", "p95", lambda v: fmt_num(v, 1, " ms")),
    ("error_rate", "errors", fmt_pct),
    ("forecast_usd", "forecast", fmt_usd),
    ("budget_usd", "budget", fmt_usd),
    ("seconds", "seconds", lambda v: fmt_num(v, 1, " s")),
)


def key_figures(envelope: dict[str, Any]) -> str:
    """A short line of the figures a reader looks for first in a record."""
    data = _data(envelope)
    shown = [f"{label} {fmt(data[key])}" for key, label, fmt in _FIGURES if data.get(key) is not None]
    if isinstance(data.get("step_pct"), int | float):
        shown.insert(0, f"step {fmt_num(data['step_pct'], 0)}%")
    validation = data.get("validation") if isinstance(data.get("validation"), dict) else data
    if _gx_detail(validation.get("statistics")):
        shown.append(_gx_detail(validation.get("statistics")))
    if isinstance(data.get("outcome"), str):
        shown.append(data["outcome"])
    return ", ".join(shown[:5])


def first_reason(envelope: dict[str, Any]) -> str:
    if envelope.get("error"):
        return str(envelope["error"])
    reasons = _data(envelope).get("reasons")
    if isinstance(reasons, list) and reasons:
        return str(reasons[0])
    if isinstance(reasons, str):
        return reasons
    return ""


# -- outcome ---------------------------------------------------------------------------------------


def resolve_outcome(
    outcome: dict[str, Any] | None, records: dict[str, dict[str, dict[str, Any]]]
) -> tuple[str, list[str]]:
    """SUCCESS / FAILED / ROLLED BACK and its reasons, from the outcome given or else the records."""
    outcome = outcome or {}
    raw = next(
        (outcome[k] for k in ("status", "state", "outcome", "label") if isinstance(outcome.get(k), str)), ""
    )
    key = raw.strip().lower().replace("_", " ").replace("-", " ")
    reasons: list[str] = []
    if isinstance(outcome.get("reasons"), list):
        reasons += [str(r) for r in outcome["reasons"]]
    if isinstance(outcome.get("reason"), str):
        reasons.append(outcome["reason"])
    for task in outcome.get("failed_tasks") or []:
        reasons.append(f"task {task} failed")
    if "roll" in key:
        label = "ROLLED BACK"
    elif key in ("success", "succeeded", "passed", "ok"):
        label = "SUCCESS"
    elif key == "skipped":
        label = "SKIPPED"
        reasons.append("nothing was migrated in this run (dry run, or the wave was already accepted)")
    elif key:
        label = "FAILED"
    elif records.get("rollback"):
        label = "ROLLED BACK"
    elif any(_passed(env) is False for stage in records.values() for env in stage.values()):
        label = "FAILED"
    elif records:
        label = "SUCCESS"
    else:
        label = "FAILED"
        reasons.append("the run wrote no evidence records")
    if label not in ("SUCCESS", "SKIPPED"):
        # Given reasons (from the outcome task) first, then what the records say failed.
        derived: list[str] = []
        restore = _data(records.get("rollback", {}).get("restore"))
        if isinstance(restore.get("reason"), str):
            derived.append(f"rolled back: {restore['reason']}")
        for stage in STAGES:
            for name, env in records.get(stage, {}).items():
                if _passed(env) is False:
                    derived.append(f"{stage}/{name}: {first_reason(env) or 'failed'}")
        reasons += [r for r in derived if r not in reasons][:10]
    return label, reasons


# -- sections --------------------------------------------------------------------------------------


def expected_records(spec: WaveSpec) -> list[tuple[str, str]]:
    """Records a complete run of this wave writes (the report marks absent ones 'not run')."""
    out: list[tuple[str, str]] = [("preflight", "egress")]
    out += [("baseline", wl.name) for wl in spec.inference_workloads]
    for ds in spec.datasets:
        out += [("data", f"{ds.name}-seed"), ("data", f"{ds.name}-verify")]
    for image in spec.golden_image_names:
        out += [("gpu", f"{image}-conformance"), ("gpu", f"{image}-benchmark")]
    out += [("resilience", f"{wl.name}-drill") for wl in spec.training_workloads]
    for wl in spec.inference_workloads:
        out += [("canary", f"{wl.name}-step-{pct:03d}") for pct in wl.canary.steps]
    out.append(("acceptance", "evaluate"))
    return out


def _norm(name: str) -> str:
    """step-005 and step-5 name the same record (zero padding differs between writers)."""
    return re.sub(r"-0+(\d)", r"-\1", name)


def stage_rows(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    names: dict[str, list[str]] = {stage: [] for stage in STAGES}
    for stage, name in expected_records(spec):
        recorded = {_norm(n): n for n in records.get(stage, {})}
        names[stage].append(recorded.get(_norm(name), name))
    for stage, by_name in records.items():
        names.setdefault(stage, [])
        names[stage] += [n for n in sorted(by_name) if n not in names[stage]]
    rows = []
    for stage in [*STAGES, *(s for s in names if s not in STAGES)]:
        for name in names.get(stage, []):
            env = records.get(stage, {}).get(name)
            rows.append(
                {
                    "stage": stage,
                    "name": name,
                    "status": _status(env),
                    "figures": key_figures(env) if env else "",
                    "reason": first_reason(env) if env and _passed(env) is False else "",
                    "written_at": (env or {}).get("written_at", ""),
                }
            )
    return rows


def _split_dataset(name: str, datasets: list[str]) -> tuple[str, str]:
    for ds in sorted(datasets, key=len, reverse=True):
        if name.startswith(f"{ds}-"):
            return ds, name[len(ds) + 1 :]
    head, _, tail = name.rpartition("-")
    return (head, tail) if head else (name, "")


def _link(target: str, run_dir: str) -> str:
    """Local absolute paths become relative (inside the run folder) or file:// links."""
    if "://" in target:
        return target
    path = Path(target)
    if path.is_absolute():
        try:
            return path.relative_to(run_dir).as_posix()
        except ValueError:
            return path.as_uri()
    return target


def data_section(
    spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]], run_dir: str
) -> list[dict[str, Any]]:
    names = [ds.name for ds in spec.datasets]
    by_ds: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    for name, env in records.get("data", {}).items():
        ds, kind = _split_dataset(name, names)
        by_ds.setdefault(ds, {})[kind or "record"] = env
    rows = []
    for ds_name, kinds in by_ds.items():
        cls = next((d.class_.value for d in spec.datasets if d.name == ds_name), "?")
        copies = [_data(kinds[k]) for k in COPY_KINDS if k in kinds]
        verify_env = next((kinds[k] for k in VERIFY_KINDS if k in kinds), None)
        # Great Expectations: its own record, or nested in the verification (validation: {...}).
        validate_env = kinds.get("validate")
        nested = _data(verify_env).get("validation")
        if validate_env is None and isinstance(nested, dict):
            validate_env = {"passed": nested.get("passed"), "data": nested}
        docs = _data(validate_env).get("docs_index") or _data(verify_env).get("docs_index")
        stats = _data(validate_env).get("statistics") or {}
        rows.append(
            {
                "dataset": ds_name,
                "class": cls,
                "files_copied": sum(int(_f(c.get("files_copied")) or 0) for c in copies) if copies else None,
                "bytes_copied": sum(int(_f(c.get("bytes_copied")) or 0) for c in copies) if copies else None,
                "files_skipped": sum(int(_f(c.get("files_skipped")) or 0) for c in copies)
                if copies
                else None,
                "copy_status": _status(kinds.get("seed") or kinds.get("ingest")),
                "verify_status": _status(verify_env),
                "verify_detail": _verify_detail(_data(verify_env)),
                "gx_status": _status(validate_env),
                "gx_detail": _gx_detail(stats),
                "docs": _link(str(docs), run_dir) if docs else None,
                "reasons": [
                    first_reason(e) for e in kinds.values() if _passed(e) is False and first_reason(e)
                ],
            }
        )
    return rows


def _verify_detail(data: dict[str, Any]) -> str:
    if not data:
        return ""
    parts = []
    if data.get("files_verified") is not None:
        parts.append(f"{fmt_num(data['files_verified'], 0)} files")
    if data.get("bytes_verified") is not None:
        parts.append(fmt_bytes(data["bytes_verified"]))
    missing = data.get("missing")
    if isinstance(missing, list) and missing:
        parts.append(
            f"{len(missing)} missing ({', '.join(map(str, missing[:3]))}{'…' if len(missing) > 3 else ''})"
        )
    for key in ("mismatched", "size_mismatch", "digest_mismatch", "extra"):
        if isinstance(data.get(key), list) and data[key]:
            parts.append(f"{len(data[key])} {key}")
    return ", ".join(parts)


def _gx_detail(stats: Any) -> str:
    if not isinstance(stats, dict):
        return ""
    ok = stats.get("successful_expectations", stats.get("successful"))
    total = stats.get("evaluated_expectations", stats.get("evaluated"))
    if ok is not None and total is not None:
        return f"{fmt_num(ok, 0)}/{fmt_num(total, 0)} expectations"
    pct = stats.get("success_percent")
    return f"{fmt_num(pct, 1)}% expectations met" if pct is not None else ""


def gpu_section(records: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    images: dict[str, dict[str, Any]] = {}
    for name, env in records.get("gpu", {}).items():
        image, _, kind = name.rpartition("-")
        if kind == "nvml":  # the raw snapshot behind a conformance record, not a result of its own
            continue
        if kind not in ("conformance", "benchmark"):
            image, kind = name, "other"
        images.setdefault(
            image, {"image": image, "checks": [], "conformance": None, "benchmark": None, "suite": []}
        )
        entry = images[image]
        data = _data(env)
        if kind == "conformance":
            entry["conformance"] = _status(env)
            entry["checks"] = [c for c in data.get("checks") or [] if isinstance(c, dict)]
        elif kind == "benchmark":
            ratio = _f(data.get("ratio"))
            gflops, base = _f(data.get("gflops")), _f(data.get("baseline_gflops"))
            if ratio is None and gflops is not None and base:
                ratio = gflops / base
            floor = _f(data.get("floor_ratio"))
            threshold = _f(data.get("threshold_gflops"))
            if floor is None and threshold is not None and base:
                floor = threshold / base
            if floor is None and _f(data.get("tolerance")) is not None:
                floor = 1 - float(data["tolerance"])
            entry["benchmark"] = {
                "status": _status(env),
                "gflops": gflops,
                "baseline_gflops": base,
                "ratio": ratio,
                "bar": ratio_bar_svg(ratio, floor),
                "reason": first_reason(env),
                "metric": metric if isinstance(metric := data.get("headline_metric"), str) else None,
            }
            entry["suite"] = suite_rows(data.get("rows"))
    return list(images.values())


def suite_rows(rows: Any) -> list[dict[str, Any]]:
    """The benchmark suite's rows (gpu/suite.py SuiteRow) as table cells; odd shapes are skipped."""
    out: list[dict[str, Any]] = []
    for r in rows if isinstance(rows, list) else []:
        if not isinstance(r, dict) or not r.get("metric"):
            continue
        measured, passed = _f(r.get("measured")), r.get("passed")
        if measured is None:
            verdict = "skipped" if passed is True else "failed"
        else:
            verdict = {True: "passed", False: "failed"}.get(passed, "recorded")
        threshold = _f(r.get("threshold"))
        sign = "≥ " if r.get("higher_is_better", True) else "≤ "
        out.append(
            {
                "metric": str(r["metric"]),
                "unit": str(r.get("unit") or ""),
                "measured": measured,
                "baseline": _f(r.get("baseline")),
                "line": "" if threshold is None else sign + fmt_num(threshold, 1),
                "ratio": _f(r.get("ratio")),
                "status": verdict,
                "note": str(r.get("note") or ""),
            }
        )
    return out


def resilience_section(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name, env in records.get("resilience", {}).items():
        data = _data(env)
        ttr = _f(data.get("time_to_recover_s", data.get("recover_s")))
        rto_s = _f(data.get("rto_s")) or spec.targets.rto_minutes * 60
        rows.append(
            {
                "workload": name.removesuffix("-drill"),
                "status": _status(env),
                "time_to_recover_s": ttr,
                "rto_s": rto_s,
                "within_rto": None if ttr is None else ttr <= rto_s,
                "steps_lost": data.get("steps_lost"),
                "reasons": data.get("reasons") or [],
            }
        )
    return rows


def _latency(summary: Any) -> dict[str, Any]:
    """{count, p50, p95, p99, error_rate} from either p95 or p95_ms style summaries."""
    if not isinstance(summary, dict):
        return {}
    out = {k: summary.get(k, summary.get(f"{k}_ms")) for k in ("p50", "p95", "p99")}
    out.update(count=summary.get("count"), error_rate=summary.get("error_rate"))
    return out


def canary_section(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    by_wl: dict[str, dict[float, dict[str, Any]]] = {}
    for name, env in records.get("canary", {}).items():
        data = _data(env)
        match = _CANARY.match(name)
        if not match:
            continue  # synthetic checks, promote: in the stage table only
        workload, kind = match["workload"], match["kind"]
        pct = _f(data.get("step_pct"))
        pct = pct if pct is not None else float(match["pct"])
        step = by_wl.setdefault(workload, {}).setdefault(
            pct, {"pct": pct, "label": f"{fmt_num(pct, 0)}%", "baseline": {}, "candidate": {}, "reasons": []}
        )
        if kind == "step":
            step.update(
                baseline=_latency(data.get("baseline")),
                candidate=_latency(data.get("candidate")),
                p95_ratio=data.get("p95_ratio"),
                verdict=str(data.get("outcome") or _status(env)),
                status=_status(env),
                reasons=[str(r) for r in data.get("reasons") or []],
            )
        elif kind == "gate":
            step["decision"] = data.get("decision")
        else:
            step["aborted"] = True
    out = []
    for workload, by_pct in by_wl.items():
        steps = [by_pct[p] for p in sorted(by_pct)]
        for st in steps:
            st.setdefault("verdict", "not run")
        try:
            canary = spec.workload(workload).canary  # type: ignore[union-attr]
            limits = {"p95_ratio_max": canary.p95_ratio_max, "error_rate_max": canary.error_rate_max}
        except (KeyError, AttributeError):
            limits = {}
        baseline = _latency(_data(records.get("baseline", {}).get(workload)))
        out.append(
            {
                "workload": workload,
                "steps": steps,
                "limits": limits,
                "baseline": baseline if any(v is not None for v in baseline.values()) else {},
                "svg": latency_svg(steps, spec.targets.p95_ms, title=f"{workload}: latency per canary step"),
            }
        )
    return out


def lag_chart(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Replication lag of every copy pass of the run (seed, sync, final) against the RPO."""
    names = [ds.name for ds in spec.datasets]
    rows = []
    for name, env in records.get("data", {}).items():
        ds, kind = _split_dataset(name, names)
        lag = _f(_data(env).get("lag_s"))
        if kind in COPY_KINDS and lag is not None:
            rows.append((f"{ds} {kind}", lag))
    return bars_svg(sorted(rows), limit=spec.targets.rpo_minutes * 60, unit="s", limit_label="RPO")


def cost_chart(cost: dict[str, Any] | None) -> str:
    """Egress forecast and the bytes actually moved, priced, against the budget."""
    if not cost:
        return ""
    rows = [("forecast (preflight)", (cost.get("forecast") or {}).get("forecast_usd")),
            ("actually moved", (cost.get("actual") or {}).get("usd"))]  # fmt: skip
    return bars_svg(rows, limit=_f(cost.get("budget_usd")), unit="USD", limit_label="budget")


def cost_section(spec: WaveSpec, records: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    from migration_waves.cost.egress import egress_forecast
    from migration_waves.cost.pricing import PricingError, load_pricing

    forecast = _data(records.get("preflight", {}).get("egress"))
    recorded = _data(records.get("cost", {}).get("actual"))
    if recorded:
        # The run's cost task priced the moved bytes per flow (cost/actual.json): show that record.
        return {
            "forecast": forecast,
            "forecast_status": _status(records.get("preflight", {}).get("egress")),
            "budget_usd": spec.budget.egress_usd,
            "actual": {"datasets": [], "usd": None, "error": None, **recorded},
            "flows": recorded.get("flows") or [],
        }
    names = [ds.name for ds in spec.datasets]
    moved: dict[str, int] = {}
    for name, env in records.get("data", {}).items():
        ds, kind = _split_dataset(name, names)
        nbytes = _f(_data(env).get("bytes_copied"))
        if ds in names and nbytes is not None and kind in COPY_KINDS:
            moved[ds] = moved.get(ds, 0) + int(nbytes)
    actual: dict[str, Any] = {"bytes": sum(moved.values()), "datasets": [], "usd": None, "error": None}
    if moved:
        try:
            pricing = load_pricing(spec.resolve_path(spec.budget.pricing))
            priced = egress_forecast(spec, moved, pricing)
            actual.update(
                usd=priced.forecast_usd,
                datasets=[d.model_dump(mode="json") for d in priced.datasets],
                sources=priced.sources,
                within_budget=priced.passed,
            )
        except (PricingError, ValueError, OSError) as exc:
            actual["error"] = f"actual bytes could not be priced: {exc}"
    return {
        "forecast": forecast,
        "forecast_status": _status(records.get("preflight", {}).get("egress")),
        "budget_usd": spec.budget.egress_usd,
        "actual": actual,
    }


def acceptance_section(records: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any] | None:
    env = records.get("acceptance", {}).get("evaluate")
    if env is None:
        return None
    data = _data(env)
    checks = [c for c in data.get("checks") or [] if isinstance(c, dict)]
    return {"status": _status(env), "checks": checks, "reasons": data.get("reasons") or []}


def _restored(entry: dict[str, Any]) -> dict[str, Any]:
    before, after = entry.get("before", entry.get("before_pct")), entry.get("after", entry.get("after_pct"))
    return {
        "workload": entry.get("workload") or entry.get("router") or "",
        "before": f"{before}% cloud" if isinstance(before, int | float) else before,
        "after": f"{after}% cloud" if isinstance(after, int | float) else after,
        "seconds": entry.get("seconds", entry.get("duration_s")),
    }


def rollback_section(records: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rollback records, and canary aborts (traffic put back on-prem by a failed gate)."""
    found = [(name, env) for name, env in records.get("rollback", {}).items()]
    found += [(f"canary {name}", env) for name, env in records.get("canary", {}).items() if "-abort-" in name]
    out = []
    for name, env in found:
        data = _data(env)
        raw = data.get("workloads")
        entries = [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []
        if isinstance(data.get("restore"), dict):
            entries.append({"workload": data.get("workload"), **data["restore"]})
        workloads = [_restored(e) for e in entries]
        seconds = [s for w in workloads if (s := _f(w.get("seconds"))) is not None]
        total = _f(data.get("seconds", data.get("time_to_rollback_s")))
        skip = ("workloads", "restore", "reason", "reasons", "seconds", "time_to_rollback_s", "passed")
        out.append(
            {
                "name": name,
                "status": "rolled back" if data.get("rolled_back") else _status(env),
                "reason": data.get("reason") or "; ".join(map(str, data.get("reasons") or [])),
                "workloads": workloads,
                "seconds": total if total is not None else (sum(seconds) if seconds else None),
                "other": {k: v for k, v in data.items() if k not in skip and not isinstance(v, dict | list)},
            }
        )
    return out


def runbook_html(markdown: str) -> str:
    """Markdown to HTML with markdown-it (comes with Airflow via rich); a <pre> block without it."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - depends on the environment
        from html import escape

        return f"<pre>{escape(markdown)}</pre>"
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)


# -- building the pack ----------------------------------------------------------------------------


def _spec_summary(spec: WaveSpec) -> dict[str, Any]:
    return {
        "wave": spec.wave,
        "description": spec.description,
        "order": spec.order,
        "after": spec.after,
        "window": spec.window,
        "owners": spec.owners.model_dump(mode="json"),
        "targets": spec.targets.model_dump(mode="json"),
        "budget": spec.budget.model_dump(mode="json"),
        "tags": spec.tags,
        "sites": {n: s.model_dump(mode="json") for n, s in spec.sites.items()},
        "datasets": [ds.model_dump(mode="json", by_alias=True) for ds in spec.datasets],
        "workloads": [wl.model_dump(mode="json") for wl in spec.workloads],
        "source_file": str(spec.source_file) if spec.source_file else None,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def build_evidence_pack(store: EvidenceStore, spec: WaveSpec, *, outcome: dict[str, Any]) -> EvidencePack:
    """Write evidence.json, report.html and runbook.md into the run folder; return their paths."""
    from migration_waves.evidence.templates import render_report_html

    errors: list[str] = []
    try:
        records = store.records()
    except Exception as exc:  # the report of a broken store still says what happened
        records = {}
        errors.append(f"records could not be listed from {store.url()}: {exc}")
    label, reasons = resolve_outcome(outcome, records)
    try:
        runbook = render_runbook(spec)
    except Exception as exc:
        runbook = f"# Runbook: wave {spec.wave}\n\nThe runbook could not be rendered: {exc}\n"
        errors.append(f"runbook: {exc}")

    def section(name: str, build: Callable[[], Any], empty: Any) -> Any:
        # One broken record shape must not take the whole report down; the section says what broke.
        try:
            return build()
        except Exception as exc:
            errors.append(f"{name} section: {type(exc).__name__}: {exc}")
            return empty

    ctx: dict[str, Any] = {
        "wave": spec.wave,
        "run_id": store.run_id,
        "description": spec.description,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "outcome": label,
        "reasons": reasons,
        "owners": spec.owners.model_dump(),
        "targets": spec.targets.model_dump(),
        "rows": section("stages", lambda: stage_rows(spec, records), []),
        "data": section("data", lambda: data_section(spec, records, store.run_dir), []),
        "gpu": section("gpu", lambda: gpu_section(records), []),
        "resilience": section("resilience", lambda: resilience_section(spec, records), []),
        "canary": section("canary", lambda: canary_section(spec, records), []),
        "cost": section("cost", lambda: cost_section(spec, records), None),
        "lag_svg": section("lag", lambda: lag_chart(spec, records), ""),
        "acceptance": section("acceptance", lambda: acceptance_section(records), None),
        "rollback": section("rollback", lambda: rollback_section(records), []),
        "runbook_html": section("runbook", lambda: runbook_html(runbook), ""),
    }
    ctx["cost_svg"] = section("cost chart", lambda: cost_chart(ctx["cost"]), "")
    ctx["errors"] = errors
    missing = [f"{r['stage']}/{r['name']}" for r in ctx["rows"] if r["status"] == "not run"]
    docs = [row["docs"] for row in ctx["data"] if row.get("docs")]
    html = render_report_html(ctx)
    runbook_path = store.write_file("runbook.md", runbook)
    report_path = store.write_file("report.html", html)
    evidence = {
        "wave": spec.wave,
        "run_id": store.run_id,
        "generated_at": ctx["generated_at"],
        "outcome": {"label": label, "reasons": reasons, "given": outcome},
        "spec": _spec_summary(spec),
        "records": records,
        "missing": missing,
        "cost": ctx["cost"],
        "docs": docs,
        "runbook": runbook,
        "section_errors": errors,
        "files": {"report_html": report_path, "runbook_md": runbook_path},
    }
    evidence_path = store.write_file("evidence.json", json.dumps(evidence, indent=2, default=_json_default))
    return EvidencePack(
        wave=spec.wave,
        run_id=store.run_id,
        outcome=label,
        reasons=reasons,
        evidence_json=evidence_path,
        report_html=report_path,
        runbook_md=runbook_path,
        docs=docs,
        missing=missing,
        section_errors=errors,
    )
