"""Demo inference service: the digits classifier behind a real HTTP endpoint.

`python -m migration_waves.demo.inference --name onprem --port 8101 --model DIR` serves
`GET /health` and `POST /predict` ({"pixels": [64 floats]} -> {"label", "backend", "model_version"}).
`--delay-ms` and `--error-rate` inject the faults the canary demo must catch. Every request appends a
JSON line to a serving log that rotates into new files, so the telemetry dataset grows append-only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

N_PIXELS = 64
MODEL_FILE = "model.npz"
MODEL_META = "model.json"


@dataclass(frozen=True)
class DigitsModel:
    """A linear digits classifier: label = classes[argmax(coef @ x + intercept)]."""

    coef: np.ndarray  # (n_classes, 64)
    intercept: np.ndarray  # (n_classes,)
    classes: np.ndarray  # (n_classes,)
    version: str

    def predict(self, pixels: list[float]) -> int:
        scores = self.coef @ np.asarray(pixels, dtype=np.float64) + self.intercept
        return int(self.classes[int(np.argmax(scores))])


def save_model(
    model_dir: str | Path, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, version: str
) -> Path:
    """Write `model.npz` (coef, intercept, classes) and `model.json` into model_dir; return the npz path."""
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    npz = out / MODEL_FILE
    np.savez(npz, coef=np.asarray(coef), intercept=np.asarray(intercept), classes=np.asarray(classes))
    (out / MODEL_META).write_text(json.dumps({"version": version, "n_features": N_PIXELS}) + "\n")
    return npz


def load_model(model_dir: str | Path) -> DigitsModel:
    """Load the classifier from `model_dir/model.npz` (+ optional model.json for the version)."""
    root = Path(model_dir)
    npz_path = root / MODEL_FILE
    if not npz_path.is_file():
        raise FileNotFoundError(
            f"model file {npz_path} is missing; train the digits model first (it writes {MODEL_FILE} "
            "with keys coef, intercept, classes) or pass --model pointing at its folder"
        )
    with np.load(npz_path) as data:
        missing = {"coef", "intercept", "classes"} - set(data.files)
        if missing:
            raise ValueError(
                f"model file {npz_path} lacks keys {sorted(missing)}; expected coef, intercept, classes"
            )
        coef, intercept, classes = data["coef"], data["intercept"], data["classes"]
    if coef.ndim != 2 or coef.shape[1] != N_PIXELS or intercept.shape != (coef.shape[0],):
        raise ValueError(
            f"model file {npz_path}: coef must be (n_classes, {N_PIXELS}) and intercept (n_classes,), "
            f"got {coef.shape} and {intercept.shape}"
        )
    if classes.shape != (coef.shape[0],):
        raise ValueError(
            f"model file {npz_path}: classes has shape {classes.shape}, expected ({coef.shape[0]},)"
        )
    version = ""
    meta = root / MODEL_META
    if meta.is_file():
        version = str(json.loads(meta.read_text()).get("version", ""))
    if not version:
        # No declared version: a content digest still tells two models apart.
        version = "sha256:" + hashlib.sha256(npz_path.read_bytes()).hexdigest()[:12]
    return DigitsModel(
        coef=coef.astype(np.float64), intercept=intercept.astype(np.float64), classes=classes, version=version
    )


class RotatingJsonlLog:
    """Append-only JSONL writer that starts a new file every `rotate_lines` lines.

    Each line is flushed as written; a rotated file is closed and never touched again, so an
    append-only ingest can copy closed files once and re-read only the newest one.
    """

    def __init__(self, log_dir: str | Path, prefix: str, rotate_lines: int = 1000) -> None:
        if rotate_lines < 1:
            raise ValueError(f"rotate_lines must be >= 1, got {rotate_lines}")
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.rotate_lines = rotate_lines
        # Start time and pid in the name: a restarted service never appends to an older file.
        self._stem = f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
        self._seq = 0
        self._lines = 0
        self._fh: TextIO | None = None
        self._lock = threading.Lock()

    @property
    def current_path(self) -> Path:
        return self.dir / f"{self._stem}-{self._seq:06d}.jsonl"

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if self._fh is None:
                self._fh = open(self.current_path, "a", encoding="utf-8")  # kept open across writes
            self._fh.write(line)
            self._fh.flush()
            self._lines += 1
            if self._lines >= self.rotate_lines:
                self._fh.close()
                self._fh = None
                self._lines = 0
                self._seq += 1

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class ErrorInjector:
    """Deterministic fault injection: exactly `rate` of requests fail, spread evenly (no luck involved)."""

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"error rate must be within 0..1, got {rate}")
        self.rate = rate
        self._n = 0

    def should_fail(self) -> bool:
        self._n += 1
        return math.floor(self._n * self.rate) > math.floor((self._n - 1) * self.rate)


def _validate_pixels(body: Any) -> list[float] | str:
    """The pixel vector, or a message saying what is wrong with the request body."""
    if not isinstance(body, dict) or "pixels" not in body:
        return 'body must be a JSON object {"pixels": [64 numbers]}'
    pixels = body["pixels"]
    if not isinstance(pixels, list):
        return f"pixels must be a list of {N_PIXELS} numbers, got {type(pixels).__name__}"
    if len(pixels) != N_PIXELS:
        return f"pixels must hold {N_PIXELS} numbers (an 8x8 digit image), got {len(pixels)}"
    out: list[float] = []
    for i, value in enumerate(pixels):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"pixels[{i}] must be a finite number, got {value!r}"
        out.append(float(value))
    return out


def create_app(
    *,
    name: str,
    model: DigitsModel,
    delay_ms: float = 0.0,
    error_rate: float = 0.0,
    log_dir: str | Path | None = None,
    log_rotate_lines: int = 1000,
) -> Any:
    """The Starlette app of one inference backend (`name` is reported in bodies and the x-backend header)."""
    # Plain Starlette (FastAPI's base): no signature introspection, which cannot see these local imports.
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    injector = ErrorInjector(error_rate)
    serving_log = RotatingJsonlLog(log_dir, f"serving-{name}", log_rotate_lines) if log_dir else None

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        if serving_log is not None:
            serving_log.close()

    headers = {"x-backend": name}

    def _log(label: int | None, started: float, status: int) -> None:
        if serving_log is not None:
            serving_log.write(
                {
                    "ts": time.time(),
                    "backend": name,
                    "label": label,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    "status": status,
                }
            )

    async def health(_: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "backend": name, "model_version": model.version}, headers=headers
        )

    async def predict(request: Request) -> JSONResponse:
        started = time.perf_counter()
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        pixels = _validate_pixels(body)
        if isinstance(pixels, str):
            _log(None, started, 422)
            return JSONResponse({"detail": pixels}, status_code=422, headers=headers)
        if injector.should_fail():
            _log(None, started, 500)
            return JSONResponse({"detail": f"injected fault on {name}"}, status_code=500, headers=headers)
        label = model.predict(pixels)
        _log(label, started, 200)
        return JSONResponse(
            {"label": label, "backend": name, "model_version": model.version}, headers=headers
        )

    routes = [Route("/health", health, methods=["GET"]), Route("/predict", predict, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    """Command line: serve one inference backend with uvicorn."""
    parser = argparse.ArgumentParser(prog="python -m migration_waves.demo.inference", description=__doc__)
    parser.add_argument("--name", required=True, help="backend name, e.g. onprem or cloud")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", required=True, help="folder with model.npz (+ model.json)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added latency per predict request")
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction of predict requests that fail"
    )
    parser.add_argument("--log-dir", default=None, help="folder for the JSONL serving log")
    parser.add_argument("--log-rotate-lines", type=int, default=1000, help="lines per serving log file")
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error(f"--delay-ms must be >= 0, got {args.delay_ms}")
    if not 0 <= args.error_rate <= 1:
        parser.error(f"--error-rate must be within 0..1, got {args.error_rate}")

    import uvicorn

    app = create_app(
        name=args.name,
        model=load_model(args.model),
        delay_ms=args.delay_ms,
        error_rate=args.error_rate,
        log_dir=args.log_dir,
        log_rotate_lines=args.log_rotate_lines,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
