"""Wave proposal rules: pilot elasticity, held data, dependency groups, the cap; heatmap page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from migration_waves.planning.heatmap import heatmap_html
from migration_waves.planning.inventory import Inventory, load_inventory
from migration_waves.planning.planner import HEATMAP_COLUMNS, propose_waves, score_workload

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(REPO / "include" / "inventory" / "workloads.yaml")


def test_scores_order_the_estate(inv: Inventory) -> None:
    fraud = score_workload(inv.workload("fraud-scoring"))
    trainer = score_workload(inv.workload("digits-trainer"))
    assert fraud.risk > 0.7 > 0.1 > trainer.risk
    assert fraud.held and "high data gravity" in fraud.held_reason and "regulated" in fraud.held_reason
    assert trainer.elastic and trainer.pilot_ok
    assert set(fraud.scores) == set(HEATMAP_COLUMNS) - {"risk"}
    assert all(0 <= v <= 1 for v in fraud.scores.values())


@pytest.mark.parametrize("cap", [2, 3, 4, 6])
def test_rules_hold_for_any_cap(inv: Inventory, cap: int) -> None:
    plan = propose_waves(inv, max_per_wave=cap, pilot_size=3)
    wave_of = {p.workload: p.wave for p in plan.placements}
    assert set(wave_of) == {w.name for w in inv.workloads}  # every workload placed once
    scores = {s.workload: s for s in plan.scores}
    pilot = plan.waves[0]
    assert pilot.name == "pilot" and len(pilot.workloads) <= min(3, cap)
    assert all(scores[n].pilot_ok for n in pilot.workloads)  # only elastic, low-risk work
    for wl in inv.workloads:  # dependencies move together
        for dep in wl.depends_on:
            assert wave_of[wl.name] == wave_of[dep], (wl.name, dep)
    for wave in plan.waves:
        groups_fit = all(len(g) <= cap for g in wave.groups)
        assert len(wave.workloads) <= cap or (len(wave.groups) == 1 and not groups_fit)
    # held data waits: every group with a held member moves after every group without one
    held_orders = [w.order for w in plan.waves for g in w.groups if any(scores[n].held for n in g)]
    free_orders = [w.order for w in plan.waves for g in w.groups if not any(scores[n].held for n in g)]
    assert held_orders and min(held_orders) > 1
    assert min(held_orders) > max(free_orders)


def test_held_group_never_shares_a_wave_with_unheld(inv: Inventory) -> None:
    plan = propose_waves(inv, max_per_wave=10)
    scores = {s.workload: s for s in plan.scores}
    for wave in plan.waves[1:]:
        kinds = {any(scores[n].held for n in g) for g in wave.groups}
        assert len(kinds) == 1, wave


def test_oversized_group_warns_and_moves_whole(inv: Inventory) -> None:
    plan = propose_waves(inv, max_per_wave=1)
    assert any("more than max_per_wave 1" in w for w in plan.warnings)
    wave_of = {p.workload: p.wave for p in plan.placements}
    assert wave_of["digits-classifier"] == wave_of["digits-trainer"]
    # the 2-workload demo group cannot fit a pilot of 1, so the pilot is the next best elastic one
    assert plan.waves[0].workloads == ["ci-gpu-runners"]


def test_heatmap_page_is_self_contained(inv: Inventory) -> None:
    plan = propose_waves(inv)
    page = heatmap_html(plan)
    assert page.count("<rect ") == len(plan.scores) * len(HEATMAP_COLUMNS)
    assert "<script>" in page and "<script src" not in page and "<link" not in page
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page)) - {"http://www.w3.org/2000/svg"}
    assert not urls, urls  # no external asset
    assert "held on-prem until earlier waves prove the pipelines" in page
