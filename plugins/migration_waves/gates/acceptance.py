"""Acceptance: the wave's targets against what this run measured. Blocks the next wave."""

from __future__ import annotations

from typing import Any

from migration_waves.spec.models import DatasetClass, WaveSpec


def _data(record: dict[str, Any] | None) -> dict[str, Any]:
    if not record:
        return {}
    return record.get("data", record)


def evaluate_acceptance(spec: WaveSpec, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Check every target of the wave against this run's evidence; missing evidence fails."""
    checks: list[dict[str, Any]] = []

    def check(name: str, target: Any, measured: Any, passed: bool, message: str) -> None:
        checks.append(
            {"name": name, "target": target, "measured": measured, "passed": passed, "message": message}
        )

    data = records.get("data", {})
    for ds in spec.datasets:
        verify = _data(data.get(f"{ds.name}-verify"))
        if ds.class_ is DatasetClass.MUTABLE:
            verify = _data(data.get(f"{ds.name}-verify-final")) or verify
        ok = verify.get("passed") is True
        check(
            f"data:{ds.name}",
            "verified",
            "verified" if ok else "not verified in this run",
            ok,
            f"dataset {ds.name}: "
            + (
                "every file verified by content digest and Great Expectations"
                if ok
                else "no passing verification in this run"
            ),
        )
    for wl in spec.inference_workloads:
        last = max(wl.canary.steps)
        step = _data(records.get("canary", {}).get(f"{wl.name}-step-{last:03d}"))
        cand = step.get("candidate") or {}
        p95 = cand.get("p95_ms", cand.get("p95"))
        p95 = round(p95, 1) if isinstance(p95, float) else p95
        err = cand.get("error_rate")
        check(
            f"p95:{wl.name}",
            spec.targets.p95_ms,
            p95,
            p95 is not None and p95 <= spec.targets.p95_ms,
            f"workload {wl.name}: candidate p95 {p95} ms at {last}% vs target {spec.targets.p95_ms} ms",
        )
        check(
            f"error-rate:{wl.name}",
            spec.targets.error_rate,
            err,
            err is not None and err <= spec.targets.error_rate,
            f"workload {wl.name}: candidate error rate {err} vs target {spec.targets.error_rate}",
        )
    rto_s = spec.targets.rto_minutes * 60
    for wl in spec.training_workloads:
        drill = _data(records.get("resilience", {}).get(f"{wl.name}-drill"))
        ttr = drill.get("time_to_recover_s")
        ttr = round(ttr, 2) if isinstance(ttr, float) else ttr
        check(
            f"rto:{wl.name}",
            f"{spec.targets.rto_minutes:g} min",
            f"{ttr} s" if ttr is not None else None,
            drill.get("passed") is True and ttr is not None and ttr <= rto_s,
            f"workload {wl.name}: recovered in {ttr} s vs RTO {spec.targets.rto_minutes:g} min",
        )
    for image in spec.golden_image_names:
        conf = _data(records.get("gpu", {}).get(f"{image}-conformance"))
        bench = _data(records.get("gpu", {}).get(f"{image}-benchmark"))
        ok = conf.get("passed") is True and bench.get("passed") is True
        check(
            f"golden-image:{image}",
            "conformant",
            "conformant" if ok else "not proven",
            ok,
            f"golden image {image}: conformance {conf.get('passed')}, benchmark {bench.get('passed')}",
        )
    failed = [c for c in checks if not c["passed"]]
    return {
        "wave": spec.wave,
        "checks": checks,
        "passed": bool(checks) and not failed,
        "reasons": [c["message"] for c in failed]
        or ([] if checks else [f"wave {spec.wave}: nothing to accept"]),
    }
