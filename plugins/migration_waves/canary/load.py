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

from migration_waves.canary.fasthttp import REQUEST_ERRORS as FAST_ERRORS
from migration_waves.canary.fasthttp import FastClient

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
    batch: int = 1  # payloads carried by the request


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


class _Client:
    """POSTs JSON to one URL: the lean keep-alive client for http://, httpx for anything else."""

    def __init__(self, url: str, timeout_s: float, concurrency: int) -> None:
        self.url = url
        self.fast = (
            FastClient(url, timeout_s=timeout_s, max_connections=concurrency)
            if url.startswith("http://")
            else None
        )
        self.httpx: httpx.AsyncClient | None = None
        if self.fast is None:
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            self.httpx = httpx.AsyncClient(timeout=timeout_s, limits=limits)

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.fast is not None:
            await self.fast.aclose()
        if self.httpx is not None:
            await self.httpx.aclose()

    async def post(
        self, key: Any, body: Any, headers: dict[str, str] | None
    ) -> tuple[int, str | None, str | None]:
        """(status, x-backend, x-router-target) of POSTing `body` (JSON); `key` names the body for caching."""
        if self.fast is not None:
            r = await self.fast.send(self.fast.request_for(key, body, headers))
            return r.status_code, r.backend, r.route
        assert self.httpx is not None
        resp = await self.httpx.post(self.url, json=body, headers=headers)
        return resp.status_code, resp.headers.get(BACKEND_HEADER), resp.headers.get(ROUTE_HEADER)


REQUEST_ERRORS = (httpx.HTTPError, *FAST_ERRORS)


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

    async def worker(client: _Client) -> None:
        nonlocal next_index
        while next_index < n_requests:
            i = next_index
            next_index += 1  # no await in between: the event loop makes this atomic
            extra = request_headers[i] if request_headers is not None else None
            merged = {**(headers or {}), **(extra or {})} or None
            k = i % len(payloads)
            ts = time.time()
            started = time.perf_counter()
            try:
                status, backend, route = await client.post(k, payloads[k], merged)
                samples[i] = Sample.model_construct(
                    latency_ms=(time.perf_counter() - started) * 1000, status=status, backend=backend,
                    route=route, ok=200 <= status < 300, ts=ts,
                )  # fmt: skip
            except REQUEST_ERRORS as exc:  # never raise mid-run: a failure is a measurement
                samples[i] = Sample(
                    latency_ms=(time.perf_counter() - started) * 1000,
                    status=0,
                    ok=False,
                    ts=ts,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )

    async with _Client(url, timeout_s, concurrency) as client:
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


class LoadRun(BaseModel):
    """Samples of one open-loop run and how well the schedule was kept."""

    samples: list[Sample]
    rate_rps: float | None  # requested rate; None: as fast as `concurrency` allows
    achieved_rps: float
    duration_s: float
    max_lag_ms: float  # worst delay of a request's start behind its scheduled time


def batch_body(payloads: list[dict[str, Any]], start: int, size: int, batch_key: str) -> dict[str, Any]:
    """Request body of batch size `size`: the payload itself for 1, else {batch_key: [payloads]}."""
    if size == 1:
        return payloads[start % len(payloads)]
    return {batch_key: [payloads[(start + k) % len(payloads)] for k in range(size)]}


async def run_open_loop_async(
    url: str,
    payloads: list[dict[str, Any]],
    *,
    rate_rps: float | None,
    duration_s: float | None = None,
    n_requests: int | None = None,
    concurrency: int = 8,
    batch_sizes: list[int] | None = None,
    batch_key: str = "instances",
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
) -> LoadRun:
    """Replay payloads at `rate_rps` (open loop) with at most `concurrency` requests in flight.

    Open loop: request i is due at start + i / rate whatever the responses do, so a slow backend
    meets the same arrival rate instead of slowing the generator down (no coordinated omission).
    A request due while `concurrency` are in flight waits for a slot; its latency counts from its
    due time, so the wait shows up as latency, as a user would see it. rate_rps None sends as fast
    as the slots allow (closed loop). Batch sizes cycle over requests; each sample records its own.
    """
    if rate_rps is not None and rate_rps <= 0:
        raise ValueError(f"rate_rps must be > 0 requests/s, got {rate_rps}")
    if duration_s is None and n_requests is None:
        raise ValueError("give duration_s or n_requests")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    sizes = batch_sizes or [1]
    if any(b < 1 for b in sizes):
        raise ValueError(f"batch sizes must be >= 1, got {sizes}")
    if not payloads:
        raise ValueError("no payloads to send; load them with load_payloads()")
    limit = n_requests if n_requests is not None else 10**12
    samples: list[Sample] = []
    lags: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def one(client: _Client, i: int, due: float) -> None:
        size = sizes[i % len(sizes)]
        start_at = (i * size) % len(payloads)
        body = batch_body(payloads, start_at, size, batch_key)
        async with sem:
            began = loop.time()
            lags.append(began - due)
            ts = time.time()
            try:
                status, backend, route = await client.post((start_at, size), body, headers)
                samples.append(
                    Sample.model_construct(
                        latency_ms=(loop.time() - due) * 1000, status=status, backend=backend, route=route,
                        ok=200 <= status < 300, ts=ts, batch=size,
                    )
                )  # fmt: skip
            except REQUEST_ERRORS as exc:
                samples.append(
                    Sample(
                        latency_ms=(loop.time() - due) * 1000, status=0, ok=False, ts=ts, batch=size,
                        error=f"{type(exc).__name__}: {exc}"[:300],
                    )
                )  # fmt: skip

    async with _Client(url, timeout_s, concurrency) as client:
        start = loop.time()
        end = start + duration_s if duration_s is not None else float("inf")
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        if rate_rps is None:
            # Closed loop: `concurrency` workers, each sending its next request when one returns.
            async def worker() -> None:
                nonlocal i
                while i < limit and loop.time() < end:
                    k = i
                    i += 1
                    await one(client, k, loop.time())

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            interval = 1.0 / rate_rps
            while i < limit:
                due = start + i * interval
                if due >= end:
                    break
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(client, i, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    return LoadRun(
        samples=samples,
        rate_rps=rate_rps,
        achieved_rps=len(samples) / elapsed if elapsed > 0 else 0.0,
        duration_s=elapsed,
        max_lag_ms=max(lags, default=0.0) * 1000,
    )


def run_open_loop(url: str, payloads: list[dict[str, Any]], **kwargs: Any) -> LoadRun:
    """Synchronous wrapper of run_open_loop_async (its own event loop)."""
    return asyncio.run(run_open_loop_async(url, payloads, **kwargs))


def read_samples(path: str | Path) -> list[Sample]:
    """Samples from JSONL: one object per line with latency_ms and status (ok, backend, ts optional)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"sample file {p} does not exist")
    out: list[Sample] = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            status = int(obj["status"])
            latency = float(obj["latency_ms"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"sample file {p} line {lineno}: need a JSON object with numeric latency_ms and "
                f"status ({type(exc).__name__}: {exc})"
            ) from exc
        if latency < 0:
            raise ValueError(f"sample file {p} line {lineno}: latency_ms {latency} is negative")
        out.append(
            Sample(
                latency_ms=latency, status=status, ok=bool(obj.get("ok", 200 <= status < 300)),
                backend=obj.get("backend"), ts=float(obj.get("ts", 0.0)), error=obj.get("error"),
            )
        )  # fmt: skip
    return out


def write_samples(path: str | Path, samples: list[Sample]) -> None:
    """Samples as JSONL (the format read_samples and `migration-waves canary judge` read)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(s.model_dump_json(exclude_none=True) + "\n")
