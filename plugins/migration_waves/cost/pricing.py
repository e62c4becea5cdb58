"""Prices used by egress forecasts and showback, loaded from a YAML pricing file.

Every price carries the source it was taken from and the date it was read: a forecast that
gates a wave must be traceable to a price list, so a price without a source is an error.

Units: a price is per decimal gigabyte (``usd_per_gb``, unit ``GB`` = 10^9 bytes) or per binary
gibibyte (``usd_per_gib``, unit ``GiB`` = 2^30 bytes). Cloud price lists use GB; some contracts
and monitoring tools use GiB; mixing them silently is a 7.4% error.
"""

from __future__ import annotations

import datetime as dt
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


class Price(BaseModel):
    """One price per data unit, with where it came from and when it was read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_gb: Decimal | None = Field(default=None, ge=0, description="USD per 10^9 bytes")
    usd_per_gib: Decimal | None = Field(default=None, ge=0, description="USD per 2^30 bytes")
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
        if (self.usd_per_gb is None) == (self.usd_per_gib is None):
            raise ValueError(
                "give exactly one of usd_per_gb (per 10^9 bytes) or usd_per_gib (per 2^30 bytes)"
            )
        key_unit = "GB" if self.usd_per_gb is not None else "GiB"
        if self.unit is not None and self.unit != key_unit:
            raise ValueError(
                f"unit {self.unit} disagrees with the price key usd_per_{key_unit.lower()}; "
                f"use usd_per_{self.unit.lower()} for a price per {self.unit}"
            )
        object.__setattr__(self, "unit", key_unit)
        return self

    @property
    def usd_per_unit(self) -> Decimal:
        value = self.usd_per_gb if self.usd_per_gb is not None else self.usd_per_gib
        assert value is not None  # guaranteed by _one_price
        return value

    @property
    def bytes_per_unit(self) -> int:
        return BYTES_PER_UNIT[self.unit or "GB"]

    def usd_for(self, nbytes: int) -> Decimal:
        """Cost of moving nbytes at this price (exact Decimal, not rounded)."""
        return self.usd_per_unit * Decimal(nbytes) / Decimal(self.bytes_per_unit)


class Pricing(BaseModel):
    """A pricing file: named egress prices in one currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: Literal["USD"] = "USD"
    egress: dict[str, Price] = Field(min_length=1)
    path: str | None = Field(default=None, description="file the prices were loaded from")

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
