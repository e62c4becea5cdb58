"""Tiered prices apply per band of cumulative volume; storage and instance prices cite sources."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from migration_waves.cost.egress import egress_forecast
from migration_waves.cost.pricing import PricingError, load_pricing
from migration_waves.spec.loader import load_wave

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
GB = 10**9


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pricing.yaml"
    path.write_text(body)
    return path


TIERED = """
egress:
  onprem_to_cloud: {usd_per_gb: 0, source: "ingress free", date: 2026-11-01}
  onprem_uplink:
    tiers: [{up_to: 100, usd_per_gb: 0.10}, {up_to: 300, usd_per_gb: 0.05}, {usd_per_gb: 0.01}]
    source: "transit contract"
    date: 2026-10-15
"""


def test_tiers_apply_per_band(tmp_path: Path) -> None:
    price = load_pricing(write(tmp_path, TIERED)).egress["onprem_uplink"]
    assert price.usd_for(50 * GB) == Decimal("5")  # inside the first band
    assert price.usd_for(150 * GB) == Decimal("12.5")  # 100 x 0.10 + 50 x 0.05, not 150 x either
    assert price.usd_for(500 * GB) == Decimal("22")  # 10 + 200 x 0.05 + 200 x 0.01
    # bytes billed earlier this month start the new bytes in a later band
    assert price.usd_for(100 * GB, already=250 * GB) == Decimal("3")  # 50 x 0.05 + 50 x 0.01
    assert price.usd_for(0) == 0


def test_forecast_tiers_span_the_flow_not_each_dataset(tmp_path: Path) -> None:
    pilot = load_wave(REPO / "include" / "waves" / "pilot.yaml")
    pricing = load_pricing(write(tmp_path, TIERED))
    forecast = egress_forecast(pilot, {"digits-corpus": 80 * GB, "features": 80 * GB}, pricing)
    corpus, features = forecast.datasets
    assert corpus.usd == Decimal("8")  # the first 80 GB of the flow: band 1
    assert features.usd == Decimal("5")  # 20 GB in band 1 ($2) + 60 GB in band 2 ($3)
    [flow] = forecast.flows
    assert flow.flow == "onprem->cloud" and flow.bytes == 160 * GB and flow.usd == Decimal("13")
    assert flow.datasets == ["digits-corpus", "features"]
    later = egress_forecast(pilot, {"features": 80 * GB}, pricing, already_billed={"onprem_uplink": 300 * GB})
    assert later.forecast_usd == Decimal("0.8")


def test_default_file_has_storage_instances_and_tiers() -> None:
    pricing = load_pricing(REPO / "include" / "pricing" / "default.yaml")
    out = pricing.egress["cloud_to_onprem"]
    assert out.unit == "GB" and out.tiers and out.usd_per_unit == Decimal("0.09")
    assert out.usd_for(12_288 * GB) == Decimal("1095.68")  # 10,240 GB x 0.09 + 2,048 GB x 0.085
    assert {"cloud_to_cloud", "cloud_to_internet"} <= set(pricing.egress)
    assert pricing.storage["onprem-nas"].unit == "GiB"
    h100 = pricing.instance("p5.48xlarge")
    assert h100.gpus == 8 and h100.usd_per_gpu_hour == Decimal("6.88")
    every = [*pricing.egress.values(), *pricing.storage.values(), *pricing.instances.values()]
    assert all(p.source and p.date for p in every)
    with pytest.raises(PricingError, match=r"no instance price 'x1'.*known: .*g5\.xlarge"):
        pricing.instance("x1")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "egress: {a: {usd_per_gb: 1, source: s, date: 2026-01-01}}\n"
            "instances: {g5: {usd_per_hour: 1.0, gpus: 1, date: 2026-01-01}}\n",
            r"instances\.g5\.source: source is missing",
        ),
        (
            "egress: {a: {usd_per_gb: 1, source: s, date: 2026-01-01}}\n"
            "storage: {hot: {usd_per_gb: 0.02, unit: TB, source: s, date: 2026-01-01}}\n",
            r"storage\.hot\.unit: unknown unit 'TB'; use GB \(10\^9 bytes",
        ),
        (
            "egress: {a: {tiers: [{up_to: 10, usd_per_gb: 1}, {up_to: 20, usd_per_gb: 2}], source: s, "
            "date: 2026-01-01}}\n",
            r"egress\.a: every tier but the last needs up_to, and the last has none",
        ),
        (
            "egress: {a: {tiers: [{up_to: 10, usd_per_gb: 1}, {usd_per_gib: 2}], source: s, "
            "date: 2026-01-01}}\n",
            r"tiers mix usd_per_gb and usd_per_gib",
        ),
    ],
)
def test_bad_prices_name_the_entry(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(PricingError, match=message):
        load_pricing(write(tmp_path, body))
