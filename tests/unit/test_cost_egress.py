"""Egress forecast of a wave: flows by site kind, Decimal money, the budget gate with numbers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from migration_waves.cost.egress import egress_forecast, format_usd
from migration_waves.cost.pricing import PricingError, load_pricing
from migration_waves.spec.loader import load_wave
from migration_waves.spec.models import WaveSpec

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pilot() -> WaveSpec:
    return load_wave(REPO / "include/waves/pilot.yaml")


def pricing_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        "egress:\n"
        "  onprem_to_cloud: {usd_per_gb: 0.00, source: 'ingress free', date: 2026-11-01}\n"
        "  onprem_uplink: {usd_per_gib: 0.50, source: 'transit contract', date: 2026-10-15}\n"
        "  cloud_to_onprem: {usd_per_gb: 0.09, source: 'egress list', date: 2026-11-01}\n" + extra
    )
    return path


def test_onprem_to_cloud_sums_uplink_and_ingress(pilot: WaveSpec) -> None:
    pricing = load_pricing(REPO / "include/pricing/default.yaml")
    forecast = egress_forecast(pilot, {"digits-corpus": 2_500_000_000, "features": 500_000_000}, pricing)
    corpus = forecast.datasets[0]
    assert corpus.flow == "onprem->cloud" and corpus.price_entries == ["onprem_uplink", "onprem_to_cloud"]
    assert corpus.usd == Decimal("0.05")  # 2.5 GB x ($0.02 uplink + $0.00 ingress)
    assert forecast.forecast_usd == Decimal("0.06") and forecast.bytes == 3_000_000_000
    assert forecast.budget_usd == Decimal("50") and forecast.passed
    assert forecast.reasons == ["wave pilot: egress forecast $0.06 for 3.00 GB is within the budget $50.00"]
    assert "onprem_uplink" in forecast.sources and "finance sheet" in forecast.sources["onprem_uplink"]
    dumped = forecast.model_dump(mode="json")
    assert dumped["forecast_usd"] == "0.06"  # Decimal survives JSON as an exact string


def test_gib_priced_uplink(pilot: WaveSpec, tmp_path: Path) -> None:
    pricing = load_pricing(pricing_file(tmp_path))
    forecast = egress_forecast(pilot, {"features": 3 * 2**30}, pricing)
    assert forecast.forecast_usd == Decimal("1.5")  # 3 GiB at $0.50/GiB, not 3.22 GB at $0.50/GB


def test_budget_gate_fails_with_numbers(pilot: WaveSpec, tmp_path: Path) -> None:
    spec = pilot.model_copy(deep=True)
    spec.budget.egress_usd = 1.0
    pricing = load_pricing(pricing_file(tmp_path))
    forecast = egress_forecast(spec, {"digits-corpus": 2 * 2**30, "features": 2**29}, pricing)
    assert not forecast.passed
    assert forecast.forecast_usd == Decimal("1.25")
    assert forecast.reasons[0] == (
        "wave pilot: egress forecast $1.25 for 2.68 GB exceeds the budget $1.00 by $0.25"
    )
    assert forecast.reasons[1].startswith("dataset digits-corpus: $1.00 for 2.15 GB (onprem->cloud")


def test_cloud_to_onprem_and_missing_flow_price(pilot: WaveSpec, tmp_path: Path) -> None:
    spec = pilot.model_copy(deep=True)
    back = spec.dataset("serving-logs")
    back.source, back.target = "cloud:logs/", "onprem:logs-back/"
    pricing = load_pricing(pricing_file(tmp_path))
    forecast = egress_forecast(spec, {"serving-logs": 10**10}, pricing)
    assert forecast.datasets[0].flow == "cloud->onprem" and forecast.forecast_usd == Decimal("0.9")

    back.target = "cloud:logs-copy/"  # same site: nothing leaves it
    assert egress_forecast(spec, {"serving-logs": 10**10}, pricing).forecast_usd == 0

    spec.sites["cloud2"] = spec.sites["cloud"].model_copy(update={"region": "eu-west-1"})
    back.target = "cloud2:logs/"
    with pytest.raises(
        PricingError, match=r"no egress price 'cloud_to_cloud'.*dataset serving-logs, cloud -> cloud"
    ):
        egress_forecast(spec, {"serving-logs": 10**10}, pricing)
    extra = "  cloud_to_cloud: {usd_per_gb: 0.02, source: 'inter-region list', date: 2026-11-01}\n"
    other = load_pricing(pricing_file(tmp_path, extra))
    assert egress_forecast(spec, {"serving-logs": 10**10}, other).forecast_usd == Decimal("0.2")


def test_bad_inputs_name_the_dataset(pilot: WaveSpec) -> None:
    pricing = load_pricing(REPO / "include/pricing/default.yaml")
    with pytest.raises(ValueError, match=r"no dataset named 'corpus' \(known: checkpoints, digits-corpus"):
        egress_forecast(pilot, {"corpus": 1}, pricing)
    with pytest.raises(ValueError, match="dataset features has a negative size"):
        egress_forecast(pilot, {"features": -1}, pricing)


def test_format_usd_keeps_small_amounts_visible() -> None:
    assert format_usd(Decimal("0.00196")) == "$0.0020"
    assert format_usd(Decimal("0.0196")) == "$0.02"
    assert format_usd(Decimal("1234.567")) == "$1,234.57"
    assert format_usd(Decimal(0)) == "$0.00"
