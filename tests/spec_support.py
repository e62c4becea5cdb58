"""A minimal valid wave spec for tests: the fields every spec needs (a test writes what it is about)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

OWNERS = {"launch": "a", "validation": "b", "rollback": "c", "cutover": "d"}
TARGETS = {"rto_minutes": 5, "rpo_minutes": 5, "p95_ms": 100, "error_rate": 0.01}
TAGS = {"cost_center": "test", "owner": "a"}


def wave_spec(
    project_root: Path,
    wave: str,
    *,
    sites: dict[str, Any],
    datasets: Iterable[dict[str, Any]] = (),
    workloads: Iterable[dict[str, Any]] = (),
    state: Path | None = None,
    golden_images: Path | bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """A spec dict for wave `wave` (order 1, the repo's pricing and golden images); `fields` override."""
    include = project_root / "include"
    data: dict[str, Any] = {
        "wave": wave,
        "order": 1,
        "window": "0 2 * * 6",
        "owners": dict(OWNERS),
        "targets": dict(TARGETS),
        "budget": {"egress_usd": 1, "pricing": str(include / "pricing" / "default.yaml")},
        "tags": dict(TAGS),
        "sites": sites,
        "datasets": list(datasets),
    }
    if state is not None:
        data["state"] = str(state)
    if golden_images:
        data["golden_images"] = str(include / "golden_images" if golden_images is True else golden_images)
    if workloads:
        data["workloads"] = list(workloads)
    data.update(fields)
    return data


def write_spec(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as YAML to `path`; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path
