"""Bytes actually moved by a wave run, priced per flow after the move, next to the forecast.

The preflight forecast prices what the plan says will move; this prices what the copy tasks of the
run report as ``bytes_copied`` (seed / ingest, sync, final sync), with the same tiered prices, and
puts the two side by side per flow (``onprem->cloud``, ...). It never gates the wave: the record
it produces has no ``passed`` key, and a pricing problem is written into ``error`` instead of
raised, so a run's outcome is the same with or without it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from migration_waves.cost.egress import egress_forecast, format_bytes, format_usd
from migration_waves.cost.pricing import Pricing, PricingError, load_pricing
from migration_waves.spec.models import WaveSpec

#: Record-name suffixes (``<dataset>-<kind>``) of the data records that moved bytes.
COPY_KINDS: tuple[str, ...] = ("seed", "ingest", "sync", "final", "final-sync")


class FlowActual(BaseModel):
    """Forecast and actual bytes and cost of one flow (source kind -> target kind)."""

    flow: str
    datasets: list[str]
    price_entries: list[str]
    forecast_bytes: int | None = None
    forecast_usd: Decimal | None = None
    bytes: int
    usd: Decimal
    delta_usd: Decimal | None = Field(default=None, description="actual minus forecast")


class ActualCost(BaseModel):
    """What a run's moved bytes cost, per dataset and per flow, against forecast and budget."""

    wave: str
    run_id: str | None = None
    currency: str = "USD"
    bytes: int = 0
    usd: Decimal | None = None
    forecast_bytes: int | None = None
    forecast_usd: Decimal | None = None
    budget_usd: Decimal
    within_budget: bool | None = None
    bytes_by_dataset: dict[str, int] = Field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="dataset -> copy kind (seed, sync, final) -> bytes"
    )
    datasets: list[dict[str, Any]] = Field(default_factory=list, description="priced lines per dataset")
    flows: list[FlowActual] = Field(default_factory=list)
    sources: dict[str, str] = Field(default_factory=dict, description="price entry -> 'source (date)'")
    pricing_file: str | None = None
    summary: str = ""
    error: str | None = None


def _data(envelope: Any) -> dict[str, Any]:
    if not isinstance(envelope, dict):
        return {}
    data = envelope.get("data", envelope)
    return data if isinstance(data, dict) else {}


def split_record_name(name: str, datasets: list[str]) -> tuple[str | None, str]:
    """``features-final-sync`` -> (``features``, ``final-sync``); the longest dataset name wins."""
    for ds in sorted(datasets, key=len, reverse=True):
        if name.startswith(f"{ds}-"):
            return ds, name[len(ds) + 1 :]
    return None, ""


def moved_bytes(
    spec: WaveSpec, records: dict[str, dict[str, Any]]
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Bytes copied per dataset by this run's copy records, and the same split by copy kind."""
    names = [ds.name for ds in spec.datasets]
    total: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    for name, env in (records.get("data") or {}).items():
        ds, kind = split_record_name(name, names)
        value = _data(env).get("bytes_copied")
        if ds is None or kind not in COPY_KINDS or isinstance(value, bool) or value is None:
            continue
        nbytes = int(value)
        total[ds] = total.get(ds, 0) + nbytes
        by_kind.setdefault(ds, {})[kind] = by_kind.get(ds, {}).get(kind, 0) + nbytes
    return total, by_kind


def actual_cost(
    spec: WaveSpec,
    records: dict[str, dict[str, Any]],
    *,
    pricing: Pricing | None = None,
    run_id: str | None = None,
) -> ActualCost:
    """Price the bytes this run moved per flow, beside the preflight forecast (never raises on prices)."""
    moved, by_kind = moved_bytes(spec, records)
    forecast = _data((records.get("preflight") or {}).get("egress"))
    out = ActualCost(
        wave=spec.wave,
        run_id=run_id,
        bytes=sum(moved.values()),
        budget_usd=Decimal(str(spec.budget.egress_usd)),
        bytes_by_dataset=moved,
        by_kind=by_kind,
    )
    if forecast:
        out.forecast_bytes = int(forecast.get("bytes") or 0)
        out.forecast_usd = Decimal(str(forecast.get("forecast_usd") or 0))
    try:
        pricing = pricing or load_pricing(spec.resolve_path(spec.budget.pricing))
        # Every dataset of the wave is priced, zero bytes included, so every flow shows its row.
        priced = egress_forecast(spec, {ds.name: moved.get(ds.name, 0) for ds in spec.datasets}, pricing)
    except (PricingError, ValueError, OSError) as exc:
        out.error = f"wave {spec.wave}: moved bytes could not be priced: {exc}"
        out.summary = f"wave {spec.wave}: moved {format_bytes(out.bytes)}; not priced"
        return out
    forecast_flows = {f.get("flow"): f for f in forecast.get("flows") or [] if isinstance(f, dict)}
    for flow in priced.flows:
        planned = forecast_flows.get(flow.flow)
        f_usd = Decimal(str(planned["usd"])) if planned else None
        out.flows.append(
            FlowActual(
                flow=flow.flow,
                datasets=flow.datasets,
                price_entries=flow.price_entries,
                forecast_bytes=int(planned["bytes"]) if planned else None,
                forecast_usd=f_usd,
                bytes=flow.bytes,
                usd=flow.usd,
                delta_usd=None if f_usd is None else flow.usd - f_usd,
            )
        )
    out.usd = priced.forecast_usd
    out.within_budget = priced.passed
    out.datasets = [d.model_dump(mode="json") for d in priced.datasets if d.bytes or d.dataset in moved]
    out.sources = priced.sources
    out.pricing_file = priced.pricing_file
    planned_text = f" (forecast {format_usd(out.forecast_usd)})" if out.forecast_usd is not None else ""
    out.summary = (
        f"wave {spec.wave}: moved {format_bytes(out.bytes)} for {format_usd(priced.forecast_usd)}"
        f"{planned_text}; budget {format_usd(out.budget_usd)}"
    )
    return out
