"""Daily showback: what each wave, workload and dataset costs, from the evidence store and prices.

Read from the state root of each wave (nothing is estimated that was measured):

- egress: the bytes every run of the wave actually moved (its ``cost/actual`` record, or, for runs
  from before that task existed, the copy records), priced per flow with the tiered prices;
- storage at the target: the size of each dataset's last verified manifest
  (``waves/<wave>/datasets/<dataset>/verified.parquet``) x the storage price of its class
  (a dataset's ``tags.storage_class`` names a ``storage:`` entry; otherwise ``DEFAULT_STORAGE``);
- compute: a workload's ``instance`` (an ``instances:`` entry) x the hours measured in the runs
  (canary steps, interruption drill), and 24 h a day once the wave is accepted (it serves at the target);
- unit economics: cost per 1,000 inferences = hourly price / (measured requests per hour) x 1,000,
  from the candidate's throughput at the last canary step (else the on-prem baseline); cost per
  training run = the drill's wall time (interruption and resume included) x the hourly price.

Budget: a wave whose egress spend over all its runs exceeds ``budget.egress_usd`` raises an alert.
"""

from __future__ import annotations

import calendar
import datetime as dt
import html
import io
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import fsspec
from pydantic import BaseModel, Field

from migration_waves.cost.actual import actual_cost
from migration_waves.cost.egress import format_bytes, format_usd
from migration_waves.cost.pricing import Pricing, PricingError, load_pricing
from migration_waves.spec.models import DatasetClass, WaveSpec

#: Storage class of a dataset at a target of this site kind, unless ``tags.storage_class`` says otherwise.
DEFAULT_STORAGE: dict[tuple[str, DatasetClass], str] = {
    ("cloud", DatasetClass.IMMUTABLE): "cloud-standard",
    ("cloud", DatasetClass.MUTABLE): "cloud-standard",
    ("cloud", DatasetClass.CHECKPOINT): "cloud-infrequent",
    ("cloud", DatasetClass.TELEMETRY): "cloud-infrequent",
    **{("onprem", k): "onprem-nas" for k in DatasetClass},
}
STORAGE_CLASS_TAG = "storage_class"
HOURS_PER_DAY = Decimal(24)


class RunCost(BaseModel):
    """Egress and compute of one run of a wave."""

    run_id: str
    day: str | None = Field(default=None, description="date of the run's last record (UTC)")
    outcome: str | None = None
    egress_bytes: int = 0
    egress_usd: Decimal = Decimal(0)
    compute_hours: float = 0.0
    compute_usd: Decimal = Decimal(0)
    error: str | None = None


class DatasetShowback(BaseModel):
    wave: str
    dataset: str
    dataset_class: str
    storage_class: str | None = None
    stored_bytes: int | None = Field(default=None, description="size of the last verified manifest")
    storage_usd_month: Decimal | None = None
    storage_usd_day: Decimal | None = None
    egress_bytes: int = 0
    egress_usd: Decimal = Decimal(0)
    note: str | None = None


class WorkloadShowback(BaseModel):
    wave: str
    workload: str
    kind: str
    instance: str | None = None
    usd_per_hour: Decimal | None = None
    gpus: int = 0
    run_hours: float = Field(default=0.0, description="measured hours in the wave's runs")
    run_usd: Decimal = Decimal(0)
    at_target: bool = Field(default=False, description="the wave is accepted: it runs at the target")
    compute_usd_day: Decimal = Decimal(0)
    gpu_hours_day: float = 0.0
    throughput_rps: float | None = None
    throughput_source: str | None = None
    usd_per_1k_inferences: Decimal | None = None
    training_run_s: float | None = None
    usd_per_training_run: Decimal | None = None
    note: str | None = None


class WaveShowback(BaseModel):
    wave: str
    accepted: bool
    budget_usd: Decimal
    egress_bytes: int = 0
    egress_usd: Decimal = Decimal(0)
    migration_compute_usd: Decimal = Decimal(0)
    to_date_usd: Decimal = Field(default=Decimal(0), description="egress + migration compute, all runs")
    storage_usd_day: Decimal = Decimal(0)
    compute_usd_day: Decimal = Decimal(0)
    daily_usd: Decimal = Field(default=Decimal(0), description="storage + compute per day at the target")
    over_budget: bool = False
    runs: list[RunCost] = Field(default_factory=list)


class BudgetAlert(BaseModel):
    wave: str
    spend_usd: Decimal
    budget_usd: Decimal
    message: str


class Showback(BaseModel):
    """The showback of one day (a gate-free report; alerts list the waves over budget)."""

    day: dt.date
    generated_at: str
    currency: str = "USD"
    waves: list[WaveShowback] = Field(default_factory=list)
    datasets: list[DatasetShowback] = Field(default_factory=list)
    workloads: list[WorkloadShowback] = Field(default_factory=list)
    alerts: list[BudgetAlert] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    total_to_date_usd: Decimal = Decimal(0)
    total_daily_usd: Decimal = Decimal(0)
    files: dict[str, str] = Field(default_factory=dict)


def _data(envelope: Any) -> dict[str, Any]:
    data = envelope.get("data") if isinstance(envelope, dict) else None
    return data if isinstance(data, dict) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def storage_class_of(spec: WaveSpec, dataset: Any) -> str:
    """The ``storage:`` entry a dataset is billed on at its target."""
    if dataset.tags.get(STORAGE_CLASS_TAG):
        return dataset.tags[STORAGE_CLASS_TAG]
    kind = spec.sites[spec.location(dataset.target).site].kind
    return DEFAULT_STORAGE[(kind, dataset.class_)]


def _runs(fs: Any, base: str, wave: str) -> list[str]:
    try:
        entries = fs.ls(f"{base}/waves/{wave}/runs", detail=True)
    except FileNotFoundError:
        return []
    return sorted(
        str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"
    )


def _last_written(records: dict[str, dict[str, Any]]) -> str:
    return max(
        (str(env.get("written_at") or "") for stage in records.values() for env in stage.values()), default=""
    )


def _workload_hours(spec: WaveSpec, records: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Hours each workload ran in this run: its canary steps, its interruption drill."""
    hours: dict[str, float] = {}
    for wl in spec.inference_workloads:
        steps = [n for n in records.get("canary", {}) if n.startswith(f"{wl.name}-step-")]
        secs = sum(_num(_data(records["canary"][n]).get("duration_s")) or 0.0 for n in steps)
        hours[wl.name] = secs / 3600
    for wl in spec.training_workloads:
        drill = _data(records.get("resilience", {}).get(f"{wl.name}-drill"))
        hours[wl.name] = (_num(drill.get("total_s")) or _num(drill.get("duration_s")) or 0.0) / 3600
    return hours


def _instance(pricing: Pricing, wl: Any) -> tuple[Any, str | None]:
    if not wl.instance:
        return None, (
            f"workload {wl.name}: no instance; add instance: <an instances: entry of {pricing.path}> "
            "to the workload to price its compute"
        )
    try:
        return pricing.instance(wl.instance), None
    except PricingError as exc:
        return None, f"workload {wl.name}: {exc}"


def wave_showback(
    spec: WaveSpec, root: str, day: dt.date, pricing: Pricing
) -> tuple[WaveShowback, list[DatasetShowback], list[WorkloadShowback], list[str]]:
    """Showback of one wave from the evidence under its state root."""
    from migration_waves.evidence.store import EvidenceStore, is_accepted
    from migration_waves.transfer.manifest import Manifest

    fs, base = fsspec.core.url_to_fs(root)
    base = str(base).rstrip("/")
    errors: list[str] = []
    accepted = is_accepted(root, spec.wave) is not None
    out = WaveShowback(wave=spec.wave, accepted=accepted, budget_usd=Decimal(str(spec.budget.egress_usd)))
    datasets = {
        ds.name: DatasetShowback(wave=spec.wave, dataset=ds.name, dataset_class=ds.class_.value)
        for ds in spec.datasets
    }
    workloads: dict[str, WorkloadShowback] = {}
    prices: dict[str, Any] = {}
    for wl in spec.workloads:
        price, note = _instance(pricing, wl)
        prices[wl.name] = price
        workloads[wl.name] = WorkloadShowback(
            wave=spec.wave,
            workload=wl.name,
            kind=wl.kind,
            instance=wl.instance,
            usd_per_hour=price.usd_per_hour if price else None,
            gpus=price.gpus if price else 0,
            note=note,
        )
    latest: dict[str, tuple[str, Any]] = {}  # workload -> (written_at, unit-economics source)
    for run in _runs(fs, base, spec.wave):
        store = EvidenceStore(root, spec.wave, run)
        try:
            records = store.records()
        except Exception as exc:
            errors.append(f"wave {spec.wave} run {run}: evidence could not be read: {exc}")
            continue
        written = _last_written(records)
        cost = _data(records.get("cost", {}).get("actual"))
        if not cost or cost.get("usd") is None:  # runs from before the cost task, or unpriced
            cost = actual_cost(spec, records, pricing=pricing).model_dump(mode="json")
        rc = RunCost(
            run_id=run,
            day=written[:10] or None,
            outcome=_data(records.get("outcome", {}).get("outcome")).get("status"),
            egress_bytes=int(cost.get("bytes") or 0),
            egress_usd=Decimal(str(cost.get("usd") or 0)),
            error=cost.get("error"),
        )
        for line in cost.get("datasets") or []:
            ds = datasets.get(str(line.get("dataset")))
            if ds is not None:
                ds.egress_bytes += int(line.get("bytes") or 0)
                ds.egress_usd += Decimal(str(line.get("usd") or 0))
        for name, hours in _workload_hours(spec, records).items():
            w, price = workloads[name], prices[name]
            usd = price.usd_per_hour * Decimal(str(hours)) if price else Decimal(0)
            w.run_hours += hours
            w.run_usd += usd
            rc.compute_hours += hours
            rc.compute_usd += usd
        for wl in spec.inference_workloads:
            last = f"{wl.name}-step-{wl.canary.steps[-1]:03d}"
            cand = _data(records.get("canary", {}).get(last)).get("candidate") or {}
            base_rec = _data(records.get("baseline", {}).get(wl.name))
            for rps, source in (
                (_num(cand.get("throughput_rps")), f"candidate at {wl.canary.steps[-1]}%, run {run}"),
                (_num(base_rec.get("throughput_rps")), f"on-prem baseline, run {run}"),
            ):
                if rps and (wl.name not in latest or written > latest[wl.name][0]):
                    latest[wl.name] = (written, (rps, source))
                    break
        for wl in spec.training_workloads:
            drill = _data(records.get("resilience", {}).get(f"{wl.name}-drill"))
            secs = _num(drill.get("total_s"))
            if (
                secs
                and drill.get("completed", True)
                and (wl.name not in latest or written > latest[wl.name][0])
            ):
                latest[wl.name] = (written, secs)
        out.runs.append(rc)
        out.egress_bytes += rc.egress_bytes
        out.egress_usd += rc.egress_usd
        out.migration_compute_usd += rc.compute_usd
    for name, w in workloads.items():
        price = prices[name]
        found = latest.get(name, (None, None))[1]
        if w.kind == "inference" and found:
            w.throughput_rps, w.throughput_source = found
            if price:
                per_hour = Decimal(str(w.throughput_rps)) * 3600
                w.usd_per_1k_inferences = _cents(price.usd_per_hour / per_hour * 1000)
        if w.kind == "training" and found:
            w.training_run_s = found
            if price:
                w.usd_per_training_run = _cents(price.usd_per_hour * Decimal(str(found)) / 3600)
        w.at_target = accepted
        if accepted and price:
            w.compute_usd_day = price.usd_per_hour * HOURS_PER_DAY
            w.gpu_hours_day = float(price.gpus * HOURS_PER_DAY)
        out.compute_usd_day += w.compute_usd_day
    days = Decimal(calendar.monthrange(day.year, day.month)[1])
    billed: dict[str, int] = {}  # storage class -> bytes so far: tiers apply to the class total
    for ds_spec in spec.datasets:
        ds = datasets[ds_spec.name]
        ds.storage_class = storage_class_of(spec, ds_spec)
        path = f"{base}/waves/{spec.wave}/datasets/{ds_spec.name}/verified.parquet"
        if not fs.exists(path):
            ds.note = "not verified at the target yet"
            continue
        ds.stored_bytes = Manifest.read_parquet(fs, path).total_bytes
        price = pricing.storage.get(ds.storage_class)
        if price is None:
            ds.note = (
                f"no storage price {ds.storage_class!r} in {pricing.path}; add storage.{ds.storage_class} "
                f"or set tags.{STORAGE_CLASS_TAG} on dataset {ds.dataset}"
            )
            errors.append(f"wave {spec.wave}: {ds.note}")
            continue
        ds.storage_usd_month = price.usd_for(ds.stored_bytes, already=billed.get(ds.storage_class, 0))
        billed[ds.storage_class] = billed.get(ds.storage_class, 0) + ds.stored_bytes
        ds.storage_usd_day = ds.storage_usd_month / days
        out.storage_usd_day += ds.storage_usd_day
    out.to_date_usd = out.egress_usd + out.migration_compute_usd
    out.daily_usd = out.storage_usd_day + out.compute_usd_day
    out.over_budget = out.egress_usd > out.budget_usd
    errors += [n for w in workloads.values() if (n := w.note)]
    return out, list(datasets.values()), list(workloads.values()), errors


def build_showback(specs: list[WaveSpec], day: dt.date, *, state_root: str | None = None) -> Showback:
    """Showback of every wave; one wave's broken evidence or prices is an error line, not a crash."""
    sb = Showback(day=day, generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    for spec in sorted(specs, key=lambda s: (s.order, s.wave)):
        try:
            pricing = load_pricing(spec.resolve_path(spec.budget.pricing))
            wave, datasets, workloads, errors = wave_showback(spec, spec.state_root(state_root), day, pricing)
        except Exception as exc:
            sb.errors.append(f"wave {spec.wave}: showback failed: {type(exc).__name__}: {exc}")
            continue
        sb.waves.append(wave)
        sb.datasets += datasets
        sb.workloads += workloads
        sb.errors += errors
        if wave.over_budget:
            sb.alerts.append(
                BudgetAlert(
                    wave=wave.wave,
                    spend_usd=wave.egress_usd,
                    budget_usd=wave.budget_usd,
                    message=f"wave {wave.wave}: egress spend {format_usd(wave.egress_usd)} over "
                    f"{len(wave.runs)} run(s) ({format_bytes(wave.egress_bytes)}) exceeds the budget "
                    f"{format_usd(wave.budget_usd)} by {format_usd(wave.egress_usd - wave.budget_usd)}",
                )
            )
    sb.total_to_date_usd = sum((w.to_date_usd for w in sb.waves), Decimal(0))
    sb.total_daily_usd = sum((w.daily_usd for w in sb.waves), Decimal(0))
    return sb


def showback_plots(sb: Showback) -> dict[str, bytes]:
    """PNG charts: spend to date per wave against its budget, and the daily run rate at the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    waves = [w.wave for w in sb.waves]
    out: dict[str, bytes] = {}
    series = (
        ("waves-to-date.png", "Spend to date per wave (USD)",
         [("egress", [float(w.egress_usd) for w in sb.waves]),
          ("migration compute", [float(w.migration_compute_usd) for w in sb.waves])]),
        ("waves-daily.png", f"Run rate at the target on {sb.day} (USD/day)",
         [("storage", [float(w.storage_usd_day) for w in sb.waves]),
          ("compute", [float(w.compute_usd_day) for w in sb.waves])]),
    )  # fmt: skip
    for name, title, stacks in series:
        fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
        bottom = [0.0] * len(waves)
        for label, values in stacks:
            ax.bar(waves, values, bottom=bottom, label=label)
            bottom = [a + b for a, b in zip(bottom, values, strict=True)]
        if name == "waves-to-date.png":
            ax.scatter(waves, [float(w.budget_usd) for w in sb.waves], marker="_", s=800, c="red",
                       label="egress budget", zorder=3)  # fmt: skip
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _usd(value: Decimal | None) -> str:
    return "–" if value is None else format_usd(value)


def showback_html(sb: Showback, images: list[str]) -> str:
    """A self-contained page (images are siblings of the page)."""
    alerts = (
        "".join(f'<p class="alert">{html.escape(a.message)}</p>' for a in sb.alerts)
        or "<p>No wave over budget.</p>"
    )
    waves = _table(
        ["wave", "accepted", "runs", "egress moved", "egress", "budget", "migration compute", "to date",
         "storage/day", "compute/day"],
        [[w.wave, "yes" if w.accepted else "no", len(w.runs), format_bytes(w.egress_bytes),
          _usd(w.egress_usd), _usd(w.budget_usd), _usd(w.migration_compute_usd), _usd(w.to_date_usd),
          _usd(w.storage_usd_day), _usd(w.compute_usd_day)] for w in sb.waves],
    )  # fmt: skip
    datasets = _table(
        ["wave", "dataset", "class", "storage class", "stored (verified)", "storage/month", "egress moved",
         "egress", "note"],
        [[d.wave, d.dataset, d.dataset_class, d.storage_class or "", format_bytes(d.stored_bytes or 0),
          _usd(d.storage_usd_month), format_bytes(d.egress_bytes), _usd(d.egress_usd), d.note or ""]
         for d in sb.datasets],
    )  # fmt: skip
    workloads = _table(
        ["wave", "workload", "kind", "instance", "$/hour", "hours in runs", "run cost", "compute/day",
         "per 1,000 inferences", "per training run", "measured", "note"],
        [[w.wave, w.workload, w.kind, w.instance or "", _usd(w.usd_per_hour),
          f"{w.run_hours:.4f}", _usd(w.run_usd), _usd(w.compute_usd_day), _usd(w.usd_per_1k_inferences),
          _usd(w.usd_per_training_run),
          f"{w.throughput_rps:.1f} req/s ({w.throughput_source})" if w.throughput_rps
          else (f"{w.training_run_s:.2f} s per run" if w.training_run_s else ""), w.note or ""]
         for w in sb.workloads],
    )  # fmt: skip
    imgs = "".join(f'<img src="{html.escape(i)}" alt="{html.escape(i)}">' for i in images)
    errors = "".join(f"<li>{html.escape(e)}</li>" for e in sb.errors)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Showback "
        f"{sb.day}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;"
        "margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}"
        ".alert{{color:#a00;font-weight:bold}}img{{max-width:48%;margin:4px}}</style></head><body>"
        f"<h1>Showback {sb.day}</h1><p>Spend to date {_usd(sb.total_to_date_usd)}; run rate at the target "
        f"{_usd(sb.total_daily_usd)}/day. Generated {html.escape(sb.generated_at)}.</p>"
        f"<h2>Budget</h2>{alerts}<h2>Waves</h2>{waves}{imgs}<h2>Workloads and unit economics</h2>{workloads}"
        f"<h2>Datasets</h2>{datasets}"
        + (f"<h2>Problems</h2><ul>{errors}</ul>" if errors else "")
        + "</body></html>"
    )


def write_showback(sb: Showback, out_root: str, *, png: bool = True) -> Showback:
    """Write showback.json, showback.html and the PNGs under <out_root>/showback/<day>/."""
    fs, base = fsspec.core.url_to_fs(out_root)
    folder = f"{str(base).rstrip('/')}/showback/{sb.day.isoformat()}"
    fs.makedirs(folder, exist_ok=True)
    images = showback_plots(sb) if png else {}
    for name, payload in images.items():
        fs.pipe_file(f"{folder}/{name}", payload)
        sb.files[name] = f"{folder}/{name}"
    fs.pipe_file(f"{folder}/showback.html", showback_html(sb, sorted(images)).encode("utf-8"))
    sb.files["showback_html"] = f"{folder}/showback.html"
    sb.files["showback_json"] = f"{folder}/showback.json"
    fs.pipe_file(sb.files["showback_json"], json.dumps(sb.model_dump(mode="json"), indent=2).encode("utf-8"))
    return sb
