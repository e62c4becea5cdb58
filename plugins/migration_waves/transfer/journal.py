"""Resume journal and verified manifests of one source -> target pair, kept in a state store.

Layout under the state URL (any fsspec URL: a local folder, s3://, gs://):

    pairs/<key>/pair.json              source, target (what the key stands for)
    pairs/<key>/verified.parquet       target manifest after the last verified run (source mtimes)
    pairs/<key>/journal/<run>.jsonl    one line per file placed by a run not yet verified

A file is journaled right after it is placed under its final name, so after kill -9 at any
point a re-run finds every completed file either in the journal or (local targets) by the
source mtime the engine set on it, and never sends it again. On a local state store each line is
one O_APPEND write (it survives kill -9 of the process); on an object store the lines go out in
small segment objects every second, so a kill loses at most the last second of lines, and those
files are then read back at the target instead of being trusted. A torn last line is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from fsspec.implementations.local import LocalFileSystem

from migration_waves.transfer.manifest import Manifest, ManifestEntry

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fsspec import AbstractFileSystem

SEGMENT_EVERY_S = 1.0  # object-store state: flush journal lines at least this often


def pair_key(source: str, target: str) -> str:
    """Stable key of a source/target URL pair."""
    return hashlib.sha256(f"{source}\0{target}".encode("utf-8", "surrogateescape")).hexdigest()[:20]


def default_state_url() -> str:
    """$MIGRATION_WAVES_STATE, else $XDG_STATE_HOME/migration-waves, else ~/.local/state/migration-waves."""
    if env := os.environ.get("MIGRATION_WAVES_STATE"):
        return env
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "migration-waves")


class Journal:
    """Journal and verified manifest of one pair; `record` is thread-safe."""

    def __init__(self, state_url: str, source: str, target: str) -> None:
        import fsspec

        self.fs: AbstractFileSystem
        self.fs, root = fsspec.core.url_to_fs(state_url)
        self.source, self.target = source, target
        self.dir = f"{root.rstrip('/')}/pairs/{pair_key(source, target)}"
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._local = isinstance(self.fs, LocalFileSystem)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._buffer: list[str] = []
        self._segment = 0
        self._last_flush = time.monotonic()
        self.loaded_journals: list[str] = []

    @property
    def journal_dir(self) -> str:
        return f"{self.dir}/journal"

    @property
    def verified_path(self) -> str:
        return f"{self.dir}/verified.parquet"

    # -- reading ----------------------------------------------------------------------------

    def verified(self) -> Manifest | None:
        """The manifest of the last verified run, or None."""
        if not self.fs.exists(self.verified_path):
            return None
        return Manifest.read_parquet(self.fs, self.verified_path)

    def journaled(self) -> list[ManifestEntry]:
        """Entries of runs not yet verified (oldest first; a torn last line is skipped)."""
        try:
            names = sorted(self.fs.find(self.journal_dir))
        except FileNotFoundError:
            return []
        self.loaded_journals = [n for n in names if n.endswith(".jsonl")]
        out: list[ManifestEntry] = []
        for name in self.loaded_journals:
            with self.fs.open(name, "rb") as f:
                data = f.read()
            for line in data.split(b"\n"):
                if not line.strip():
                    continue
                try:
                    out.append(ManifestEntry(**json.loads(line)))
                except (ValueError, TypeError):
                    continue  # the line being written when the process was killed
        return out

    def previous(self, algorithm: str) -> tuple[Manifest | None, set[str]]:
        """The reference for planning: verified manifest overlaid with journaled entries.

        Returns (manifest or None, paths known only from the journal: placed, not yet read back).
        """
        verified = self.verified()
        entries: dict[str, ManifestEntry] = {}
        if verified is not None and verified.algorithm == algorithm:
            entries = verified.by_path()
        unverified: set[str] = set()
        for e in self.journaled():
            if e.algorithm == algorithm:
                entries[e.path] = e
                unverified.add(e.path)
        if not entries:
            return None, set()
        manifest = Manifest(
            root=self.target, algorithm=algorithm, entries=sorted(entries.values(), key=_path)
        )
        return manifest, unverified

    # -- writing ----------------------------------------------------------------------------

    def _open(self) -> None:
        self.fs.makedirs(self.journal_dir, exist_ok=True)
        pair = f"{self.dir}/pair.json"
        if not self.fs.exists(pair):
            self.fs.pipe_file(pair, json.dumps({"source": self.source, "target": self.target}).encode())
        if self._local:
            path = self.fs._strip_protocol(f"{self.journal_dir}/{self.run_id}.jsonl")
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(self, entry: ManifestEntry) -> None:
        """Journal one placed file (called by the engine right after placement)."""
        line = json.dumps(entry.model_dump(), separators=(",", ":")) + "\n"
        with self._lock:
            if self._fd is None and not self._buffer and self._segment == 0:
                self._open()
            if self._fd is not None:
                # one write() of a whole line: the kernel has it even if we are killed next
                os.write(self._fd, line.encode())
                return
            self._buffer.append(line)
            if time.monotonic() - self._last_flush >= SEGMENT_EVERY_S:
                self._flush_segment()

    def _flush_segment(self) -> None:
        from migration_waves.transfer.atomic import staged_write

        if not self._buffer:
            return
        name = f"{self.journal_dir}/{self.run_id}-{self._segment:06d}.jsonl"
        with staged_write(self.fs, name) as out:
            out.write("".join(self._buffer).encode())
        self._buffer.clear()
        self._segment += 1
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush what is buffered and make it durable."""
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
            self._flush_segment()

    def commit(self, manifest: Manifest, deleted: list[str]) -> str:
        """After a verified run: merge `manifest` into the verified manifest, drop the journals.

        Entries of paths outside this run (other include/exclude) are kept; deleted paths go.
        """
        self.close()
        merged: dict[str, ManifestEntry] = {}
        old = self.verified()
        if old is not None and old.algorithm == manifest.algorithm:
            merged = old.by_path()
        for path in deleted:
            merged.pop(path, None)
        merged.update(manifest.by_path())
        self.fs.makedirs(self.dir, exist_ok=True)
        Manifest(
            root=self.target, algorithm=manifest.algorithm, entries=sorted(merged.values(), key=_path)
        ).write_parquet(self.fs, self.verified_path)
        own = [n for n in self._own_journals()]
        for name in {*self.loaded_journals, *own}:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(name)
        return self.verified_path

    def _own_journals(self) -> list[str]:
        try:
            return [n for n in self.fs.find(self.journal_dir) if self.run_id in n]
        except FileNotFoundError:
            return []


def _path(e: ManifestEntry) -> str:
    return e.path


def state_summary(journal: Journal) -> dict[str, Any]:
    """Where the pair's state lives (for --json output)."""
    return {"state_dir": journal.fs.unstrip_protocol(journal.dir), "run_id": journal.run_id}
