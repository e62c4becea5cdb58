"""Synthetic checks: is an inference endpoint up and answering with the right schema?"""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import BaseModel


class CheckResult(BaseModel):
    """Outcome of one synthetic check against one endpoint."""

    workload: str
    url: str
    passed: bool
    reasons: list[str]
    health_status: int | None = None
    predict_status: int | None = None
    label: int | None = None
    backend: str | None = None
    latency_ms: float | None = None


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def synthetic_check(
    base_url: str,
    *,
    predict_path: str = "/predict",
    health_path: str = "/health",
    payload: dict[str, Any],
    workload: str,
    timeout_s: float = 5.0,
) -> CheckResult:
    """GET health (expect 200), POST one payload to predict (expect 200 and an int label 0-9)."""
    result = CheckResult(workload=workload, url=base_url, passed=False, reasons=[])
    health_url, predict_url = _join(base_url, health_path), _join(base_url, predict_path)
    with httpx.Client(timeout=timeout_s) as client:
        try:
            resp = client.get(health_url)
            result.health_status = resp.status_code
            if resp.status_code != 200:
                result.reasons.append(
                    f"workload {workload}: {health_url} answered {resp.status_code}, expected 200"
                )
        except httpx.HTTPError as exc:
            result.reasons.append(
                f"workload {workload}: endpoint {health_url} is unreachable ({type(exc).__name__}: {exc}); "
                "is the service running and the URL in the wave spec right?"
            )
            return result
        started = time.perf_counter()
        try:
            resp = client.post(predict_url, json=payload)
        except httpx.HTTPError as exc:
            result.reasons.append(
                f"workload {workload}: endpoint {predict_url} is unreachable ({type(exc).__name__}: {exc})"
            )
            return result
        result.latency_ms = (time.perf_counter() - started) * 1000
        result.predict_status = resp.status_code
        result.backend = resp.headers.get("x-backend")
        if resp.status_code != 200:
            result.reasons.append(
                f"workload {workload}: {predict_url} answered {resp.status_code}, expected 200: "
                f"{resp.text[:200]}"
            )
        else:
            try:
                body = resp.json()
            except ValueError:
                body = None
            label = body.get("label") if isinstance(body, dict) else None
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 9:
                result.reasons.append(
                    f"workload {workload}: {predict_url} response lacks an integer label 0-9: "
                    f"{resp.text[:200]}"
                )
            else:
                result.label = label
    result.passed = not result.reasons
    if result.passed:
        result.reasons.append(
            f"workload {workload}: {base_url} is healthy and predicted label {result.label} "
            f"in {result.latency_ms:.1f} ms"
        )
    return result
