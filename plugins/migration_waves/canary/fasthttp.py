"""A lean HTTP/1.1 keep-alive client for the load generator (plain http:// only).

httpx costs about a millisecond of Python per request, which on a 2-core runner caps the generator
far below the services it measures and adds that millisecond to every latency. This client keeps
one asyncio stream per connection, pre-encodes each request once, and parses only what the canary
needs: the status, Content-Length (or chunked framing) and the x-backend / x-router-target headers.
https:// and anything unusual stay with httpx.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class HttpProtocolError(RuntimeError):
    """The server answered something that is not an HTTP/1.1 response this client understands."""


#: Exceptions a request may raise; the load generator records them as failed samples.
REQUEST_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpProtocolError,
)  # fmt: skip


class Response:
    """Status and the two headers the canary reads."""

    __slots__ = ("backend", "route", "status_code")

    def __init__(self, status_code: int, backend: str | None, route: str | None) -> None:
        self.status_code, self.backend, self.route = status_code, backend, route


class FastClient:
    """POSTs JSON to one http:// URL over a pool of keep-alive connections (at most `max_connections`)."""

    def __init__(self, url: str, *, timeout_s: float, max_connections: int) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"FastClient speaks plain http:// only, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._head = f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\nContent-Type: application/json\r\n"
        self.timeout_s = timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._cache: dict[tuple[Any, tuple[tuple[str, str], ...]], bytes] = {}

    def encode(self, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        """The full request bytes for a JSON body and extra headers."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        return (self._head + extra + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body

    def request_for(self, key: Any, payload: Any, headers: dict[str, str] | None = None) -> bytes:
        """Pre-encoded request of the payload identified by `key` with these headers (cached)."""
        ck = (key, tuple(sorted((headers or {}).items())))
        req = self._cache.get(ck)
        if req is None:
            req = self._cache[ck] = self.encode(json.dumps(payload).encode(), headers)
        return req

    async def send(self, request: bytes) -> Response:
        """Send pre-encoded request bytes on an idle (or new) connection; read the response."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            try:
                async with asyncio.timeout(self.timeout_s):
                    if conn is None:
                        conn = await asyncio.open_connection(self.host, self.port)
                    try:
                        resp, keep = await self._exchange(conn, request)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        if not reused:
                            raise
                        # The server closed an idle keep-alive connection: retry once on a new one.
                        conn[1].close()
                        conn = await asyncio.open_connection(self.host, self.port)
                        resp, keep = await self._exchange(conn, request)
            except BaseException:
                if conn is not None:
                    conn[1].close()
                raise
            if keep:
                self._idle.append(conn)
            else:
                conn[1].close()
            return resp

    @staticmethod
    async def _exchange(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
    ) -> tuple[Response, bool]:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0]
        if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
            raise HttpProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(status_line[9:12])
        length: int | None = None
        chunked = False
        keep = status_line.startswith(b"HTTP/1.1")
        backend = route = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"x-backend":
                backend = value.strip().decode("latin-1")
            elif name == b"x-router-target":
                route = value.strip().decode("latin-1")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                v = value.strip().lower()
                keep = v == b"keep-alive" or (keep and v != b"close")
        if status in (204, 304) or 100 <= status < 200:
            pass
        elif chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await reader.readexactly(length)
        else:  # no framing: the body ends with the connection
            await reader.read()
            keep = False
        return Response(status, backend, route), keep

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
