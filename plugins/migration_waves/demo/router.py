"""Demo traffic router: a weighted reverse proxy in front of a baseline and a candidate backend.

`python -m migration_waves.demo.router --port 8100 --baseline URL --candidate URL [--state-file PATH]`
forwards every path and method to one backend chosen by smooth weighted round-robin, so a 5% split
sends exactly 5 of every 100 requests to the candidate. `GET/PUT /admin/weights` read and set the
split; the split is saved to the state file so a restarted router keeps it.

A request may carry `x-canary-target: baseline|candidate` to pin its backend: the canary judge uses
it to top up a side that the current split starves (the baseline at 100%, the candidate at 5%),
so both sides are measured through the same proxy path.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

BASELINE, CANDIDATE = "baseline", "candidate"
PIN_HEADER = "x-canary-target"
ROUTE_HEADER = "x-router-target"

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy recomputes.
_DROP_REQUEST = {
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    PIN_HEADER,
}
_DROP_RESPONSE = {
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-encoding",
    "date",  # uvicorn adds its own date and server headers to the proxied response
    "server",
}


class WeightedChooser:
    """Smooth weighted round-robin over baseline and candidate (nginx's algorithm).

    Deterministic: in any 100 consecutive picks the candidate gets exactly `candidate_pct`, spread
    out rather than in a burst.
    """

    def __init__(self, candidate_pct: int = 0) -> None:
        self.candidate_pct = 0
        self._current = {BASELINE: 0, CANDIDATE: 0}
        self.set(candidate_pct)

    def set(self, candidate_pct: int) -> None:
        validate_pct(candidate_pct)
        self.candidate_pct = candidate_pct
        self._current = {BASELINE: 0, CANDIDATE: 0}

    def weights(self) -> dict[str, int]:
        return {CANDIDATE: self.candidate_pct, BASELINE: 100 - self.candidate_pct}

    def pick(self) -> str:
        weights = self.weights()
        for target, weight in weights.items():
            self._current[target] += weight
        # Ties go to the baseline: the safe side.
        chosen = BASELINE if self._current[BASELINE] >= self._current[CANDIDATE] else CANDIDATE
        self._current[chosen] -= 100
        return chosen


def validate_pct(value: Any) -> int:
    """An integer percentage in 0..100, or ValueError saying what was given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"candidate weight must be an integer percentage 0..100, got {value!r}")
    if not 0 <= value <= 100:
        raise ValueError(f"candidate weight must be within 0..100, got {value}")
    return value


def load_state(path: Path | None, default_pct: int = 0) -> int:
    """The saved candidate weight, or default_pct when there is no state file yet."""
    if path is None or not path.exists():
        return default_pct
    try:
        return validate_pct(json.loads(path.read_text())["candidate"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f'router state file {path} is unreadable ({exc}); fix it to {{"candidate": 0..100}} or delete it '
            "to start with all traffic on the baseline"
        ) from exc


def save_state(path: Path | None, candidate_pct: int) -> None:
    """Write the weight atomically (temp file + rename): a crash never leaves half a state file."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"candidate": candidate_pct, "updated_at": time.time()}) + "\n")
    os.replace(tmp, path)


def create_app(
    *, baseline: str, candidate: str, state_file: str | Path | None = None, timeout_s: float = 30.0
) -> Any:
    """The Starlette app of the router."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    state_path = Path(state_file) if state_file else None
    chooser = WeightedChooser(load_state(state_path))
    upstream = {BASELINE: baseline.rstrip("/"), CANDIDATE: candidate.rstrip("/")}
    routed = {BASELINE: 0, CANDIDATE: 0}
    holder: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        # One pooled client for the process: keep-alive connections to both backends.
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=timeout_s, limits=limits, trust_env=False) as client:
            holder["client"] = client
            yield

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "weights": chooser.weights(), "upstream": upstream})

    async def get_weights(_: Request) -> Response:
        return JSONResponse(chooser.weights())

    async def put_weights(request: Request) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"detail": 'body must be JSON: {"candidate": 0..100}'}, status_code=422)
        if not isinstance(body, dict) or "candidate" not in body:
            return JSONResponse({"detail": 'body must be {"candidate": 0..100}'}, status_code=422)
        try:
            pct = validate_pct(body["candidate"])
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        # Persist first: the router only reports a split it would keep across a restart.
        save_state(state_path, pct)
        chooser.set(pct)
        return JSONResponse(chooser.weights())

    async def stats(_: Request) -> Response:
        return JSONResponse({"routed": routed, "weights": chooser.weights()})

    async def proxy(request: Request) -> Response:
        pinned = request.headers.get(PIN_HEADER)
        if pinned is not None and pinned not in upstream:
            return JSONResponse({"detail": f"{PIN_HEADER} must be baseline or candidate"}, status_code=400)
        target = pinned or chooser.pick()
        routed[target] += 1
        url = upstream[target] + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        try:
            upstream_resp = await holder["client"].request(
                request.method, url, content=await request.body(), headers=headers
            )
        except httpx.HTTPError as exc:
            return JSONResponse(
                {"detail": f"{target} backend {upstream[target]} failed: {type(exc).__name__}: {exc}"},
                status_code=502,
                headers={ROUTE_HEADER: target},
            )
        out_headers = {k: v for k, v in upstream_resp.headers.items() if k.lower() not in _DROP_RESPONSE}
        out_headers[ROUTE_HEADER] = target
        return Response(upstream_resp.content, status_code=upstream_resp.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/admin/weights", get_weights, methods=["GET"]),
        Route("/admin/weights", put_weights, methods=["PUT"]),
        Route("/admin/stats", stats, methods=["GET"]),
        Route("/{path:path}", proxy, methods=methods),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the router with uvicorn."""
    parser = argparse.ArgumentParser(prog="python -m migration_waves.demo.router", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--baseline", required=True, help="baseline (on-prem) backend URL")
    parser.add_argument("--candidate", required=True, help="candidate (cloud) backend URL")
    parser.add_argument("--state-file", default=None, help="JSON file keeping the split across restarts")
    args = parser.parse_args(argv)

    import uvicorn

    app = create_app(baseline=args.baseline, candidate=args.candidate, state_file=args.state_file)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
