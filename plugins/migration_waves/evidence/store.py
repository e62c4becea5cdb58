"""Evidence store: one JSON record per task of a wave run, on any fsspec filesystem.

Layout under the state root::

    waves/<wave>/accepted.json                      wave-level marker: the wave passed acceptance
    waves/<wave>/frozen.json                        wave-level marker: writes to the source are frozen
    waves/<wave>/runs/<safe run id>/<stage>/<name>.json

Run ids from Airflow contain ':' and '+' (``manual__2026-12-03T10:00:00+00:00``), which are not
safe in folder names on every store; `safe_run_id` is the one place that maps them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import uuid
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

STAGES: tuple[str, ...] = (
    "preflight",
    "baseline",
    "data",
    "gpu",
    "resilience",
    "canary",
    "cutover",
    "acceptance",
    "rollback",
    "cost",
    "report",
    "outcome",
)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
MARKERS: tuple[str, ...] = ("accepted", "frozen")


def safe_run_id(run_id: str) -> str:
    """A run id as a folder name: every character outside [A-Za-z0-9._-] becomes '_'.

    ``manual__2026-12-03T10:00:00+00:00`` -> ``manual__2026-12-03T10_00_00_00_00``. The mapping is
    deterministic, so every task of a run (and a re-run of it) finds the same folder.
    """
    if not run_id or not run_id.strip():
        raise ValueError("run id is empty; pass the Airflow run_id of the wave run")
    safe = _UNSAFE.sub("_", run_id.strip())
    if set(safe) <= {"."}:
        raise ValueError(f"run id {run_id!r} is only dots; it cannot be a folder name")
    return safe


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{kind} {value!r} is not a safe file name; use letters, digits, '.', '_' and '-' "
            f"(no '/'), starting with a letter or digit, e.g. digits-corpus-seed"
        )
    return value


def _json_default(value: Any) -> Any:
    # Evidence is written by many tasks; accept the usual non-JSON values instead of crashing.
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"cannot store a {type(value).__name__} in an evidence record; convert it to JSON types")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _resolve(root: str, fs: fsspec.AbstractFileSystem | None) -> tuple[fsspec.AbstractFileSystem, str]:
    if fs is None:
        fs, base = fsspec.core.url_to_fs(root)
    else:
        base = fs._strip_protocol(root)
    return fs, str(base).rstrip("/")


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def _display(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Plain path on local disk (what people and other tools open); a URL anywhere else."""
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def _write_bytes(fs: fsspec.AbstractFileSystem, path: str, payload: bytes) -> None:
    """Write so a reader never sees a half-written file.

    Local: temp file in the same folder, fsync, then os.replace (atomic on POSIX). Object
    stores: a single PUT is already all-or-nothing.
    """
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if _is_local(fs):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        fs.pipe_file(path, payload)


def _read_json(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"evidence file {_display(fs, path)} is not valid JSON: {exc}") from exc
    return value if isinstance(value, dict) else {"data": value}


def _to_data(record: dict[str, Any] | BaseModel) -> Any:
    if isinstance(record, BaseModel):
        return record.model_dump(mode="json")
    # Round-trip through JSON now so a bad value fails the writer, not a later reader.
    return json.loads(json.dumps(record, default=_json_default))


class EvidenceStore:
    """Evidence records of one run of one wave under a state root (fsspec URL or local path)."""

    def __init__(
        self, root: str, wave: str, run_id: str, fs: fsspec.AbstractFileSystem | None = None
    ) -> None:
        self.root = root
        self.wave = _check_name("wave", wave)
        self.run_id = run_id
        self.fs, self._base = _resolve(root, fs)
        self.run_dir = f"{self._base}/waves/{wave}/runs/{safe_run_id(run_id)}"

    def __repr__(self) -> str:
        return f"EvidenceStore(wave={self.wave!r}, run_id={self.run_id!r}, run_dir={self.url()!r})"

    def path(self, *parts: str) -> str:
        """Path inside the run folder on this store's filesystem (no protocol)."""
        clean = [p.strip("/") for p in parts if p and p.strip("/")]
        for part in clean:
            if ".." in part.split("/"):
                raise ValueError(f"path part {part!r} climbs out of the run folder; remove '..'")
        return "/".join([self.run_dir, *clean])

    def url(self, *parts: str) -> str:
        """Like path(), but a URL for remote stores (plain path for local disk)."""
        return _display(self.fs, self.path(*parts))

    def record_path(self, stage: str, name: str) -> str:
        """Where a record lives. Stages outside STAGES (e.g. bulky ``samples``) may be written and
        read, but records() and so the report list only the pipeline STAGES."""
        return self.path(_check_name("stage", stage), f"{_check_name('record name', name)}.json")

    def write(self, stage: str, name: str, record: dict[str, Any] | BaseModel) -> str:
        """Write one record (atomically) wrapped in the envelope; return its path or URL."""
        data = _to_data(record)
        envelope: dict[str, Any] = {
            "stage": stage,
            "name": name,
            "wave": self.wave,
            "run_id": self.run_id,
            "written_at": _now(),
        }
        if isinstance(data, dict) and isinstance(data.get("passed"), bool):
            envelope["passed"] = data["passed"]
        envelope["data"] = data
        target = self.record_path(stage, name)
        _write_bytes(self.fs, target, json.dumps(envelope, indent=2, sort_keys=False).encode("utf-8"))
        return _display(self.fs, target)

    def write_file(self, name: str, payload: bytes | str) -> str:
        """Write a non-record artefact (report.html, evidence.json) into the run folder."""
        target = self.path(_check_name("file name", name))
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        _write_bytes(self.fs, target, data)
        return _display(self.fs, target)

    def read(self, stage: str, name: str) -> dict[str, Any] | None:
        """The record's envelope, or None when the task wrote none."""
        return _read_json(self.fs, self.record_path(stage, name))

    def records(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every record of the pipeline STAGES: {stage: {name: envelope}}, stages in pipeline order.

        A file that is not valid JSON is reported as a record with an ``error`` instead of failing:
        the report of a broken run must still render.
        """
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for stage in STAGES:
            folder = self.path(stage)
            try:
                files = sorted(self.fs.ls(folder, detail=False))
            except FileNotFoundError:
                continue
            for file in files:
                base = str(file).rstrip("/").rsplit("/", 1)[-1]
                if not base.endswith(".json") or base.startswith(".tmp-"):
                    continue
                name = base.removesuffix(".json")
                try:
                    record = _read_json(self.fs, str(file))
                except ValueError as exc:
                    record = {"stage": stage, "name": name, "passed": False, "error": str(exc), "data": {}}
                if record is not None:
                    out.setdefault(stage, {})[name] = record
        return out


# -- wave-level markers ---------------------------------------------------------------------------


def wave_marker_path(root: str, wave: str, marker: str, fs: fsspec.AbstractFileSystem | None = None) -> str:
    """Path (plain on local disk, URL elsewhere) of a wave-level marker file."""
    fs_, path = _marker_fs_path(root, wave, marker, fs)
    return _display(fs_, path)


def _marker_fs_path(
    root: str, wave: str, marker: str, fs: fsspec.AbstractFileSystem | None
) -> tuple[fsspec.AbstractFileSystem, str]:
    if marker not in MARKERS:
        raise ValueError(f"marker {marker!r} is not one of {', '.join(MARKERS)}")
    fs, base = _resolve(root, fs)
    return fs, f"{base}/waves/{_check_name('wave', wave)}/{marker}.json"


def read_marker(
    root: str, wave: str, marker: str, fs: fsspec.AbstractFileSystem | None = None
) -> dict[str, Any] | None:
    """The marker's JSON, or None when it is not set."""
    fs, path = _marker_fs_path(root, wave, marker, fs)
    return _read_json(fs, path)


def write_marker(
    root: str, wave: str, marker: str, payload: dict[str, Any], fs: fsspec.AbstractFileSystem | None = None
) -> str:
    """Set a marker (atomically); return its path or URL."""
    fs, path = _marker_fs_path(root, wave, marker, fs)
    body = json.dumps({"wave": wave, "marker": marker, **_to_data(payload)}, indent=2)
    _write_bytes(fs, path, body.encode("utf-8"))
    return _display(fs, path)


def clear_marker(root: str, wave: str, marker: str, fs: fsspec.AbstractFileSystem | None = None) -> bool:
    """Remove a marker; True when one was there."""
    fs, path = _marker_fs_path(root, wave, marker, fs)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    return True


def mark_accepted(
    root: str, wave: str, run_id: str, summary: dict[str, Any], fs: fsspec.AbstractFileSystem | None = None
) -> str:
    """Record that the wave passed acceptance in run_id, with the measured figures."""
    payload = {"run_id": run_id, "accepted_at": _now(), "measured": summary}
    return write_marker(root, wave, "accepted", payload, fs)


def is_accepted(root: str, wave: str, fs: fsspec.AbstractFileSystem | None = None) -> dict[str, Any] | None:
    """The acceptance marker of the wave (run_id, accepted_at, measured), or None."""
    return read_marker(root, wave, "accepted", fs)


def freeze_marker_path(root: str, wave: str, fs: fsspec.AbstractFileSystem | None = None) -> str:
    """Where the frozen marker lives: a plain local path for a local root, so writers can poll it."""
    return wave_marker_path(root, wave, "frozen", fs)


def freeze_writes(root: str, wave: str, run_id: str, fs: fsspec.AbstractFileSystem | None = None) -> str:
    """Tell writers of the wave's mutable datasets to stop; return the marker path."""
    payload = {"run_id": run_id, "frozen_at": _now(), "token": uuid.uuid4().hex}
    return write_marker(root, wave, "frozen", payload, fs)


def unfreeze_writes(root: str, wave: str, fs: fsspec.AbstractFileSystem | None = None) -> bool:
    """Let writers resume; True when writes were frozen."""
    return clear_marker(root, wave, "frozen", fs)


def is_frozen(root: str, wave: str, fs: fsspec.AbstractFileSystem | None = None) -> bool:
    """Whether writes of the wave are frozen."""
    fs_, path = _marker_fs_path(root, wave, "frozen", fs)
    return bool(fs_.exists(path))
