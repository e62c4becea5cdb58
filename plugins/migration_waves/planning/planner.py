"""Score inventory workloads and propose migration waves.

Rules of the proposal (each workload's placement carries the rule that put it there):

1. Dependencies move together: workloads linked by ``depends_on`` (either direction) form a
   connected group, and a group is placed as a whole.
2. The pilot takes only low-risk, high-elasticity groups: dev environments, batch/training that
   checkpoints (pause and resume), inference that is not critical and rolls back easily.
3. High data gravity or sensitive data (pii, regulated) stays on-prem until earlier waves have
   proven the pipelines: such groups never enter the pilot and start a wave of their own after
   every other group has moved.
4. At most ``max_per_wave`` workloads per wave (a group larger than the cap gets a wave of its own
   and a warning; splitting it would break rule 1).
"""

from __future__ import annotations

import math
import os
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from migration_waves.planning.inventory import Inventory, InventoryWorkload

LATENCY = {"low": 0.0, "medium": 1 / 3, "high": 2 / 3, "critical": 1.0}
COMPLIANCE = {"none": 0.0, "internal": 0.25, "pii": 2 / 3, "regulated": 1.0}
CHANGE_RISK = {"high": 0.0, "medium": 0.5, "low": 1.0}
GRAVITY = {"low": 0.0, "medium": 0.5, "high": 1.0}
#: Weights of the dimensions in the risk score; data and compliance dominate what goes wrong.
WEIGHTS = {
    "gpu_need": 0.10,
    "data_size": 0.25,
    "latency_sensitivity": 0.20,
    "compliance_scope": 0.25,
    "change_tolerance": 0.20,
}
HEATMAP_COLUMNS = (*WEIGHTS, "data_gravity", "risk")


def gpu_score(gpus: int) -> float:
    """0 GPUs -> 0, 1 -> 0.17, 8 -> 0.53, 64 or more -> 1 (log scale: capacity gets scarce fast)."""
    return min(1.0, math.log2(gpus + 1) / math.log2(65))


def size_score(nbytes: int) -> float:
    """1 GB or less -> 0, 1 PB or more -> 1, log scale between."""
    if nbytes <= 10**9:
        return 0.0
    return min(1.0, (math.log10(nbytes) - 9) / 6)


class WorkloadScore(BaseModel):
    """Heatmap row of one workload."""

    workload: str
    kind: str
    owner: str
    scores: dict[str, float] = Field(description="dimension -> 0 (easy to move) .. 1 (hard)")
    risk: float
    elastic: bool
    elastic_reason: str
    held: bool = Field(description="stays on-prem until earlier waves prove the pipelines")
    held_reason: str = ""
    pilot_ok: bool
    data_bytes: int


def score_workload(wl: InventoryWorkload, *, pilot_max_risk: float = 0.45) -> WorkloadScore:
    """The five dimension scores, data gravity, the weighted risk and the pilot rules of one workload."""
    scores = {
        "gpu_need": gpu_score(wl.gpu_need),
        "data_size": size_score(wl.data_size),
        "latency_sensitivity": LATENCY[wl.latency_sensitivity],
        "compliance_scope": COMPLIANCE[wl.compliance_scope],
        "change_tolerance": CHANGE_RISK[wl.change_tolerance],
    }
    risk = sum(WEIGHTS[k] * v for k, v in scores.items())
    scores["data_gravity"] = GRAVITY[wl.data_gravity]
    scores = {k: round(v, 3) for k, v in scores.items()}
    if wl.kind == "dev":
        elastic, why = True, "dev environment"
    elif wl.kind in ("training", "batch") and wl.checkpointed:
        elastic, why = True, f"{wl.kind} that checkpoints (pause and resume)"
    elif wl.kind == "inference" and wl.rollback == "easy" and not wl.critical:
        elastic, why = True, "non-critical inference with easy rollback"
    else:
        elastic = False
        why = {
            "training": "training without checkpoints cannot pause",
            "batch": "batch without checkpoints restarts from scratch",
            "inference": "critical or hard-to-roll-back inference",
            "ingestion": "ingestion pipelines feed other systems",
        }.get(wl.kind, "not elastic")
    held_reasons = []
    if wl.data_gravity == "high":
        held_reasons.append("high data gravity")
    if wl.compliance_scope in ("pii", "regulated"):
        held_reasons.append(f"sensitive data ({wl.compliance_scope})")
    pilot_ok = elastic and not held_reasons and not wl.critical and risk <= pilot_max_risk
    return WorkloadScore(
        workload=wl.name,
        kind=wl.kind,
        owner=wl.owner,
        scores=scores,
        risk=round(risk, 3),
        elastic=elastic,
        elastic_reason=why,
        held=bool(held_reasons),
        held_reason=", ".join(held_reasons),
        pilot_ok=pilot_ok,
        data_bytes=wl.data_size,
    )


def dependency_groups(workloads: list[InventoryWorkload]) -> list[list[str]]:
    """Connected components of depends_on (undirected), each sorted, in inventory order."""
    parent = {wl.name: wl.name for wl in workloads}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for wl in workloads:
        for dep in wl.depends_on:
            a, b = find(wl.name), find(dep)
            if a != b:
                parent[b] = a
    groups: dict[str, list[str]] = {}
    for wl in workloads:
        groups.setdefault(find(wl.name), []).append(wl.name)
    return [sorted(g) for g in groups.values()]


class Placement(BaseModel):
    workload: str
    wave: str
    reason: str


class ProposedWave(BaseModel):
    name: str
    order: int
    workloads: list[str]
    groups: list[list[str]]
    max_risk: float
    data_bytes: int


class WavePlan(BaseModel):
    """The proposal: waves in order, why each workload is where it is, and warnings."""

    inventory: str | None
    max_per_wave: int
    scores: list[WorkloadScore]
    waves: list[ProposedWave]
    placements: list[Placement]
    warnings: list[str] = Field(default_factory=list)

    def wave_of(self, workload: str) -> str:
        return next(p.wave for p in self.placements if p.workload == workload)


def propose_waves(
    inv: Inventory,
    *,
    max_per_wave: int = 4,
    pilot_size: int = 3,
    pilot_max_risk: float = 0.45,
    prefix: str = "",
) -> WavePlan:
    """Assign every workload to a wave by the module's rules."""
    if max_per_wave < 1 or pilot_size < 1:
        raise ValueError("max_per_wave and pilot_size must be at least 1")
    scores = {
        s.workload: s for s in (score_workload(w, pilot_max_risk=pilot_max_risk) for w in inv.workloads)
    }

    class Group:
        def __init__(self, names: list[str]) -> None:
            self.names = names
            self.risk = max(scores[n].risk for n in names)
            self.held = any(scores[n].held for n in names)
            self.pilot_ok = all(scores[n].pilot_ok for n in names)

    groups = [Group(g) for g in dependency_groups(inv.workloads)]
    warnings: list[str] = []
    waves: list[list[Group]] = []
    reasons: dict[str, str] = {}

    # Rule 2: the pilot, lowest risk first, up to pilot_size workloads.
    pilot: list[Group] = []
    pilot_cap = min(pilot_size, max_per_wave)
    for g in sorted((g for g in groups if g.pilot_ok), key=lambda g: (g.risk, g.names)):
        if sum(len(p.names) for p in pilot) + len(g.names) <= pilot_cap:
            pilot.append(g)
            for n in g.names:
                reasons[n] = f"pilot: {scores[n].elastic_reason}, risk {scores[n].risk:.2f}"
    if not pilot:
        warnings.append(
            "no workload qualifies for the pilot (elastic, not critical, not held, risk "
            f"<= {pilot_max_risk}); the first wave takes the lowest-risk group instead"
        )
    rest = sorted((g for g in groups if g not in pilot), key=lambda g: (g.held, g.risk, g.names))
    if not pilot and rest:
        first = rest.pop(0)
        pilot = [first]
        for n in first.names:
            reasons[n] = f"first wave (no pilot candidate): lowest risk {scores[n].risk:.2f}"
    waves.append(pilot)

    # Rules 3 and 4: fill later waves in risk order; held groups start a wave of their own.
    current: list[Group] = []
    for g in rest:
        size = sum(len(c.names) for c in current)
        mixes_hold = g.held and any(not c.held for c in current)
        if current and (size + len(g.names) > max_per_wave or mixes_hold):
            waves.append(current)
            current = []
        current.append(g)
        if len(g.names) > max_per_wave:
            warnings.append(
                f"dependency group {', '.join(g.names)} has {len(g.names)} workloads, more than "
                f"max_per_wave {max_per_wave}; it moves as one wave (split its depends_on to avoid this)"
            )
        for n in g.names:
            s = scores[n]
            why = (
                f"held on-prem until earlier waves prove the pipelines ({s.held_reason})"
                if s.held
                else f"by risk {s.risk:.2f}" + ("" if s.elastic else f" ({s.elastic_reason})")
            )
            if len(g.names) > 1:
                why += f"; moves with {', '.join(x for x in g.names if x != n)}"
            reasons[n] = why
    if current:
        waves.append(current)
    for g in pilot:
        if len(g.names) > 1:
            for n in g.names:
                reasons[n] += f"; moves with {', '.join(x for x in g.names if x != n)}"

    proposed: list[ProposedWave] = []
    placements: list[Placement] = []
    for i, wave_groups in enumerate(w for w in waves if w):
        name = f"{prefix}pilot" if i == 0 else f"{prefix}wave-{i + 1}"
        members = [n for g in wave_groups for n in g.names]
        proposed.append(
            ProposedWave(
                name=name,
                order=i + 1,
                workloads=members,
                groups=[g.names for g in wave_groups],
                max_risk=max(scores[n].risk for n in members),
                data_bytes=sum(scores[n].data_bytes for n in members),
            )
        )
        placements.extend(Placement(workload=n, wave=name, reason=reasons[n]) for n in members)
    order = {w.name: i for i, w in enumerate(inv.workloads)}
    return WavePlan(
        inventory=inv.source,
        max_per_wave=max_per_wave,
        scores=sorted(scores.values(), key=lambda s: order[s.workload]),
        waves=proposed,
        placements=placements,
        warnings=warnings,
    )


# -- draft wave specs ---------------------------------------------------------------------------


def _rel(inv: Inventory, value: str, out_dir: Path) -> str:
    """An inventory-relative path rewritten relative to the draft's folder (URLs pass through)."""
    resolved = inv.resolve(value)
    if "://" in resolved:
        return resolved
    out = out_dir.resolve()
    if os.path.commonpath([resolved, out]) == os.path.sep:  # different trees: keep it absolute
        return resolved
    return os.path.relpath(resolved, out)


def draft_wave_specs(inv: Inventory, plan: WavePlan, out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Wave-spec dicts (by wave name) for the plan, with paths relative to out_dir.

    A workload whose row lacks what a wave spec needs (golden image; endpoints for inference;
    command and checkpoint for training/batch) moves its datasets only and is listed under
    ``x_todo`` in plan.json, not silently dropped.
    """
    from migration_waves.cost.egress import egress_forecast
    from migration_waves.cost.pricing import load_pricing
    from migration_waves.spec.models import WaveSpec

    out = Path(out_dir)
    d = inv.defaults
    pricing_path = inv.resolve(d.pricing)
    pricing = load_pricing(pricing_path)
    specs: dict[str, dict[str, Any]] = {}
    previous: str | None = None
    for wave in plan.waves:
        workloads = [inv.workload(n) for n in wave.workloads]
        cost_centers = sorted({wl.tags["cost_center"] for wl in workloads})
        sites = {
            name: site.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
            | {"kind": site.kind, "storage": _rel(inv, site.storage, out)}
            for name, site in inv.sites.items()
        }
        datasets: list[dict[str, Any]] = []
        sizes: dict[str, int] = {}
        spec_workloads: list[dict[str, Any]] = []
        for wl in workloads:
            tags = {"owner": wl.tags["owner"], "cost_center": wl.tags["cost_center"], "workload": wl.name}
            items = wl.datasets or []
            if not items:  # a row without a breakdown moves one dataset of its whole size
                from migration_waves.planning.inventory import InventoryDataset

                items = [
                    InventoryDataset.model_validate({"name": f"{wl.name}-data", "size": f"{wl.data_size} B"})
                ]
            for ds in items:
                path = ds.path or f"{ds.name}/"
                entry: dict[str, Any] = {
                    "name": ds.name,
                    "class": ds.class_.value,
                    "source": f"{wl.source_site}:{path}",
                    "target": f"{wl.target_site}:{path}",
                    "tags": {**tags, **ds.tags},
                }
                if ds.class_.value == "checkpoint":
                    entry["keep_hot"] = 3
                if ds.class_.value == "mutable":
                    entry["delete"] = True
                datasets.append(entry)
                sizes[ds.name] = ds.size
            if wl.golden_image and wl.kind == "inference" and wl.endpoints:
                spec_workloads.append(
                    {
                        "name": wl.name,
                        "kind": "inference",
                        "golden_image": wl.golden_image,
                        "baseline": str(wl.endpoints.baseline).rstrip("/"),
                        "candidate": str(wl.endpoints.candidate).rstrip("/"),
                        "router": {"kind": "local", "admin": str(wl.endpoints.router_admin).rstrip("/")},
                        "payloads": _rel(inv, wl.endpoints.payloads, out),
                        "tags": tags,
                    }
                )
            elif wl.golden_image and wl.kind in ("training", "batch") and wl.command and wl.checkpoint:
                spec_workloads.append(
                    {
                        "name": wl.name,
                        "kind": "training",
                        "golden_image": wl.golden_image,
                        "command": wl.command,
                        "checkpoint": wl.checkpoint,
                        "tags": tags,
                    }
                )
        spec: dict[str, Any] = {
            "wave": wave.name,
            "description": f"Draft from the inventory: {', '.join(wave.workloads)}. Review before use.",
            "order": wave.order,
            "after": [previous] if previous else [],
            "window": d.window,
            "owners": d.owners.model_dump(),
            "targets": d.targets.model_dump(),
            "budget": {"egress_usd": 0, "pricing": _rel(inv, d.pricing, out)},
            "tags": {
                **d.tags,
                "cost_center": cost_centers[0]
                if len(cost_centers) == 1
                else d.tags.get("cost_center", "shared"),
                "wave": wave.name,
            },
            "golden_images": _rel(inv, d.golden_images, out),
            "sites": sites,
            "datasets": datasets,
            "workloads": spec_workloads,
        }
        if d.state:
            spec["state"] = _rel(inv, d.state, out)
        # Budget: the egress forecast of the wave's data times the margin, rounded up to dollars.
        model = WaveSpec.model_validate(spec)
        forecast = egress_forecast(model, sizes, pricing)
        budget = (forecast.forecast_usd * Decimal(str(d.budget_margin))).to_integral_value(ROUND_CEILING)
        spec["budget"]["egress_usd"] = int(max(budget, Decimal(1)))
        WaveSpec.model_validate(spec)  # a draft that does not validate is a planner bug: fail here
        specs[wave.name] = spec
        previous = wave.name
    return specs


def incomplete_workloads(inv: Inventory, specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Workloads whose drafts carry datasets only, and what their rows lack."""
    drafted = {w["name"] for s in specs.values() for w in s["workloads"]}
    todo: dict[str, str] = {}
    for wl in inv.workloads:
        if wl.name in drafted:
            continue
        need = ["golden_image"] if not wl.golden_image else []
        if wl.kind == "inference" and not wl.endpoints:
            need.append("endpoints")
        if wl.kind in ("training", "batch") and not (wl.command and wl.checkpoint):
            need.append("command and checkpoint")
        if wl.kind in ("dev", "ingestion"):
            need = [f"no wave-spec workload kind for {wl.kind}; its datasets move, the service is manual"]
        todo[wl.name] = "; ".join(need) or "unsupported"
    return todo
