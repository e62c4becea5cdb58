"""Pricing, egress forecasts and budgets of waves."""

from migration_waves.cost.egress import (
    DatasetEgress,
    EgressForecast,
    egress_forecast,
    format_bytes,
    format_usd,
)
from migration_waves.cost.pricing import Price, Pricing, PricingError, load_pricing

__all__ = [
    "DatasetEgress",
    "EgressForecast",
    "Price",
    "Pricing",
    "PricingError",
    "egress_forecast",
    "format_bytes",
    "format_usd",
    "load_pricing",
]
