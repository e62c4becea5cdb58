"""Load generation: drive real HTTP requests with bounded concurrency and record one Sample each."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

BACKEND_HEADER = "x-backend"
ROUTE_HEADER = "x-router-target"


class Sample(BaseModel):
    """One request: its latency, HTTP status (0 when no response came back) and who answered it."""

    model_config = ConfigDict(frozen=True)

    latency_ms: float
    status: int
    backend: str | None = None  # the answering backend's x-backend header
    ok: bool
    ts: float = 0.0  # wall-clock start of the request, epoch seconds (0 when unknown)
    route: str | None = None  # the router's x-router-target header: baseline / candidate
    error: str | None = None  # connection or timeout error, when status is 0


def load_payloads(path: str | Path) -> list[dict[str, Any]]:
    """Request bodies from a JSONL file (one JSON object per line; blank lines skipped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"payload file {p} does not exist; generate it (make demo-data) or fix 'payloads:'"
        )
    payloads: list[dict[str, Any]] = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"payload file {p} line {lineno} is not valid JSON: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise ValueError(
                f"payload file {p} line {lineno} must be a JSON object, got {type(obj).__name__}"
            )
        payloads.append(obj)
    if not payloads:
        raise ValueError(f"payload file {p} holds no payloads; it needs one JSON object per line")
    return payloads


async def run_load_async(
    url: str,
    payloads: list[dict[str, Any]],
    *,
    n_requests: int,
    concurrency: int,
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
    request_headers: list[dict[str, str] | None] | None = None,
) -> list[Sample]:
    """POST n_requests payloads (cycled) to url with at most `concurrency` in flight.

    `headers` go on every request; `request_headers[i]` (optional, one entry per request) adds
    headers to request i, e.g. to pin some requests to one backend amid the rest.
    """
    if request_headers is not None and len(request_headers) != n_requests:
        raise ValueError(f"request_headers has {len(request_headers)} entries for {n_requests} requests")
    if n_requests < 0 or concurrency < 1:
        raise ValueError(f"need n_requests >= 0 and concurrency >= 1, got {n_requests} and {concurrency}")
    if not payloads and n_requests:
        raise ValueError("no payloads to send; load them with load_payloads()")
    samples: list[Sample | None] = [None] * n_requests
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < n_requests:
            i = next_index
            next_index += 1  # no await in between: the event loop makes this atomic
            extra = request_headers[i] if request_headers is not None else None
            merged = {**(headers or {}), **(extra or {})} or None
            ts = time.time()
            started = time.perf_counter()
            try:
                resp = await client.post(url, json=payloads[i % len(payloads)], headers=merged)
                samples[i] = Sample(
                    latency_ms=(time.perf_counter() - started) * 1000,
                    status=resp.status_code,
                    backend=resp.headers.get(BACKEND_HEADER),
                    route=resp.headers.get(ROUTE_HEADER),
                    ok=200 <= resp.status_code < 300,
                    ts=ts,
                )
            except httpx.HTTPError as exc:  # never raise mid-run: a failure is a measurement
                samples[i] = Sample(
                    latency_ms=(time.perf_counter() - started) * 1000,
                    status=0,
                    ok=False,
                    ts=ts,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(min(concurrency, max(n_requests, 1)))))
    return [s for s in samples if s is not None]


def run_load(
    url: str,
    payloads: list[dict[str, Any]],
    *,
    n_requests: int,
    concurrency: int,
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
    request_headers: list[dict[str, str] | None] | None = None,
) -> list[Sample]:
    """Synchronous wrapper of run_load_async (works inside a running event loop too, via a thread)."""
    coro_kwargs: dict[str, Any] = {
        "n_requests": n_requests,
        "concurrency": concurrency,
        "timeout_s": timeout_s,
        "headers": headers,
        "request_headers": request_headers,
    }
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_load_async(url, payloads, **coro_kwargs))
    # Called from async code (e.g. a triggerer): run in a private loop on a thread.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(run_load_async(url, payloads, **coro_kwargs))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="canary-load")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
