"""Evidence pack: report.html, evidence.json and runbook.md from full, rolled-back and empty runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from migration_waves.evidence.report import build_evidence_pack, resolve_outcome
from migration_waves.evidence.store import EvidenceStore
from migration_waves.spec.loader import load_wave
from migration_waves.spec.models import WaveSpec

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "manual__2026-12-03T10:00:00+00:00"


@pytest.fixture(scope="module")
def pilot() -> WaveSpec:
    return load_wave(REPO / "include/waves/pilot.yaml")


def latency_summary(rng: np.random.Generator, median_ms: float, n: int, errors: int) -> dict[str, float]:
    """Percentiles of n log-normal latencies, as the canary judge summarises its samples."""
    samples = rng.lognormal(np.log(median_ms), 0.35, n)
    p50, p95, p99 = np.percentile(samples, [50, 95, 99])
    return {"count": n, "p50": float(p50), "p95": float(p95), "p99": float(p99), "error_rate": errors / n}


def fill_store(store: EvidenceStore, spec: WaveSpec, *, slow_candidate_from: int | None = None) -> None:
    """Records of a wave run; with slow_candidate_from the canary fails at that step and rolls back."""
    rng = np.random.default_rng(7)
    store.write(
        "preflight",
        "egress",
        {
            "forecast_usd": "0.0612",
            "budget_usd": "50",
            "bytes": 3_060_000_000,
            "passed": True,
            "reasons": ["wave pilot: egress forecast within budget"],
        },
    )
    for i, ds in enumerate(spec.datasets):
        nbytes = (i + 1) * 612_000_000
        store.write(
            "data",
            f"{ds.name}-seed",
            {
                "files_copied": 10 * (i + 1),
                "bytes_copied": nbytes,
                "files_skipped": i,
                "passed": True,
                "reasons": [],
            },
        )
        store.write(
            "data",
            f"{ds.name}-verify",
            {"files_verified": 10 * (i + 1) + i, "bytes_verified": nbytes, "passed": True, "missing": []},
        )
        docs = Path(store.run_dir) / "data" / "docs" / ds.name / "index.html"
        store.write(
            "data",
            f"{ds.name}-validate",
            {
                "passed": True,
                "docs_index": str(docs),
                "statistics": {"evaluated_expectations": 6, "successful_expectations": 6},
            },
        )
    for image, gflops in (("inference-cpu-dev", 31.7), ("training-cpu-dev", 3.2)):
        store.write(
            "gpu",
            f"{image}-conformance",
            {
                "passed": True,
                "checks": [
                    {
                        "name": "package numpy",
                        "expected": ">=2.0",
                        "actual": "2.4.6",
                        "passed": True,
                        "severity": "error",
                        "message": "numpy 2.4.6 meets >=2.0",
                    }
                ],
            },
        )
        store.write(
            "gpu",
            f"{image}-benchmark",
            {"gflops": gflops, "baseline_gflops": 5.0, "ratio": gflops / 5, "tolerance": 0.8, "passed": True},
        )
    store.write(
        "resilience",
        "digits-trainer-drill",
        {
            "time_to_recover_s": 4.2,
            "steps_lost": 3,
            "passed": True,
            "reasons": ["recovered in 4.2 s, RTO 600 s"],
        },
    )
    store.write("baseline", "digits-classifier", latency_summary(rng, 20, 300, 0))
    for pct in (5, 25, 50, 100):
        slow = slow_candidate_from is not None and pct >= slow_candidate_from
        base = latency_summary(rng, 20, 300, 0)
        cand = latency_summary(rng, 45 if slow else 21, 300, 6 if slow else 0)
        ratio = cand["p95"] / base["p95"]
        verdict = "rollback" if slow else "promote"
        store.write(
            "canary",
            f"digits-classifier-step-{pct}",
            {
                "step_pct": pct,
                "outcome": verdict,
                "baseline": base,
                "candidate": cand,
                "p95_ratio": ratio,
                "passed": not slow,
                "reasons": [f"step {pct}%: p95 ratio {ratio:.2f} (max 1.5)"],
            },
        )
        if slow:
            store.write(
                "rollback",
                "restore",
                {
                    "reason": f"canary step {pct}% failed: p95 ratio {ratio:.2f} > 1.5",
                    "workloads": [
                        {
                            "workload": "digits-classifier",
                            "before": f"{pct}% cloud",
                            "after": "0% cloud",
                            "seconds": 0.41,
                        }
                    ],
                },
            )
            return
    store.write(
        "acceptance",
        "evaluate",
        {
            "passed": True,
            "checks": [
                {"name": "p95_ms", "target": 250, "measured": 31.2, "passed": True},
                {"name": "error_rate", "target": 0.01, "measured": 0.0, "passed": True},
            ],
        },
    )


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_full_run_report(tmp_path: Path, pilot: WaveSpec) -> None:
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    fill_store(store, pilot)
    pack = build_evidence_pack(store, pilot, outcome={"status": "success"})
    assert pack.outcome == "SUCCESS" and pack.missing == [] and pack.section_errors == []
    html = Path(pack.report_html).read_text()
    text = text_of(html)
    assert "Wave pilot: SUCCESS" in text and RUN_ID in text
    for owner in ("team-ml-platform", "team-ml-quality", "team-sre"):
        assert owner in text
    # self-contained: no external scripts, styles or images
    assert not re.search(r"""(src|href)=["']https?://""", html) and "<link" not in html
    assert html.count("<svg") >= 2  # latency chart + benchmark bar
    assert "target p95 250 ms (above the chart)" in html  # latencies ~40 ms: chart scaled to them
    assert 'href="data/docs/digits-corpus/index.html"' in html  # Data Docs link, relative to the run folder
    assert "6/6 expectations" in text and "31.7 GFLOP/s" in text and "4.2 s" in text
    # actual bytes moved priced with the wave's pricing file: sum(1..5) x 0.612 GB x $0.02
    assert "9.18 GB" in text and "$0.18" in text
    assert "freeze writes" in text and "<table>" in html.split('id="runbook"')[1]  # runbook rendered as HTML
    evidence = json.loads(Path(pack.evidence_json).read_text())
    assert evidence["outcome"]["label"] == "SUCCESS"
    assert evidence["records"]["canary"]["digits-classifier-step-100"]["data"]["step_pct"] == 100
    assert evidence["spec"]["owners"]["cutover"] == "team-sre"
    assert evidence["cost"]["actual"]["usd"] == "0.18360"
    assert Path(pack.runbook_md).read_text().startswith("# Runbook: wave pilot")
    assert len(pack.docs) == len(pilot.datasets)


def test_rolled_back_run_report(tmp_path: Path, pilot: WaveSpec) -> None:
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    fill_store(store, pilot, slow_candidate_from=50)
    pack = build_evidence_pack(store, pilot, outcome={})  # derived from the records
    assert pack.outcome == "ROLLED BACK"
    assert pack.reasons[0].startswith("rolled back: canary step 50% failed: p95 ratio")
    assert "canary/digits-classifier-step-100" in pack.missing and "acceptance/evaluate" in pack.missing
    text = text_of(Path(pack.report_html).read_text())
    assert "Wave pilot: ROLLED BACK" in text and "0% cloud" in text
    assert "Acceptance was not evaluated in this run." in text


def test_almost_empty_store_still_renders(tmp_path: Path, pilot: WaveSpec) -> None:
    store = EvidenceStore(f"file://{tmp_path}", "pilot", RUN_ID)
    store.write(
        "preflight",
        "egress",
        {
            "forecast_usd": "71.20",
            "budget_usd": "50",
            "bytes": 3_560_000_000_000,
            "passed": False,
            "reasons": ["wave pilot: egress forecast $71.20 exceeds the budget $50.00"],
        },
    )
    store.write("gpu", "odd-shape", ["not", "a", "dict"])  # tolerated, not understood
    pack = build_evidence_pack(
        store, pilot, outcome={"state": "failed", "failed_tasks": ["preflight.egress_gate"]}
    )
    assert pack.outcome == "FAILED"
    assert pack.reasons == [
        "task preflight.egress_gate failed",
        "preflight/egress: wave pilot: egress forecast $71.20 exceeds the budget $50.00",
    ]
    assert pack.section_errors == []
    text = text_of(Path(pack.report_html).read_text())
    assert "Wave pilot: FAILED" in text and "task preflight.egress_gate failed" in text
    assert "exceeds the budget $50.00" in text
    assert text.count("not run") >= 20  # every missing task is listed as not run
    assert "No canary steps recorded." in text and "No rollback in this run." in text


def test_records_of_unexpected_shape_do_not_crash(tmp_path: Path, pilot: WaveSpec) -> None:
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    store.write(
        "canary", "digits-classifier-step-5", {"step_pct": "five", "baseline": "n/a", "p95_ratio": None}
    )
    store.write("gpu", "x-benchmark", {"gflops": "fast", "ratio": [1]})
    store.write("rollback", "restore", {"workloads": "all", "seconds": "soon"})
    store.write("acceptance", "evaluate", {"checks": {"p95": 1}})
    (Path(store.run_dir) / "data").mkdir(parents=True, exist_ok=True)
    (Path(store.run_dir) / "data" / "features-seed.json").write_text("{truncated")
    pack = build_evidence_pack(store, pilot, outcome={"status": "failed", "reason": "operator stopped it"})
    html = Path(pack.report_html).read_text()
    assert "operator stopped it" in html and "Wave pilot: FAILED" in text_of(html)
    assert "not valid JSON" in html  # the broken record is shown, not hidden


def test_resolve_outcome_without_status() -> None:
    assert resolve_outcome({}, {}) == ("FAILED", ["the run wrote no evidence records"])
    ok = {"data": {"x": {"passed": True, "data": {}}}}
    assert resolve_outcome(None, ok)[0] == "SUCCESS"
    bad = {"data": {"x-verify": {"passed": False, "data": {"reasons": ["3 files missing"]}}}}
    assert resolve_outcome({}, bad) == ("FAILED", ["data/x-verify: 3 files missing"])
    assert resolve_outcome({"status": "rolled_back"}, ok)[0] == "ROLLED BACK"


def test_operator_record_shapes(tmp_path: Path, pilot: WaveSpec) -> None:
    """Shapes the wave operators write: zero-padded steps, *_ms metrics, gate/abort records, GX nested."""
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    metrics = {
        "count": 300,
        "error_count": 0,
        "error_rate": 0.0,
        "p50_ms": 20.0,
        "p95_ms": 31.0,
        "p99_ms": 40.0,
    }
    slow = {**metrics, "p50_ms": 48.0, "p95_ms": 77.5, "p99_ms": 90.0, "error_rate": 0.02}
    store.write("data", "features-seed", {"files_copied": 4, "bytes_copied": 4_000_000_000, "passed": True})
    store.write("data", "features-final", {"files_copied": 1, "bytes_copied": 1_000_000_000, "passed": True})
    store.write(
        "data",
        "features-verify-final",
        {
            "files_verified": 5,
            "bytes_verified": 5_000_000_000,
            "size_mismatch": [],
            "passed": True,
            "docs_index": "/elsewhere/docs/index.html",
            "validation": {"passed": True, "statistics": {"evaluated": 7, "successful": 7}},
        },
    )
    store.write(
        "gpu",
        "training-cpu-dev-benchmark",
        {"gflops": 2.0, "baseline_gflops": 5.0, "ratio": 0.4, "threshold_gflops": 1.0, "passed": True},
    )
    store.write(
        "resilience",
        "digits-trainer-drill",
        {"recover_s": 2.5, "rto_s": 600, "steps_lost": 4, "passed": True, "reasons": []},
    )
    store.write(
        "canary",
        "digits-classifier-step-005",
        {
            "step_pct": 5,
            "outcome": "pass",
            "baseline": metrics,
            "candidate": metrics,
            "p95_ratio": 1.0,
            "verdict_passed": True,
            "passed": True,
        },
    )
    store.write(
        "canary", "digits-classifier-gate-005", {"step_pct": 5, "outcome": "pass", "decision": "continue"}
    )
    store.write(
        "canary",
        "digits-classifier-step-025",
        {
            "step_pct": 25,
            "outcome": "fail",
            "baseline": metrics,
            "candidate": slow,
            "p95_ratio": 2.5,
            "verdict_passed": False,
            "passed": True,
            "reasons": ["p95 ratio 2.50 above 1.5"],
        },
    )
    store.write(
        "canary", "digits-classifier-gate-025", {"step_pct": 25, "outcome": "fail", "decision": "rollback"}
    )
    store.write(
        "canary",
        "digits-classifier-abort-025",
        {
            "workload": "digits-classifier",
            "step_pct": 25,
            "rolled_back": True,
            "passed": False,
            "time_to_rollback_s": 0.31,
            "restore": {"before_pct": 25, "after_pct": 0, "changed": True},
            "reasons": ["workload digits-classifier: canary gate at 25% failed; traffic restored to on-prem"],
        },
    )
    outcome = {
        "status": "rolled_back",
        "failed_tasks": [],
        "rolled_back": ["digits-classifier-abort-025"],
        "reasons": ["workload digits-classifier: canary gate at 25% failed; traffic restored to on-prem"],
    }
    pack = build_evidence_pack(store, pilot, outcome=outcome)
    assert pack.outcome == "ROLLED BACK" and pack.section_errors == []
    assert "canary/digits-classifier-step-005" not in pack.missing  # step-5 expected, step-005 written
    assert "canary/digits-classifier-step-050" in pack.missing
    html = Path(pack.report_html).read_text()
    text = text_of(html)
    assert (
        "2.50" in text and "77.5 ms" in text and "2.50%" not in text and "2.00%" in text
    )  # *_ms metrics and error rate read
    assert "fail → rollback" in text and "traffic restored" in text
    assert "7/7 expectations" in text and 'href="file:///elsewhere/docs/index.html"' in html
    assert "5.00 GB" in text  # seed + final copy summed
    assert "2.5 s" in text and "25% cloud" in text and "0% cloud" in text and "0.3 s" in text
    assert "$0.10" in text  # 5 GB moved on-prem -> cloud at $0.02/GB


def test_skipped_run(tmp_path: Path, pilot: WaveSpec) -> None:
    store = EvidenceStore(str(tmp_path), "pilot", RUN_ID)
    pack = build_evidence_pack(store, pilot, outcome={"status": "skipped"})
    assert pack.outcome == "SKIPPED" and "already accepted" in pack.reasons[0]


def test_report_plots_replication_lag_against_the_rpo_and_cost_against_the_budget(tmp_path: Path) -> None:
    from migration_waves.evidence.report import build_evidence_pack
    from migration_waves.evidence.store import EvidenceStore
    from migration_waves.spec.loader import load_wave

    spec = load_wave(Path(__file__).resolve().parents[2] / "include" / "waves" / "pilot.yaml")
    store = EvidenceStore(str(tmp_path), spec.wave, "manual__lag")
    store.write("data", "features-seed", {"passed": True, "bytes_copied": 10, "lag_s": 12.5})
    store.write("data", "features-sync", {"passed": True, "bytes_copied": 5, "lag_s": 1200.0})  # > RPO 900 s
    store.write("preflight", "egress", {"passed": True, "forecast_usd": "0.40", "bytes": 10})
    pack = build_evidence_pack(store, spec, outcome={"status": "failed", "reasons": []})
    html = Path(pack.report_html).read_text()
    assert "Replication lag per copy pass" in html
    assert "features sync" in html and "RPO 900 s" in html
    assert 'fill="#c62828"' in html  # the sync over the RPO is drawn red
    assert "budget 50 USD" in html
