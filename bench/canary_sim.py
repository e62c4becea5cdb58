"""`make bench-canary`: the canary judge on known distributions, and the load generator beside wrk.

Part 1 simulates canary steps whose truth is known (fixed seeds) and prints, for the default
JudgeConfig:
  - A/A: both sides draw from the same latency/error distribution; any rollback is a false one;
  - a +25% p95 regression (the candidate's latencies scaled by 1.25) at 300 samples per arm;
  - an error-rate regression 0.1% -> 2%.
A step starts with 300 samples per arm; "hold" adds 300 more per arm up to max_samples, as the
gate does. Both the first-look verdict and the final decision are printed.

Part 2 drives a trivial local HTTP endpoint (a threaded stdlib server on 127.0.0.1, started here)
with the load generator and with `wrk` (when installed), and prints requests/s and p50 of both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from migration_waves.canary.config import JudgeConfig
from migration_waves.canary.load import Sample
from migration_waves.canary.rules import judge, plan_samples

MEDIAN_MS = 40.0
SIGMA = 0.3  # lognormal spread of the simulated service (p95/p50 = 1.64)
STEP = 300


def draw(rng: np.random.Generator, n: int, *, scale: float = 1.0, error_rate: float = 0.001) -> list[Sample]:
    lat = MEDIAN_MS * scale * rng.lognormal(0.0, SIGMA, size=n)
    err = rng.random(n) < error_rate
    return [
        Sample(latency_ms=float(v), status=500 if e else 200, ok=not e) for v, e in zip(lat, err, strict=True)
    ]


def simulate(runs: int, seed: int, cfg: JudgeConfig, *, scale: float, cand_error: float) -> dict[str, float]:
    """Fraction of runs whose first look fails, and whose final decision (after holds) rolls back."""
    rng = np.random.default_rng(seed)
    first_fail = final_rollback = final_fail = holds = 0
    for _ in range(runs):
        base, cand = draw(rng, STEP), draw(rng, STEP, scale=scale, error_rate=cand_error)
        verdict = judge(base, cand, cfg)
        first_fail += verdict.outcome == "fail"
        while verdict.action == "hold":
            holds += 1
            base += draw(rng, STEP)
            cand += draw(rng, STEP, scale=scale, error_rate=cand_error)
            verdict = judge(base, cand, cfg)
        final_rollback += verdict.action == "rollback"
        final_fail += verdict.outcome == "fail"
    return {
        "first_look_fail": first_fail / runs,
        "final_rollback": final_rollback / runs,
        "final_fail": final_fail / runs,
        "holds_per_run": holds / runs,
    }


def part_judge(runs: int) -> list[str]:
    cfg = JudgeConfig()
    plan = plan_samples(cfg)
    print(f"default rules: {[r.model_dump(exclude_none=True) for r in cfg.rules]}")
    print(f"alpha {cfg.alpha}, power {cfg.power}, max_samples {cfg.max_samples}; plan: {plan.reasons}")
    print(f"simulated service: lognormal median {MEDIAN_MS} ms, sigma {SIGMA}; {runs} runs each\n")
    misses: list[str] = []
    t0 = time.perf_counter()
    aa = simulate(runs, 1, cfg, scale=1.0, cand_error=0.001)
    p95 = simulate(runs, 2, cfg, scale=1.25, cand_error=0.001)
    err = simulate(runs, 3, cfg, scale=1.0, cand_error=0.02)
    took = time.perf_counter() - t0
    rows = [
        ("A/A false rollback", aa["final_rollback"], "<= 1%", aa["final_rollback"] <= 0.01),
        ("A/A false fail, first look", aa["first_look_fail"], "", True),
        (
            "+25% p95 caught at 300/arm (fail)",
            p95["first_look_fail"],
            ">= 95%",
            p95["first_look_fail"] >= 0.95,
        ),
        ("+25% p95 rolled back (final)", p95["final_rollback"], "", True),
        ("errors 0.1%->2% fail, first look", err["first_look_fail"], "", True),
        (
            "errors 0.1%->2% rolled back (final)",
            err["final_rollback"],
            ">= 95%",
            err["final_rollback"] >= 0.95,
        ),
    ]
    for name, value, target, ok in rows:
        mark = "" if not target else ("  ok" if ok else "  MISSED")
        print(f"  {name:<38} {value:7.2%}  {target:>7}{mark}")
        if target and not ok:
            misses.append(name)
    print(
        f"  holds per run: A/A {aa['holds_per_run']:.2f}, p95 {p95['holds_per_run']:.2f}, "
        f"errors {err['holds_per_run']:.2f}; {took:.1f} s\n"
    )
    return misses


# -- part 2: load generator vs wrk ----------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk and httpx use it
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"label":1}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-backend", "bench")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:  # quiet
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # wrk resets its connections when it stops; not worth a traceback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def endpoint() -> Iterator[str]:
    """A trivial endpoint in a subprocess, so the load generator does not share its GIL."""
    port = _free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {here!r}); from canary_sim import _Handler, _Server; "
        f"_Server(('127.0.0.1', {port}), _Handler).serve_forever()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/predict"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wrk(url: str, seconds: int, connections: int) -> tuple[float, float] | None:
    wrk = shutil.which("wrk")
    if not wrk:
        return None
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]  # type: ignore[union-attr]
    return rps, float(m.group(1)) * unit  # type: ignore[union-attr]


def part_load(seconds: int, concurrency: int) -> list[str]:
    from migration_waves.canary.load import run_open_loop

    misses: list[str] = []
    payloads = [{"pixels": [0.0] * 64}]
    with endpoint() as url:
        ours = run_open_loop(url, payloads, rate_rps=None, duration_s=seconds, concurrency=concurrency)
        ok = [s.latency_ms for s in ours.samples if s.ok]
        our_p50 = float(np.percentile(ok, 50)) if ok else float("nan")
        print(
            f"load generator: {ours.achieved_rps:8.0f} req/s, p50 {our_p50:.2f} ms "
            f"({len(ours.samples)} requests, {len(ok)} ok, concurrency {concurrency}, closed loop)"
        )
        # Open loop at a fixed rate: the schedule, not the responses, paces the requests.
        target = 500.0
        paced = run_open_loop(url, payloads, rate_rps=target, duration_s=2, concurrency=concurrency)
        print(
            f"open loop at {target:.0f} req/s: achieved {paced.achieved_rps:.0f} req/s, "
            f"max start lag {paced.max_lag_ms:.1f} ms"
        )
        res = _wrk(url.replace("/predict", "/"), seconds, concurrency)
        if res is None:
            print("wrk: not installed (apt-get install -y wrk); no peer figures")
            return misses
        wrk_rps, wrk_p50 = res
        print(f"wrk -t1 -c{concurrency}:  {wrk_rps:8.0f} req/s, p50 {wrk_p50:.2f} ms")
        print(
            f"ratio load generator / wrk: {ours.achieved_rps / wrk_rps:.2f}x req/s; "
            f"p50 difference {our_p50 - wrk_p50:+.2f} ms"
        )
        if ours.achieved_rps < 1000:
            misses.append("load generator below 1000 req/s")
        if abs(our_p50 - wrk_p50) > 1.0:
            misses.append("p50 more than 1 ms from wrk's")
    return misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    print(f"cpus: {os.cpu_count()}")
    misses = part_judge(args.runs)
    if not args.skip_load:
        misses += part_load(args.seconds, args.concurrency)
    print("targets missed: " + (", ".join(misses) if misses else "none"))
    if args.json:
        print(json.dumps({"missed": misses}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
