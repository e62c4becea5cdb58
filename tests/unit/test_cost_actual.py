"""Moved bytes priced per flow after the move (cost/actual.json), and the report's cost table."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit


def _spec(project_root: Path) -> Any:
    from migration_waves.spec.loader import load_wave

    return load_wave(project_root / "include" / "waves" / "pilot.yaml")


def _env(data: dict[str, Any]) -> dict[str, Any]:
    return {"data": data}


def _records(spec: Any, pricing: Any) -> dict[str, dict[str, Any]]:
    from migration_waves.cost.egress import egress_forecast

    planned = {"digits-corpus": 4 * 10**9, "features": 10**9, "serving-logs": 0}
    forecast = egress_forecast(spec, planned, pricing).model_dump(mode="json")
    return {
        "preflight": {"egress": _env(forecast)},
        "data": {
            "digits-corpus-seed": _env({"bytes_copied": 4 * 10**9}),
            "digits-corpus-verify": _env({"bytes_copied": 999, "files_verified": 3}),  # not a copy
            "features-seed": _env({"bytes_copied": 10**9}),
            "features-sync": _env({"bytes_copied": 250 * 10**6}),
            "features-final": _env({"bytes_copied": 50 * 10**6}),
            "serving-logs-seed": _env({"bytes_copied": 0}),
        },
    }


def test_moved_bytes_are_summed_per_dataset_and_priced_per_flow(project_root: Path) -> None:
    from migration_waves.cost.actual import actual_cost
    from migration_waves.cost.pricing import load_pricing

    spec = _spec(project_root)
    pricing = load_pricing(project_root / "include" / "pricing" / "default.yaml")
    result = actual_cost(spec, _records(spec, pricing), pricing=pricing, run_id="r1")

    assert result.bytes_by_dataset == {
        "digits-corpus": 4 * 10**9,
        "features": 1_300_000_000,
        "serving-logs": 0,
    }
    assert result.by_kind["features"] == {"seed": 10**9, "sync": 250 * 10**6, "final": 50 * 10**6}
    (flow,) = result.flows  # every pilot dataset goes onprem -> cloud
    assert flow.flow == "onprem->cloud" and flow.price_entries == ["onprem_uplink", "onprem_to_cloud"]
    # 5.3 GB at the uplink's $0.02/GB (+ free ingress); the forecast planned 5.0 GB.
    assert flow.bytes == 5_300_000_000 and flow.usd == Decimal("0.106")
    assert flow.forecast_bytes == 5 * 10**9 and flow.forecast_usd == Decimal("0.1")
    assert flow.delta_usd == Decimal("0.006")
    assert result.usd == Decimal("0.106") and result.within_budget is True
    assert "onprem_uplink" in result.sources and result.error is None
    assert "passed" not in result.model_dump()  # never a gate


def test_cloud_to_onprem_tiers_apply_to_the_flow_total(project_root: Path) -> None:
    from migration_waves.cost.actual import actual_cost
    from migration_waves.cost.pricing import load_pricing

    spec = _spec(project_root)
    sites = {n: s.model_copy(update={"kind": {"onprem": "cloud", "cloud": "onprem"}[s.kind]})
             for n, s in spec.sites.items()}  # fmt: skip
    back = spec.model_copy(update={"sites": sites})  # the same wave moving back on-prem
    pricing = load_pricing(project_root / "include" / "pricing" / "default.yaml")
    tb = 1024 * 10**9
    records = {"data": {"digits-corpus-seed": _env({"bytes_copied": 8 * tb}),
                        "features-seed": _env({"bytes_copied": 4 * tb})}}  # fmt: skip
    result = actual_cost(back, records, pricing=pricing)
    (flow,) = [f for f in result.flows if f.bytes]
    # 12 TB: the first 10 TB (10,240 GB) at $0.09, the next 2 TB at $0.085.
    assert flow.flow == "cloud->onprem"
    assert flow.usd == Decimal(10240) * Decimal("0.09") + Decimal(2048) * Decimal("0.085")
    assert result.within_budget is False and flow.forecast_usd is None


def test_missing_price_is_recorded_not_raised(project_root: Path, tmp_path: Path) -> None:
    from migration_waves.cost.actual import actual_cost

    spec = _spec(project_root)
    bad = tmp_path / "pricing.yaml"
    bad.write_text(
        "currency: USD\negress:\n  cloud_to_cloud: {usd_per_gb: 0.02, source: x, date: 2026-11-01}\n"
    )
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"pricing": str(bad)})})
    result = actual_cost(spec, {"data": {"features-seed": _env({"bytes_copied": 10})}})
    assert result.usd is None and result.bytes == 10
    assert result.error and "onprem_uplink" in result.error and str(bad) in result.error


def test_report_shows_forecast_vs_actual_per_flow(project_root: Path, tmp_path: Path) -> None:
    from migration_waves.cost.actual import actual_cost
    from migration_waves.cost.pricing import load_pricing
    from migration_waves.evidence.report import build_evidence_pack
    from migration_waves.evidence.store import EvidenceStore

    spec = _spec(project_root)
    pricing = load_pricing(project_root / "include" / "pricing" / "default.yaml")
    records = _records(spec, pricing)
    store = EvidenceStore(str(tmp_path), "pilot", "manual__2026-12-01T00:00:00+00:00")
    store.write("preflight", "egress", records["preflight"]["egress"]["data"])
    for name, env in records["data"].items():
        store.write("data", name, env["data"])
    store.write("cost", "actual", actual_cost(spec, store.records(), pricing=pricing))
    assert Path(store.record_path("cost", "actual")).name == "actual.json"

    pack = build_evidence_pack(store, spec, outcome={"status": "success"})
    html = Path(pack.report_html).read_text()
    assert 'id="cost-flows"' in html and "onprem-&gt;cloud" in html
    assert "$0.11" in html and "5.30 GB" in html and "5.00 GB" in html  # actual vs forecast
    evidence = json.loads(Path(pack.evidence_json).read_text())
    assert evidence["cost"]["actual"]["bytes"] == 5_300_000_000
    assert evidence["records"]["cost"]["actual"]["data"]["flows"][0]["usd"] == "0.106"
