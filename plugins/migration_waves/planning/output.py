"""Write a plan: draft wave specs, plan.json, the heatmap page and image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from migration_waves.planning.inventory import load_inventory
from migration_waves.planning.planner import draft_wave_specs, incomplete_workloads, propose_waves

DRAFT_HEADER = (
    "# DRAFT wave spec proposed by `migration-waves plan` from {inventory}.\n"
    "# Review owners, targets, windows and budgets before moving it to include/waves/.\n"
)


def write_plan(
    inventory: str | Path,
    out_dir: str | Path,
    *,
    max_per_wave: int = 4,
    pilot_size: int = 3,
    prefix: str = "",
    png: bool = True,
) -> dict[str, Any]:
    """Plan an inventory into out_dir; return plan.json's content (with the files written)."""
    from migration_waves.planning.heatmap import heatmap_html, heatmap_png

    inv = load_inventory(inventory)
    plan = propose_waves(inv, max_per_wave=max_per_wave, pilot_size=pilot_size, prefix=prefix)
    out = Path(out_dir)
    waves_dir = out / "waves"
    waves_dir.mkdir(parents=True, exist_ok=True)
    for stale in waves_dir.glob("*.yaml"):  # a re-plan replaces the drafts, never mixes two plans
        stale.unlink()
    specs = draft_wave_specs(inv, plan, waves_dir)
    files: dict[str, Any] = {"waves": []}
    header = DRAFT_HEADER.format(inventory=inv.source)
    for name, spec in specs.items():
        path = waves_dir / f"{name}.yaml"
        path.write_text(header + yaml.safe_dump(spec, sort_keys=False, width=120), encoding="utf-8")
        files["waves"].append(str(path))
    html = out / "heatmap.html"
    html.write_text(heatmap_html(plan), encoding="utf-8")
    files["heatmap_html"] = str(html)
    if png:
        files["heatmap_png"] = str(heatmap_png(plan, out / "heatmap.png"))
    result = plan.model_dump(mode="json") | {
        "budgets_usd": {name: spec["budget"]["egress_usd"] for name, spec in specs.items()},
        "x_todo": incomplete_workloads(inv, specs),
        "files": files,
    }
    (out / "plan.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    result["files"]["plan_json"] = str(out / "plan.json")
    return result
