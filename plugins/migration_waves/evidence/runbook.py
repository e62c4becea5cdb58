"""Cutover runbook of a wave, rendered from its spec (Markdown).

The runbook is not a separate document that drifts: every threshold and owner in it is read from
the same spec the DAG is built from, so what people read is what the gates enforce.
"""

from __future__ import annotations

from migration_waves.spec.models import (
    Dataset,
    DatasetClass,
    InferenceWorkload,
    Site,
    TrainingWorkload,
    WaveSpec,
)

METHODS: dict[DatasetClass, str] = {
    DatasetClass.MUTABLE: "seed copy, incremental sync until cutover, final sync after writes are frozen",
    DatasetClass.IMMUTABLE: "snapshot shipping: manifest, copy, verify content digests",
    DatasetClass.CHECKPOINT: "tiered copy with retention: newest checkpoints hot, older ones cold",
    DatasetClass.TELEMETRY: "append-only ingest: new files only, nothing rewritten or deleted",
}


def _num(value: float) -> str:
    """12 not 12.0; 0.01 stays 0.01."""
    return f"{value:g}"


def _pct(value: float) -> str:
    return f"{value * 100:g}%"


def _site(name: str, site: Site) -> str:
    return f"{name} ({site.kind}, {site.region})" if site.region else f"{name} ({site.kind})"


def _dataset_detail(ds: Dataset) -> str:
    extra = [f"checksum {ds.checksum.value}"]
    if ds.class_ is DatasetClass.MUTABLE:
        extra.append(
            f"deletions propagated (at most {ds.max_delete} per sync)" if ds.delete else "no deletions"
        )
    if ds.keep_hot is not None:
        extra.append(f"newest {ds.keep_hot} hot")
    if ds.include:
        extra.append(f"include {', '.join(ds.include)}")
    if ds.exclude:
        extra.append(f"exclude {', '.join(ds.exclude)}")
    return "; ".join(extra)


def _golden_image_gate(spec: WaveSpec, name: str) -> str:
    # Read lazily and tolerate absence: a runbook must render even when an image file is missing.
    from migration_waves.spec.loader import SpecError, golden_image_for

    try:
        image = golden_image_for(spec, name)
    except (SpecError, OSError) as exc:
        return f"golden image `{name}`: spec not found ({str(exc).splitlines()[0]})"
    bench = image.benchmark
    floor = bench.baseline_gflops * (1 - bench.tolerance)
    pins = [f"{pkg}>={ver}" for pkg, ver in sorted(image.packages.items())]
    if image.driver:
        pins.insert(
            0, f"driver {'=' if image.driver.exact else '>='}{image.driver.exact or image.driver.min}"
        )
    if image.gpu:
        pins.insert(
            0,
            f"{image.gpu.count} GPU(s)"
            + (f" '{image.gpu.model_contains}'" if image.gpu.model_contains else ""),
        )
    return (
        f"golden image `{name}` ({image.accelerator}): "
        f"conformance of {', '.join(pins) or 'the pinned stack'}; "
        f"benchmark {bench.matmul_size}x{bench.matmul_size} {bench.dtype} matmul at least "
        f"{_num(round(floor, 3))} GFLOP/s (baseline {_num(bench.baseline_gflops)} GFLOP/s, "
        f"tolerance {_pct(bench.tolerance)})"
    )


def render_runbook(spec: WaveSpec) -> str:
    """The wave's runbook: launch, validation checklist, rollback criteria, cutover steps, RTO/RPO."""
    o, t = spec.owners, spec.targets
    mutable = [ds.name for ds in spec.datasets if ds.class_ is DatasetClass.MUTABLE]
    lines: list[str] = [f"# Runbook: wave {spec.wave}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [
        f"- Order {spec.order}; runs after: {', '.join(spec.after) or 'no earlier wave'}",
        f"- Change window (DAG schedule): `{spec.window}`",
        f"- Sites: {', '.join(_site(n, s) for n, s in spec.sites.items())}",
        "",
        "## Owners",
        "",
        "| role | owner |",
        "|---|---|",
        f"| launch | {o.launch} |",
        f"| validation | {o.validation} |",
        f"| cutover | {o.cutover} |",
        f"| rollback | {o.rollback} |",
        "",
        "## Targets",
        "",
        f"- RTO: {_num(t.rto_minutes)} minutes (time to recover a workload or restore traffic)",
        f"- RPO: {_num(t.rpo_minutes)} minutes (most data written at the source that may be lost)",
        f"- p95 latency at most {_num(t.p95_ms)} ms; error rate at most {_pct(t.error_rate)}",
        f"- Egress budget: ${_num(spec.budget.egress_usd)} (prices from `{spec.budget.pricing}`)",
        "",
        f"## 1. Launch procedure (owner: {o.launch})",
        "",
    ]
    step = 1
    if spec.after:
        lines.append(f"{step}. Confirm the earlier waves are accepted: {', '.join(spec.after)}.")
        step += 1
    lines += [
        f"{step}. Trigger the `{spec.wave}` wave DAG inside the change window `{spec.window}` "
        "(or let the schedule start it); use dry run first to see the transfer plan.",
        f"{step + 1}. Preflight must pass: spec lint, capacity, security checklist, "
        f"egress forecast within ${_num(spec.budget.egress_usd)}.",
        f"{step + 2}. Baselines are measured on the on-prem endpoints before any traffic moves.",
        "",
        f"## 2. Validation checklist (owner: {o.validation})",
        "",
        "### Datasets",
        "",
        "| dataset | class | method | from -> to | details |",
        "|---|---|---|---|---|",
    ]
    for ds in spec.datasets:
        lines.append(
            f"| {ds.name} | {ds.class_.value} | {METHODS[ds.class_]} | {ds.source} -> {ds.target} "
            f"| {_dataset_detail(ds)} |"
        )
    if not spec.datasets:
        lines.append("| (none) | | | | |")
    lines += [
        "",
        "Every dataset: target manifest matches the source (no missing, extra, size or digest "
        "mismatch) and its Great Expectations suite passes.",
        "",
        "### Workloads",
        "",
    ]
    for wl in spec.workloads:
        lines.append(f"#### {wl.name} ({wl.kind})")
        lines.append("")
        lines.append(f"- [ ] {_golden_image_gate(spec, wl.golden_image)}")
        if isinstance(wl, InferenceWorkload):
            c = wl.canary
            lines += [
                f"- [ ] baseline {wl.baseline} and candidate {wl.candidate} healthy at `{wl.health_path}`",
                f"- [ ] canary steps {', '.join(f'{s}%' for s in c.steps)}; "
                f"{c.samples_per_step} samples per step "
                f"(at least {c.min_samples} per side, else inconclusive), concurrency {c.concurrency}",
                f"- [ ] each step: candidate p95 / baseline p95 at most {_num(c.p95_ratio_max)}; "
                f"candidate error rate at most {_pct(c.error_rate_max)}",
                f"- [ ] after 100%: p95 at most {_num(t.p95_ms)} ms, error rate at most {_pct(t.error_rate)}",
            ]
        elif isinstance(wl, TrainingWorkload):
            d = wl.drill
            lines += [
                f"- [ ] resilience drill: SIG{d.signal} after {d.interrupt_after_checkpoints} checkpoints "
                f"(grace {_num(d.grace_s)} s), resume from `{wl.checkpoint}`; time to recover at most "
                f"RTO {_num(t.rto_minutes)} min, drill timeout {_num(d.timeout_s)} s",
                "- [ ] steps lost on resume fit within the checkpoint interval "
                f"(RPO {_num(t.rpo_minutes)} min)",
            ]
        lines.append("")
    if not spec.workloads:
        lines += ["(no workloads)", ""]
    lines += [f"## 3. Rollback criteria (owner: {o.rollback})", "", "Roll back when any of these holds:", ""]
    for wl in spec.inference_workloads:
        c = wl.canary
        lines.append(
            f"- {wl.name}: at any canary step the candidate p95 exceeds {_num(c.p95_ratio_max)}x the "
            f"baseline p95, or its error rate exceeds {_pct(c.error_rate_max)}"
        )
    for wl in spec.training_workloads:
        lines.append(f"- {wl.name}: the drill's time to recover exceeds RTO {_num(t.rto_minutes)} min")
    lines += [
        f"- acceptance: p95 above {_num(t.p95_ms)} ms or error rate above {_pct(t.error_rate)} after cutover",
        "- any task failure after traffic moved (from the first canary step on) triggers rollback "
        "automatically",
        "",
        "Rollback steps: restore traffic to the baseline (on-prem) endpoints -> unfreeze writes -> "
        f"record what was restored and how long it took (target: within RTO {_num(t.rto_minutes)} min).",
        "",
        "## 4. Cutover",
        "",
        "| # | step | owner | done when |",
        "|---|---|---|---|",
        f"| 1 | freeze writes | {o.cutover} | frozen marker set; writers of "
        f"{', '.join(mutable) or 'no mutable dataset'} stopped |",
        f"| 2 | final sync | {o.cutover} | last changes of "
        f"{', '.join(mutable) or 'no mutable dataset'} copied; "
        f"data at risk is under RPO {_num(t.rpo_minutes)} min |",
        f"| 3 | final verify | {o.validation} | target manifests match the source, GX suites pass |",
        f"| 4 | switch traffic | {o.cutover} | "
        f"{', '.join(w.name for w in spec.inference_workloads) or 'no inference workload'} "
        "at 100% candidate |",
        f"| 5 | post-cutover checks | {o.validation} | p95 <= {_num(t.p95_ms)} ms, error rate <= "
        f"{_pct(t.error_rate)}; wave marked accepted |",
        "",
        "## Recovery objectives",
        "",
        f"- RTO {_num(t.rto_minutes)} minutes: rollback and drill recovery must finish within it.",
        f"- RPO {_num(t.rpo_minutes)} minutes: the sync lag of mutable datasets before the freeze must stay "
        "below it.",
        "",
    ]
    return "\n".join(lines)
