"""Egress forecasts: what moving a wave's datasets costs, checked against the wave's budget.

Each dataset moves from its source site to its target site; the site kinds decide which prices
apply (all are summed per byte):

- onprem -> cloud: onprem_uplink + onprem_to_cloud (leaves the DC over the transit contract,
  then cloud ingress, often free);
- cloud -> onprem: cloud_to_onprem (cloud egress to the internet or interconnect);
- cloud -> cloud, another site: cloud_to_cloud (inter-region or inter-provider transfer);
- onprem -> onprem, another site: onprem_uplink (DC to DC over the transit contract);
- same site: nothing (no byte leaves the site).

Tiered prices apply to the total of a flow, not per dataset: the bytes of every dataset on the
same price entry add up (in the wave's dataset order), so a wave whose datasets together cross a
tier boundary pays the next band for the bytes beyond it. ``already_billed`` carries the bytes
billed on each entry earlier in the period (the month's egress so far).

A flow whose price entry is absent from the pricing file is an error naming the dataset and
the entry to add, never a silent zero.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, Field

from migration_waves.cost.pricing import Pricing, PricingError
from migration_waves.spec.models import WaveSpec

FLOW_PRICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("onprem", "cloud"): ("onprem_uplink", "onprem_to_cloud"),
    ("cloud", "onprem"): ("cloud_to_onprem",),
    ("cloud", "cloud"): ("cloud_to_cloud",),
    ("onprem", "onprem"): ("onprem_uplink",),
}


def format_usd(amount: Decimal | float) -> str:
    """$1,234.57 for money; small non-zero amounts keep four decimals so they do not read as $0.00."""
    value = Decimal(str(amount))
    if value != 0 and abs(value) < Decimal("0.01"):
        return f"${value.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def format_bytes(nbytes: int) -> str:
    """Decimal units (GB = 10^9 bytes), the unit cloud price lists use."""
    value = float(nbytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{nbytes} B"  # unreachable; keeps type checkers content


class DatasetEgress(BaseModel):
    """Forecast cost of moving one dataset."""

    dataset: str
    source_site: str
    target_site: str
    flow: str = Field(description="source kind -> target kind, e.g. onprem->cloud")
    bytes: int
    price_entries: list[str] = Field(description="pricing-file entries summed for this flow")
    usd: Decimal


class FlowEgress(BaseModel):
    """Bytes and cost of one flow (source kind -> target kind) across the wave's datasets."""

    flow: str
    bytes: int
    usd: Decimal
    price_entries: list[str]
    datasets: list[str]


class EgressForecast(BaseModel):
    """Egress forecast of a wave against its budget (a gate: passed + reasons)."""

    wave: str
    currency: str = "USD"
    datasets: list[DatasetEgress]
    flows: list[FlowEgress] = Field(default_factory=list)
    bytes: int
    forecast_usd: Decimal
    budget_usd: Decimal
    passed: bool
    reasons: list[str]
    pricing_file: str | None = None
    sources: dict[str, str] = Field(default_factory=dict, description="entry -> 'source (date)'")


def egress_forecast(
    spec: WaveSpec,
    bytes_by_dataset: dict[str, int],
    pricing: Pricing,
    *,
    already_billed: dict[str, int] | None = None,
) -> EgressForecast:
    """Price moving the given bytes of each dataset of the wave; pass when the total fits the budget.

    Datasets absent from bytes_by_dataset are not forecast (a run may move a subset); a name the
    wave does not have, or a negative size, is an error.
    """
    known = {ds.name for ds in spec.datasets}
    unknown = sorted(set(bytes_by_dataset) - known)
    if unknown:
        raise ValueError(
            f"wave {spec.wave}: no dataset named {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(known)) or 'none'}); fix the dataset names"
        )
    lines: list[DatasetEgress] = []
    used: set[str] = set()
    billed = dict(already_billed or {})  # entry -> bytes billed so far: tiers are cumulative
    for ds in spec.datasets:
        if ds.name not in bytes_by_dataset:
            continue
        nbytes = int(bytes_by_dataset[ds.name])
        if nbytes < 0:
            raise ValueError(f"wave {spec.wave}: dataset {ds.name} has a negative size ({nbytes} bytes)")
        src, dst = spec.location(ds.source), spec.location(ds.target)
        src_kind, dst_kind = spec.sites[src.site].kind, spec.sites[dst.site].kind
        entries = () if src.site == dst.site else FLOW_PRICES[(src_kind, dst_kind)]
        usd = Decimal(0)
        for entry in entries:
            try:
                price = pricing.price(entry, needed_for=f"dataset {ds.name}, {src_kind} -> {dst_kind}")
            except PricingError as exc:
                raise PricingError(f"wave {spec.wave}: {exc}") from None
            usd += price.usd_for(nbytes, already=billed.get(entry, 0))
            billed[entry] = billed.get(entry, 0) + nbytes
            used.add(entry)
        lines.append(
            DatasetEgress(
                dataset=ds.name,
                source_site=src.site,
                target_site=dst.site,
                flow=f"{src_kind}->{dst_kind}" if entries else "same site",
                bytes=nbytes,
                price_entries=list(entries),
                usd=usd,
            )
        )
    flows: dict[str, FlowEgress] = {}
    for line in lines:
        flow = flows.setdefault(
            line.flow,
            FlowEgress(
                flow=line.flow, bytes=0, usd=Decimal(0), price_entries=line.price_entries, datasets=[]
            ),
        )
        flow.bytes += line.bytes
        flow.usd += line.usd
        flow.datasets.append(line.dataset)
    total_bytes = sum(line.bytes for line in lines)
    total = sum((line.usd for line in lines), Decimal(0))
    budget = Decimal(str(spec.budget.egress_usd))
    passed = total <= budget
    summary = f"wave {spec.wave}: egress forecast {format_usd(total)} for {format_bytes(total_bytes)}"
    if passed:
        reasons = [f"{summary} is within the budget {format_usd(budget)}"]
    else:
        reasons = [f"{summary} exceeds the budget {format_usd(budget)} by {format_usd(total - budget)}"]
        for line in sorted(lines, key=lambda item: item.usd, reverse=True)[:3]:
            if line.usd > 0:
                reasons.append(
                    f"dataset {line.dataset}: {format_usd(line.usd)} for {format_bytes(line.bytes)} "
                    f"({line.flow}: {' + '.join(line.price_entries)})"
                )
    if not passed:
        for f in sorted(flows.values(), key=lambda item: item.usd, reverse=True):
            if f.usd > 0:
                reasons.append(f"flow {f.flow}: {format_usd(f.usd)} for {format_bytes(f.bytes)}")
    return EgressForecast(
        wave=spec.wave,
        currency=pricing.currency,
        datasets=lines,
        flows=list(flows.values()),
        bytes=total_bytes,
        forecast_usd=total,
        budget_usd=budget,
        passed=passed,
        reasons=reasons,
        pricing_file=pricing.path,
        sources={e: f"{pricing.egress[e].source} ({pricing.egress[e].date})" for e in sorted(used)},
    )
