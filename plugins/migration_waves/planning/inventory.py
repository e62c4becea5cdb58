"""Workload inventory: what could move, scored on the five heatmap dimensions.

An inventory is a YAML file (sites, defaults, workloads) that may import CSV files exported from
a spreadsheet (one workload per row). Every row is validated on its own so that one bad row
yields a problem naming the file, the row (and workload) and the field, never a bare traceback.

Dimensions (all required on every row):

- ``gpu_need``: GPUs the workload needs at once (0 for CPU-only);
- ``data_size``: bytes it reads or holds, with a unit: ``2.5 TB`` (10^12) or ``800 GiB`` (2^30);
- ``latency_sensitivity``: low | medium | high | critical;
- ``compliance_scope``: none | internal | pii | regulated;
- ``change_tolerance``: high | medium | low (how much disruption its owners accept).

``data_gravity`` (low | medium | high: how much else reads the data where it is) and
``depends_on`` (workloads that must move in the same wave) drive the wave proposal.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AnyHttpUrl, BeforeValidator, Field, ValidationError, model_validator

from migration_waves.spec.loader import _MISSING, Problem, SpecError, _read_yaml
from migration_waves.spec.models import SLUG, DatasetClass, Owners, Site, Slug, StrictModel, Targets

#: Byte units an inventory may use. Decimal (kB..PB) as cloud price lists, binary (KiB..PiB) as
#: monitoring tools; the unit is mandatory because "500" or "500 G" is ambiguous by 7%.
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "PiB": 2**50,
}
_SIZE_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]+)?\s*$")
REQUIRED_TAGS = ("cost_center", "owner")
DIMENSIONS = ("gpu_need", "data_size", "latency_sensitivity", "compliance_scope", "change_tolerance")


class InventoryError(SpecError):
    """An inventory failed to load; carries every problem (file, row/field, value, fix)."""


def parse_size(value: Any) -> int:
    """'2.5 TB' -> 2_500_000_000_000 bytes; a missing or unknown unit is an error naming the units."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"give a size with a unit, e.g. '2.5 TB' or '800 GiB' (got {value!r})")
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size; write a number and a unit, e.g. '2.5 TB' or '800 GiB'")
    unit = match["unit"]
    if unit is None:
        raise ValueError(
            f"{value!r} has no unit; add one of {', '.join(SIZE_UNITS)} (TB = 10^12 bytes, TiB = 2^40)"
        )
    if unit not in SIZE_UNITS:
        raise ValueError(f"unknown unit {unit!r} in {value!r}; use one of {', '.join(SIZE_UNITS)}")
    return round(float(match["num"]) * SIZE_UNITS[unit])


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0, description="bytes, given with a unit")]


def _split_list(value: Any) -> Any:
    # CSV cells hold lists as 'a;b'; YAML gives real lists.
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    return value


class InventoryDataset(StrictModel):
    """A dataset a workload owns; becomes a dataset of the draft wave spec."""

    name: Slug
    size: Size
    class_: DatasetClass = Field(default=DatasetClass.IMMUTABLE, alias="class")
    path: str | None = Field(default=None, description="path under the sites' storage; default '<name>/'")
    tags: dict[str, str] = Field(default_factory=dict)


class Endpoints(StrictModel):
    """What an inference workload needs in a wave spec (canary through the local router)."""

    baseline: AnyHttpUrl
    candidate: AnyHttpUrl
    router_admin: AnyHttpUrl
    payloads: str = Field(description="JSONL request bodies, relative to the inventory file")


def _parse_datasets(value: Any) -> Any:
    # CSV: 'corpus=2 TB;features=40 GB:mutable' (name=size[:class]).
    if not isinstance(value, str):
        return value
    out = []
    for part in _split_list(value):
        name, sep, rest = part.partition("=")
        if not sep:
            raise ValueError(f"dataset {part!r} is not name=size[:class], e.g. corpus=2 TB:immutable")
        size, _, klass = rest.partition(":")
        out.append(
            {"name": name.strip(), "size": size.strip(), **({"class": klass.strip()} if klass else {})}
        )
    return out


class InventoryWorkload(StrictModel):
    """One workload row: the five dimensions, data gravity, dependencies and what drafts need."""

    name: Slug
    kind: Literal["training", "inference", "batch", "dev", "ingestion"]
    description: str = ""
    owner: str = Field(min_length=1, description="team that owns the workload; becomes the owner tag")
    gpu_need: int = Field(ge=0, description="GPUs needed at once")
    data_size: Size
    latency_sensitivity: Literal["low", "medium", "high", "critical"]
    compliance_scope: Literal["none", "internal", "pii", "regulated"]
    change_tolerance: Literal["high", "medium", "low"]
    data_gravity: Literal["low", "medium", "high"]
    depends_on: Annotated[list[Slug], BeforeValidator(_split_list)] = Field(
        default_factory=list, description="workloads that must move in the same wave"
    )
    checkpointed: bool = Field(default=False, description="can pause and resume from checkpoints")
    rollback: Literal["easy", "hard"] = "hard"
    critical: bool = Field(default=False, description="business-critical: never in the pilot")
    tags: dict[str, str] = Field(default_factory=dict)
    datasets: Annotated[list[InventoryDataset], BeforeValidator(_parse_datasets)] = Field(
        default_factory=list
    )
    source_site: Slug = "onprem"
    target_site: Slug = "cloud"
    golden_image: Slug | None = None
    command: list[str] | None = Field(default=None, description="training/batch: argv for the drill")
    checkpoint: str | None = Field(default=None, description="training: site:path of its checkpoints")
    endpoints: Endpoints | None = None

    @model_validator(mode="after")
    def _self_dependency(self) -> InventoryWorkload:
        if self.name in self.depends_on:
            raise ValueError(f"depends_on lists the workload itself ({self.name!r}); remove it")
        return self


class InventoryDefaults(StrictModel):
    """Wave-level fields the planner copies into every draft spec."""

    window: str = "0 2 * * 6"
    owners: Owners
    targets: Targets
    tags: dict[str, str] = Field(default_factory=dict)
    pricing: str = Field(default="../pricing/default.yaml", description="relative to the inventory file")
    golden_images: str = "../golden_images"
    state: str | None = None
    budget_margin: float = Field(default=1.25, ge=1, description="draft budget = forecast x margin")


class Inventory(StrictModel):
    """A validated inventory: sites, defaults and workloads."""

    sites: dict[Slug, Site]
    defaults: InventoryDefaults
    workloads: list[InventoryWorkload]
    source: str | None = Field(default=None, description="file the inventory was loaded from")

    def workload(self, name: str) -> InventoryWorkload:
        for wl in self.workloads:
            if wl.name == name:
                return wl
        raise KeyError(f"inventory has no workload {name!r}")

    def resolve(self, value: str) -> str:
        """An inventory-relative path as absolute (URLs and absolute paths pass through)."""
        if "://" in value or value.startswith("/"):
            return value
        base = Path(self.source).parent if self.source else Path.cwd()
        return str((base / value).resolve())


_TOP_KEYS = {"sites", "defaults", "workloads", "import"}


def _row_problems(exc: ValidationError, file: str, where: str, raw: dict[str, Any]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "<row>"
        top = err["loc"][0] if err["loc"] else None
        value = raw.get(top, _MISSING) if isinstance(top, str) and err["type"] != "missing" else _MISSING
        if err["type"] == "missing":
            message = f"required field is missing; add {loc[-1]}"
            if loc[-1] in DIMENSIONS:
                message = f"heatmap dimension {loc[-1]} is missing; every workload needs all of " + ", ".join(
                    DIMENSIONS
                )
        elif err["type"] == "extra_forbidden":
            message = "unknown field; remove it or fix its spelling"
        else:
            message = err["msg"].removeprefix("Value error, ")
        problems.append(Problem(file, f"{where}.{field}", value, message))
    return problems


def _csv_rows(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[Problem]]:
    """Rows of a spreadsheet export as (where, row) with empty cells dropped (missing, not '')."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets often write a BOM
    except OSError as exc:
        return [], [Problem(str(path), "", _MISSING, f"cannot read the file: {exc.strerror}")]
    reader = csv.DictReader(text.splitlines())
    rows: list[tuple[str, dict[str, Any]]] = []
    problems: list[Problem] = []
    for line, record in enumerate(reader, start=2):  # line 1 is the header
        if None in record:
            problems.append(Problem(str(path), f"row {line}", _MISSING, "more cells than header columns"))
            continue
        row: dict[str, Any] = {}
        tags: dict[str, str] = {}
        for key, cell in record.items():
            key = (key or "").strip()
            cell = (cell or "").strip()
            if not cell:
                continue
            if key.startswith("tag:"):  # extra tag columns: tag:project
                tags[key[4:]] = cell
            elif key == "cost_center":  # the one tag every sheet has: a column of its own
                tags["cost_center"] = cell
            else:
                row[key] = cell
        if tags:
            row["tags"] = tags
        if not row:
            continue  # blank line in the sheet
        rows.append((f"row {line} ({row.get('name', '?')})", row))
    return rows, problems


def load_inventory(path: str | Path) -> Inventory:
    """Load an inventory (YAML with optional CSV imports, or a CSV beside a YAML of defaults).

    Raises InventoryError listing every problem: the file, the row and workload, the field.
    """
    path = Path(path)
    problems: list[Problem] = []
    rows: list[tuple[str, str, dict[str, Any]]] = []  # (file, where, raw row)
    if path.suffix == ".csv":
        # A bare sheet takes sites and defaults from inventory.yaml next to it.
        head_path = path.with_name("workloads.yaml")
        head = _read_yaml(head_path) if head_path.exists() else None
        if not isinstance(head, dict):
            raise InventoryError(
                [Problem(str(path), "", _MISSING, f"a CSV inventory needs sites and defaults in {head_path}")]
            )
        head = {k: v for k, v in head.items() if k in ("sites", "defaults")}
        imports: list[str] = [path.name]
        base = path.parent
        source = head_path
    else:
        try:
            head = _read_yaml(path)
        except SpecError as exc:
            raise InventoryError(exc.problems) from None
        if not isinstance(head, dict):
            raise InventoryError(
                [
                    Problem(
                        str(path), "", _MISSING, "an inventory is a mapping with sites, defaults, workloads"
                    )
                ]
            )
        for key in sorted(set(head) - _TOP_KEYS):
            problems.append(Problem(str(path), key, _MISSING, f"unknown key; use {sorted(_TOP_KEYS)}"))
        for i, raw in enumerate(head.get("workloads") or []):
            name = raw.get("name", "?") if isinstance(raw, dict) else "?"
            rows.append((str(path), f"workloads[{i}] ({name})", raw))
        imports = list(head.get("import") or [])
        base = path.parent
        source = path
    for rel in imports:
        csv_rows, csv_problems = _csv_rows(base / rel)
        problems.extend(csv_problems)
        rows.extend((str(base / rel), where, row) for where, row in csv_rows)

    defaults_tags = (head.get("defaults") or {}).get("tags") or {}
    workloads: list[InventoryWorkload] = []
    for file, where, raw in rows:
        if not isinstance(raw, dict):
            problems.append(Problem(file, where, raw, "a workload is a mapping of fields"))
            continue
        try:
            wl = InventoryWorkload.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_row_problems(exc, file, where, raw))
            continue
        tags = {**defaults_tags, "owner": wl.owner, **wl.tags}
        missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
        if missing:
            problems.append(
                Problem(
                    file,
                    f"{where}.tags",
                    wl.tags,
                    f"missing required tags {missing}; add them to the row or to defaults.tags",
                )
            )
        workloads.append(wl.model_copy(update={"tags": tags}))
    try:
        inv = Inventory.model_validate(
            {
                "sites": head.get("sites"),
                "defaults": head.get("defaults"),
                "workloads": [],
                "source": str(source),
            }
        )
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(Problem(str(source), where, _MISSING, err["msg"].removeprefix("Value error, ")))
        raise InventoryError(problems) from None
    problems.extend(_cross_row_problems(workloads, inv, str(source)))
    if problems:
        raise InventoryError(problems)
    return inv.model_copy(update={"workloads": workloads})


def _cross_row_problems(workloads: list[InventoryWorkload], inv: Inventory, file: str) -> list[Problem]:
    problems: list[Problem] = []
    names: set[str] = set()
    datasets: dict[str, str] = {}
    for wl in workloads:
        if wl.name in names:
            problems.append(
                Problem(file, f"workload {wl.name}", wl.name, "name used twice; names are unique")
            )
        names.add(wl.name)
        for ds in wl.datasets:
            if ds.name in datasets:
                problems.append(
                    Problem(
                        file,
                        f"workload {wl.name}.datasets.{ds.name}",
                        ds.name,
                        f"dataset name also used by workload {datasets[ds.name]}; dataset names are unique",
                    )
                )
            datasets[ds.name] = wl.name
    for wl in workloads:
        for dep in wl.depends_on:
            if dep not in names:
                problems.append(
                    Problem(
                        file,
                        f"workload {wl.name}.depends_on",
                        dep,
                        f"no workload named {dep!r} in the inventory; add it or fix the name",
                    )
                )
        for side in ("source_site", "target_site"):
            site = getattr(wl, side)
            if site not in inv.sites:
                problems.append(
                    Problem(
                        file,
                        f"workload {wl.name}.{side}",
                        site,
                        f"no site {site!r} under sites (known: {', '.join(sorted(inv.sites))})",
                    )
                )
    return problems


def dump_inventory_yaml(inv: Inventory) -> str:
    """The inventory as YAML (for evidence; sizes in bytes)."""
    return yaml.safe_dump(inv.model_dump(mode="json", by_alias=True, exclude={"source"}), sort_keys=False)


__all__ = [
    "DIMENSIONS",
    "SIZE_UNITS",
    "SLUG",
    "Endpoints",
    "Inventory",
    "InventoryDataset",
    "InventoryError",
    "InventoryWorkload",
    "load_inventory",
    "parse_size",
]
