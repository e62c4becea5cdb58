"""Prices used by egress forecasts and showback, loaded from a YAML pricing file.

Every price carries the source it was taken from and the date it was read: a forecast that
gates a wave must be traceable to a price list, so a price without a source is an error.

Sections: ``egress`` (per flow, flat or tiered), ``storage`` (per class and tier, per unit-month),
``instances`` (per hour, with GPUs).

Units: a price is per decimal gigabyte (``usd_per_gb``, unit ``GB`` = 10^9 bytes) or per binary
gibibyte (``usd_per_gib``, unit ``GiB`` = 2^30 bytes). Cloud price lists use GB; some contracts
and monitoring tools use GiB; mixing them silently is a 7.4% error.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

BYTES_PER_UNIT: dict[str, int] = {"GB": 10**9, "GiB": 2**30}


class PricingError(ValueError):
    """A pricing file is missing, malformed, or lacks a price a forecast needs."""


def _to_decimal(value: Any) -> Any:
    # YAML gives floats; str() first keeps 0.09 as Decimal('0.09'), not its binary expansion.
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def _price_key_unit(model: Any) -> str | None:
    if model.usd_per_gb is not None and model.usd_per_gib is not None:
        raise ValueError("give one of usd_per_gb (per 10^9 bytes) or usd_per_gib (per 2^30 bytes), not both")
    if model.usd_per_gb is not None:
        return "GB"
    if model.usd_per_gib is not None:
        return "GiB"
    return None


class Tier(BaseModel):
    """One band of a tiered price: the rate up to a cumulative volume (in the price's unit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to: Decimal | None = Field(
        default=None, gt=0, description="cumulative units this rate applies up to; null: no upper bound"
    )
    usd_per_gb: Decimal | None = Field(default=None, ge=0)
    usd_per_gib: Decimal | None = Field(default=None, ge=0)

    _dec = field_validator("up_to", "usd_per_gb", "usd_per_gib", mode="before")(_to_decimal)

    @model_validator(mode="after")
    def _one_rate(self) -> Tier:
        if _price_key_unit(self) is None:
            raise ValueError("a tier needs usd_per_gb or usd_per_gib")
        return self

    @property
    def rate(self) -> Decimal:
        value = self.usd_per_gb if self.usd_per_gb is not None else self.usd_per_gib
        assert value is not None  # guaranteed by _one_rate
        return value


class Price(BaseModel):
    """One price per data unit, flat or tiered, with where it came from and when it was read.

    Tiers apply per band of cumulative volume (AWS "first 10 TB at $0.09, next 40 TB at $0.085"):
    moving 12 TB costs 10 TB at the first rate plus 2 TB at the second, never 12 TB at either.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_gb: Decimal | None = Field(default=None, ge=0, description="USD per 10^9 bytes")
    usd_per_gib: Decimal | None = Field(default=None, ge=0, description="USD per 2^30 bytes")
    tiers: list[Tier] | None = Field(default=None, min_length=1, description="banded rates, ascending")
    unit: Literal["GB", "GiB"] | None = Field(default=None, description="must agree with the price key")
    source: str = Field(min_length=1, description="price list, contract or page the price comes from")
    date: dt.date = Field(description="when the price was read from its source")

    _dec = field_validator("usd_per_gb", "usd_per_gib", mode="before")(_to_decimal)

    @field_validator("source")
    @classmethod
    def _source_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("source is blank; name the price list or contract the price comes from")
        return value.strip()

    @model_validator(mode="after")
    def _one_price(self) -> Price:
        flat_unit = _price_key_unit(self)
        if (flat_unit is None) == (self.tiers is None):
            raise ValueError(
                "give exactly one of usd_per_gb (per 10^9 bytes), usd_per_gib (per 2^30 bytes) or tiers"
            )
        if self.tiers is not None:
            units = {_price_key_unit(t) for t in self.tiers}
            if len(units) != 1:
                raise ValueError("tiers mix usd_per_gb and usd_per_gib; use one unit for every tier")
            key_unit = units.pop()
            bounds = [t.up_to for t in self.tiers]
            if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
                raise ValueError(
                    "every tier but the last needs up_to, and the last has none (it has no upper bound)"
                )
            if any(b <= a for a, b in itertools.pairwise(bounds[:-1])):  # type: ignore[operator]
                raise ValueError(f"tier bounds {[str(b) for b in bounds[:-1]]} must increase")
        else:
            key_unit = flat_unit
        assert key_unit is not None
        if self.unit is not None and self.unit != key_unit:
            raise ValueError(
                f"unit {self.unit} disagrees with the price key usd_per_{key_unit.lower()}; "
                f"use usd_per_{self.unit.lower()} for a price per {self.unit}"
            )
        object.__setattr__(self, "unit", key_unit)
        return self

    @property
    def usd_per_unit(self) -> Decimal:
        """The flat rate, or the first tier's rate of a tiered price."""
        if self.tiers is not None:
            return self.tiers[0].rate
        value = self.usd_per_gb if self.usd_per_gb is not None else self.usd_per_gib
        assert value is not None  # guaranteed by _one_price
        return value

    @property
    def bytes_per_unit(self) -> int:
        return BYTES_PER_UNIT[self.unit or "GB"]

    def usd_for(self, nbytes: int, *, already: int = 0) -> Decimal:
        """Cost of nbytes at this price (exact Decimal, not rounded).

        already: bytes billed on this price earlier in the same period; with tiers they decide
        which band the new bytes start in.
        """
        per_unit = Decimal(self.bytes_per_unit)
        if self.tiers is None:
            return self.usd_per_unit * Decimal(nbytes) / per_unit
        start = Decimal(already) / per_unit
        end = start + Decimal(nbytes) / per_unit
        total = Decimal(0)
        lower = Decimal(0)
        for tier in self.tiers:
            upper = tier.up_to if tier.up_to is not None else end
            used = min(end, upper) - max(start, lower)
            if used > 0:
                total += used * tier.rate
            if upper >= end:
                break
            lower = upper
        return total

    def cited(self) -> str:
        return f"{self.source} ({self.date})"


class InstancePrice(BaseModel):
    """Price of one instance (or on-prem node) per hour, for showback and unit economics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_hour: Decimal = Field(ge=0)
    gpus: int = Field(default=0, ge=0)
    gpu_model: str | None = None
    site_kind: Literal["onprem", "cloud"] = "cloud"
    source: str = Field(min_length=1)
    date: dt.date

    _dec = field_validator("usd_per_hour", mode="before")(_to_decimal)

    @property
    def usd_per_gpu_hour(self) -> Decimal | None:
        return self.usd_per_hour / self.gpus if self.gpus else None


class Pricing(BaseModel):
    """A pricing file: named egress prices in one currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: Literal["USD"] = "USD"
    egress: dict[str, Price] = Field(min_length=1)
    storage: dict[str, Price] = Field(
        default_factory=dict, description="storage class -> price per unit-month (flat or tiered)"
    )
    instances: dict[str, InstancePrice] = Field(default_factory=dict, description="instance type -> hourly")
    path: str | None = Field(default=None, description="file the prices were loaded from")

    def instance(self, name: str) -> InstancePrice:
        """The named instance price; a PricingError naming the entry and the file when it is absent."""
        if name not in self.instances:
            raise PricingError(
                f"no instance price {name!r} in {self.path or 'the pricing file'}; add instances.{name}: "
                f"{{usd_per_hour: ..., gpus: N, source: ..., date: YYYY-MM-DD}} "
                f"(known: {', '.join(sorted(self.instances)) or 'none'})"
            )
        return self.instances[name]

    def price(self, entry: str, *, needed_for: str = "") -> Price:
        """The named egress price; a PricingError naming the entry and the file when it is absent."""
        if entry not in self.egress:
            where = f" in {self.path}" if self.path else ""
            why = f" (needed for {needed_for})" if needed_for else ""
            raise PricingError(
                f"no egress price {entry!r}{where}{why}; add egress.{entry}: "
                f"{{usd_per_gb: ..., unit: GB, source: ..., date: YYYY-MM-DD}} "
                f"(known: {', '.join(sorted(self.egress))})"
            )
        return self.egress[entry]


def _describe(exc: ValidationError, path: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing" and err["loc"][-1] == "source":
            msg = "source is missing; every price must name where it comes from (price list, contract)"
        elif err["type"] == "missing" and err["loc"][-1] == "date":
            msg = "date is missing; give the date the price was read, e.g. date: 2026-11-01"
        elif err["type"] == "literal_error" and err["loc"][-1] == "unit":
            msg = (
                f"unknown unit {err.get('input')!r}; use GB (10^9 bytes, usd_per_gb) "
                "or GiB (2^30 bytes, usd_per_gib)"
            )
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def load_pricing(path: str | Path) -> Pricing:
    """Load and validate a pricing YAML file; raise PricingError naming each bad entry."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PricingError(f"cannot read pricing file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PricingError(f"pricing file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PricingError(f"pricing file {path} must be a mapping with 'currency:' and 'egress:' keys")
    try:
        return Pricing.model_validate({**raw, "path": str(path)})
    except ValidationError as exc:
        raise PricingError(_describe(exc, str(path))) from None
