"""The checkpoint folder convention shared by training workloads and interruption drills.

A training job writes its checkpoints into one folder (``--checkpoint-dir``):

* each checkpoint is an entry named ``step-<digits>`` (``step-000010``), a folder or a single
  file (``step-000010.npz``); the number is the optimizer step the checkpoint holds;
* an entry appears under that name only when complete: the job writes it under a temporary
  name that does not match the pattern (``.tmp-...``) and renames it, so a kill -9 never
  leaves a complete-looking torn checkpoint;
* a folder checkpoint may hold ``manifest.json`` listing its payload files with their size
  and sha256 (``{"format": ..., "step": N, "files": {"state.npz": {"bytes": B, "sha256": H}}}``).
  When present, it is checked: a missing file or a digest mismatch makes the checkpoint invalid.

Other files in the folder (``final.npz``, logs) are ignored by this convention.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^step-(\d+)(?:\.[A-Za-z0-9]+)*$")
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "migration-waves-checkpoint/1"


@dataclass(frozen=True)
class CheckpointEntry:
    """One ``step-N`` entry of a checkpoint folder, as seen on disk."""

    path: Path
    step: int
    mtime: float
    # Changes when the entry is replaced under the same name (a job that starts over).
    identity: tuple[int, int]


def scan_checkpoints(checkpoint_dir: Path) -> list[CheckpointEntry]:
    """Checkpoint entries under ``checkpoint_dir``, oldest step first; empty if the folder is missing."""
    entries: list[CheckpointEntry] = []
    try:
        children = list(os.scandir(checkpoint_dir))
    except FileNotFoundError:
        return entries
    for child in children:
        match = CHECKPOINT_RE.match(child.name)
        if not match:
            continue
        try:
            st = child.stat()
        except FileNotFoundError:  # replaced between listing and stat
            continue
        entries.append(
            CheckpointEntry(
                path=Path(child.path),
                step=int(match.group(1)),
                mtime=st.st_mtime,
                identity=(st.st_ino, st.st_mtime_ns),
            )
        )
    entries.sort(key=lambda e: (e.step, e.path.name))
    return entries


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_checkpoint(path: Path) -> str | None:
    """Return None when the checkpoint at ``path`` is complete and intact, else why it is not."""
    if not path.exists():
        return f"{path.name} does not exist"
    if path.is_file():
        return None if path.stat().st_size > 0 else f"{path.name} is empty"
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        return f"{path.name} has no {MANIFEST_NAME} (incomplete or torn)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, dict[str, object]] = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{path.name}/{MANIFEST_NAME} is unreadable: {exc}"
    match = CHECKPOINT_RE.match(path.name)
    if match and manifest.get("step") is not None and int(manifest["step"]) != int(match.group(1)):
        return (
            f"{path.name}/{MANIFEST_NAME} says step {manifest['step']}, the folder name says {match.group(1)}"
        )
    if not files:
        return f"{path.name}/{MANIFEST_NAME} lists no payload files"
    for name, meta in files.items():
        file_path = path / name
        if not file_path.is_file():
            return f"{path.name}/{name} is listed in the manifest but missing"
        size = file_path.stat().st_size
        if size != meta.get("bytes"):
            return f"{path.name}/{name} has {size} bytes, the manifest says {meta.get('bytes')}"
        actual = sha256_file(file_path)
        if actual != meta.get("sha256"):
            want = str(meta.get("sha256"))[:12]
            return f"{path.name}/{name} sha256 {actual[:12]}… does not match the manifest's {want}…"
    return None


def _fsync_dir(path: Path) -> None:
    # Makes a rename durable; not all platforms allow opening a folder, hence the guard.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(
    checkpoint_dir: Path, step: int, files: dict[str, bytes], meta: dict | None = None
) -> Path:
    """Write ``step-NNNNNN/`` atomically: payload files, then the manifest, then one rename.

    A checkpoint already present under that name (a job that started over) is replaced.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    final = checkpoint_dir / name
    tmp = checkpoint_dir / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    manifest_files: dict[str, dict[str, object]] = {}
    for file_name, payload in files.items():
        with open(tmp / file_name, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        manifest_files[file_name] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    manifest = {
        "format": MANIFEST_FORMAT,
        "step": step,
        "created_at": time.time(),
        "files": manifest_files,
        "meta": meta or {},
    }
    with open(tmp / MANIFEST_NAME, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    if final.exists():
        # rename() cannot replace a non-empty folder: move the old one aside first.
        trash = checkpoint_dir / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(checkpoint_dir)
    return final


def write_file_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary sibling and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
