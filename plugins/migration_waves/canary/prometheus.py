"""Instant queries against a Prometheus-compatible HTTP API (`GET /api/v1/query`)."""

from __future__ import annotations

import math

import httpx


class PrometheusError(RuntimeError):
    """The server could not be reached, refused the query, or answered something unusable."""


def instant_query(
    base_url: str, query: str, *, timeout_s: float = 5.0, time: float | None = None
) -> float | None:
    """The value of an instant query; None when the result is empty (no such series: missing data).

    Vector results must hold exactly one series (sum() or a label filter makes it so); a scalar is
    taken as is. NaN counts as missing data, never as a number that could pass a gate.
    """
    url = base_url.rstrip("/") + "/api/v1/query"
    params: dict[str, str] = {"query": query}
    if time is not None:
        params["time"] = f"{time:.3f}"
    try:
        resp = httpx.get(url, params=params, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"prometheus {url} unreachable ({type(exc).__name__}: {exc})") from exc
    try:
        body = resp.json()
    except ValueError as exc:
        raise PrometheusError(f"prometheus {url} answered {resp.status_code} without JSON") from exc
    if resp.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(
            f"prometheus {url} rejected {query!r}: {resp.status_code} "
            f"{body.get('errorType', '')} {body.get('error', '')}".rstrip()
        )
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        raw = result[1] if isinstance(result, list) and len(result) == 2 else None
    elif kind == "vector":
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(
                f"prometheus query {query!r} returned {len(result)} series; aggregate it (sum by ...) "
                "or filter by label so it returns one"
            )
        raw = result[0].get("value", [None, None])[1]
    else:
        raise PrometheusError(f"prometheus query {query!r}: unsupported result type {kind!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise PrometheusError(f"prometheus query {query!r}: value {raw!r} is not a number") from exc
    return None if math.isnan(value) else value
