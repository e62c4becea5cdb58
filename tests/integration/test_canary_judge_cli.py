"""`migration-waves canary judge` as a subprocess, and Prometheus rules against a loopback server.

The Prometheus side is a small real HTTP server on 127.0.0.1 that answers `GET /api/v1/query`
with the API's JSON shapes (vector results, errors) for selectors like `name{label="v"}` and
`sum(name{...})` over series the test sets; a real Prometheus is not installable here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from migration_waves.canary.config import JudgeConfig, MetricRule, PrometheusQuery
from migration_waves.canary.load import Sample, write_samples
from migration_waves.canary.prometheus import PrometheusError, instant_query
from migration_waves.canary.rules import judge

pytestmark = pytest.mark.integration

SELECTOR = re.compile(r"^\s*(?:(sum)\()?\s*([a-zA-Z_:][\w:]*)\s*(?:\{([^}]*)\})?\s*\)?\s*$")


class PromState:
    def __init__(self) -> None:
        self.series: list[tuple[str, dict[str, str], float]] = []
        self.queries: list[str] = []


def _evaluate(state: PromState, query: str) -> tuple[int, dict[str, Any]]:
    m = SELECTOR.match(query)
    if not m:
        return 400, {"status": "error", "errorType": "bad_data", "error": f"parse error in {query!r}"}
    agg, name, matchers = m.groups()
    want = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', matchers or ""))
    hits = [(labels, v) for n, labels, v in state.series if n == name and want.items() <= labels.items()]
    if agg and hits:
        result = [{"metric": {}, "value": [1.0, str(sum(v for _, v in hits))]}]
    else:
        result = [{"metric": {"__name__": name, **labels}, "value": [1.0, str(v)]} for labels, v in hits]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
def prom() -> Iterator[tuple[str, PromState]]:
    state = PromState()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != "/api/v1/query":
                self.send_error(404)
                return
            query = parse_qs(url.query).get("query", [""])[0]
            state.queries.append(query)
            code, body = _evaluate(state, query)
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def draw(n: int, seed: int, *, scale: float = 1.0, error_rate: float = 0.0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    lat = 40.0 * scale * rng.lognormal(0.0, 0.3, size=n)
    err = rng.random(n) < error_rate
    return [
        Sample(latency_ms=float(v), status=500 if e else 200, ok=not e) for v, e in zip(lat, err, strict=True)
    ]


def test_instant_query_shapes_and_errors(prom: tuple[str, PromState]) -> None:
    url, state = prom
    state.series = [
        ("gpu_util", {"side": "cloud", "gpu": "0"}, 0.5),
        ("gpu_util", {"side": "cloud", "gpu": "1"}, 0.7),
    ]
    assert instant_query(url, 'sum(gpu_util{side="cloud"})') == pytest.approx(1.2)
    assert instant_query(url, 'gpu_util{side="onprem"}') is None  # no series: missing data
    with pytest.raises(PrometheusError, match="2 series"):
        instant_query(url, 'gpu_util{side="cloud"}')
    with pytest.raises(PrometheusError, match="bad_data"):
        instant_query(url, "rate(")
    with pytest.raises(PrometheusError, match="unreachable"):
        instant_query("http://127.0.0.1:9", "up", timeout_s=1)


def test_prometheus_rule_pass_fail_and_missing(prom: tuple[str, PromState]) -> None:
    url, state = prom
    rule = MetricRule(
        metric="prometheus", tolerance=1.2,
        prometheus=PrometheusQuery(url=url, query='sum(queue_depth{backend="{side}"})'),
    )  # fmt: skip
    cfg = JudgeConfig(rules=[rule], min_samples=5)
    base, cand = draw(50, 1), draw(50, 2)
    state.series = [("queue_depth", {"backend": "dc"}, 10.0), ("queue_depth", {"backend": "gcp"}, 11.0)]
    ok = judge(base, cand, cfg, names=("dc", "gcp"))
    assert ok.outcome == "pass" and ok.metrics[0].estimate == pytest.approx(1.1)
    assert 'sum(queue_depth{backend="gcp"})' in state.queries
    state.series = [("queue_depth", {"backend": "dc"}, 10.0), ("queue_depth", {"backend": "gcp"}, 15.0)]
    assert judge(base, cand, cfg, names=("dc", "gcp")).outcome == "fail"
    state.series = [("queue_depth", {"backend": "dc"}, 10.0)]  # the candidate exports nothing
    missing = judge(base, cand, cfg, names=("dc", "gcp"))
    assert missing.outcome == "inconclusive" and "missing data" in missing.metrics[0].reason
    down = rule.model_copy(
        update={"prometheus": PrometheusQuery(url="http://127.0.0.1:9", query="up", timeout_s=1)}
    )
    assert judge(base, cand, JudgeConfig(rules=[down], min_samples=5)).outcome == "inconclusive"
    # Absolute threshold when the query has no {side}.
    state.series = [("err_budget_burn", {}, 3.0)]
    burn = MetricRule(
        metric="prometheus", tolerance=0,
        prometheus=PrometheusQuery(url=url, query="err_budget_burn", threshold=2.0),
    )  # fmt: skip
    assert judge(base, cand, JudgeConfig(rules=[burn], min_samples=5)).outcome == "fail"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migration_waves.cli", "canary", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_exit_codes_and_json(tmp_path: Path, prom: tuple[str, PromState]) -> None:
    url, state = prom
    write_samples(tmp_path / "base.jsonl", draw(400, 3))
    write_samples(tmp_path / "same.jsonl", draw(400, 4))
    write_samples(tmp_path / "slow.jsonl", draw(400, 5, scale=1.5))
    write_samples(tmp_path / "few.jsonl", draw(20, 6))
    cfg = tmp_path / "judge.yaml"
    cfg.write_text(
        "rules:\n"
        "  - {metric: p95, tolerance: 1.1, detect: 1.25}\n"
        "  - {metric: p50, tolerance: 1.1, detect: 1.3}\n"
        "  - {metric: prometheus, tolerance: 1.2,\n"
        f"     prometheus: {{url: '{url}', query: 'sum(up{{job=\"{{side}}\"}})'}}}}\n"
    )
    state.series = [("up", {"job": "onprem"}, 1.0), ("up", {"job": "cloud"}, 1.0)]
    common = ["--baseline", str(tmp_path / "base.jsonl"), "--config", str(cfg), "--json"]
    same = _cli("judge", *common, "--candidate", str(tmp_path / "same.jsonl"))
    assert same.returncode == 0, same.stdout + same.stderr
    body = json.loads(same.stdout)
    assert body["outcome"] == "pass" and body["plan"]["required"] >= 50
    assert {m["metric"] for m in body["metrics"]} == {"p95", "p50", "prometheus"}
    slow = _cli("judge", *common, "--candidate", str(tmp_path / "slow.jsonl"))
    assert slow.returncode == 1 and json.loads(slow.stdout)["outcome"] == "fail"
    few = _cli("judge", *common, "--candidate", str(tmp_path / "few.jsonl"))
    assert few.returncode == 2 and json.loads(few.stdout)["action"] == "hold"
    text = _cli(
        "judge", "--baseline", str(tmp_path / "base.jsonl"), "--candidate", str(tmp_path / "slow.jsonl")
    )
    assert text.returncode == 1 and text.stdout.startswith("plan: ") and "FAIL -> rollback" in text.stdout
    missing = _cli(
        "judge", "--baseline", str(tmp_path / "nope.jsonl"), "--candidate", str(tmp_path / "few.jsonl")
    )
    assert missing.returncode == 3 and "nope.jsonl" in missing.stderr
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("rules: [{metric: p95, tolerance: 0.5}]\n")
    bad = _cli("judge", *common[:2], "--config", str(bad_cfg), "--candidate", str(tmp_path / "same.jsonl"))
    assert bad.returncode == 3 and "bad.yaml" in bad.stderr and "rules.0" in bad.stderr
    plan = _cli("plan", "--baseline", str(tmp_path / "base.jsonl"), "--json")
    assert plan.returncode == 0 and json.loads(plan.stdout)["per_metric"]["error_rate"] > 300
