"""Pricing files: every price has a source and a date; GB and GiB are different units."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from migration_waves.cost.pricing import PricingError, load_pricing

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pricing.yaml"
    path.write_text(body)
    return path


def test_default_pricing_file_loads() -> None:
    pricing = load_pricing(REPO / "include/pricing/default.yaml")
    assert pricing.currency == "USD"
    assert pricing.egress["cloud_to_onprem"].usd_per_unit == Decimal("0.09")  # not the float's expansion
    assert all(p.source and p.date for p in pricing.egress.values())


def test_gb_and_gib_prices_differ_per_byte(tmp_path: Path) -> None:
    pricing = load_pricing(
        write(
            tmp_path,
            """
egress:
  per_gb:  {usd_per_gb: 0.10, unit: GB, source: "price list A", date: 2026-11-01}
  per_gib: {usd_per_gib: 0.10, source: "contract B", date: 2026-11-01}
""",
        )
    )
    gib = 2**30
    assert pricing.egress["per_gib"].unit == "GiB"
    assert pricing.egress["per_gib"].usd_for(gib) == Decimal("0.10")
    assert pricing.egress["per_gb"].usd_for(10**9) == Decimal("0.10")
    # one GiB priced per GB costs 7.37% more than priced per GiB
    assert pricing.egress["per_gb"].usd_for(gib) == Decimal("0.1073741824")


def test_price_without_source_names_the_entry(tmp_path: Path) -> None:
    path = write(tmp_path, "egress:\n  onprem_uplink: {usd_per_gb: 0.02, unit: GB, date: 2026-10-15}\n")
    with pytest.raises(PricingError, match=r"egress\.onprem_uplink\.source: source is missing"):
        load_pricing(path)


def test_blank_source_missing_date_and_unit_mismatch(tmp_path: Path) -> None:
    with pytest.raises(PricingError, match=r"egress\.a\.source: source is blank"):
        load_pricing(write(tmp_path, "egress:\n  a: {usd_per_gb: 1, source: '  ', date: 2026-01-01}\n"))
    with pytest.raises(PricingError, match=r"egress\.a\.date: date is missing"):
        load_pricing(write(tmp_path, "egress:\n  a: {usd_per_gb: 1, source: s}\n"))
    with pytest.raises(PricingError, match=r"unit GiB disagrees with the price key usd_per_gb"):
        load_pricing(
            write(tmp_path, "egress:\n  a: {usd_per_gb: 1, unit: GiB, source: s, date: 2026-01-01}\n")
        )
    with pytest.raises(PricingError, match=r"exactly one of usd_per_gb"):
        load_pricing(write(tmp_path, "egress:\n  a: {unit: GB, source: s, date: 2026-01-01}\n"))
    with pytest.raises(PricingError, match=r"egress\.a\.usd_per_gb: .*greater than or equal to 0"):
        load_pricing(write(tmp_path, "egress:\n  a: {usd_per_gb: -1, source: s, date: 2026-01-01}\n"))


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PricingError, match=r"cannot read pricing file .*nope\.yaml"):
        load_pricing(tmp_path / "nope.yaml")
    with pytest.raises(PricingError, match="must be a mapping"):
        load_pricing(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(PricingError, match=r"currency: .*'USD'"):
        load_pricing(
            write(tmp_path, "currency: EUR\negress:\n  a: {usd_per_gb: 1, source: s, date: 2026-01-01}\n")
        )
