"""Resume journal and verified manifests of one source -> target pair, kept in a state store.

Layout under the state URL (any fsspec URL: a local folder, s3://, gs://):

    pairs/<key>/pair.json              source, target (what the key stands for), algorithm, when the
                                       last verified run listed the source, rows in the log
    pairs/<key>/verified.parquet       the verified target manifest (source mtimes) as of its
                                       last compaction
    pairs/<key>/verified-log/<t>.json  what each verified run since changed: rows placed, paths
                                       deleted (columns as JSON); base + log = verified manifest
    pairs/<key>/journal/<run>.jsonl    one line per file placed by a run not yet verified

The log keeps an incremental sync from rewriting (and even loading) a 100,000-row Parquet file to
record 1,000 changed rows: a run appends one small segment, and the log is folded into the Parquet
base once it holds a quarter of the base's rows (at least COMPACT_MIN_ROWS), or whenever a run has
the full manifest at hand anyway (object-store targets, --manifest-out).

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

from migration_waves.transfer.manifest import Manifest, ManifestEntry, Row

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fsspec import AbstractFileSystem

SEGMENT_EVERY_S = 1.0  # object-store state: flush journal lines at least this often
COMPACT_MIN_ROWS = 5_000  # fold the verified log into the Parquet base from this many rows


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
        try:
            self.fs, root = fsspec.core.url_to_fs(state_url)
        except (ValueError, ImportError) as exc:
            from migration_waves.transfer.errors import TransferError

            raise TransferError(
                f"state store {state_url!r}: {exc}; use a local path or a file://, s3:// or gs:// URL"
            ) from None
        self.root = root.rstrip("/")
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
        self._info: dict[str, Any] | None = None
        self._lock_fd: int | None = None

    @property
    def journal_dir(self) -> str:
        return f"{self.dir}/journal"

    @property
    def verified_path(self) -> str:
        return f"{self.dir}/verified.parquet"

    # -- reading ----------------------------------------------------------------------------

    @property
    def log_dir(self) -> str:
        return f"{self.dir}/verified-log"

    def info(self) -> dict[str, Any]:
        """pair.json: source, target, algorithm, listed_at, base_rows, log_rows ({} before any run)."""
        if self._info is None:
            try:
                self._info = json.loads(self.fs.cat_file(f"{self.dir}/pair.json"))
            except FileNotFoundError:
                self._info = {}
        return self._info

    def listed_at(self, algorithm: str) -> float | None:
        """When the last verified run with `algorithm` listed the source (epoch s), if known."""
        info = self.info()
        return info.get("listed_at") if info.get("algorithm") == algorithm else None

    def verified(self) -> Manifest | None:
        """The manifest of the last verified run (Parquet base with the log applied), or None."""
        base = (
            Manifest.read_parquet(self.fs, self.verified_path) if self.fs.exists(self.verified_path) else None
        )
        segments = self._log_segments()
        if not segments:
            return base
        rows: dict[str, Row] = base.index() if base is not None else {}
        algorithm = base.algorithm if base is not None else self.info().get("algorithm", "")
        for name in segments:
            seg = json.loads(self.fs.cat_file(name))
            if seg.get("algorithm") != algorithm and base is not None:
                continue
            algorithm = seg["algorithm"]
            for path in seg["deleted"]:
                rows.pop(path, None)
            rows.update(
                (p, (p, size, mtime, digest))
                for p, size, mtime, digest in zip(
                    seg["paths"], seg["sizes"], seg["mtimes"], seg["digests"], strict=True
                )
            )
        return Manifest.from_rows(self.target, algorithm, rows.values())

    def _log_segments(self) -> list[str]:
        try:
            return sorted(n for n in self.fs.ls(self.log_dir, detail=False) if n.endswith(".json"))
        except FileNotFoundError:
            return []

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

    def unverified(self, algorithm: str) -> dict[str, ManifestEntry]:
        """Files placed by earlier runs that were never read back: {path: entry} (journal only)."""
        return {e.path: e for e in self.journaled() if e.algorithm == algorithm}

    def previous(self, algorithm: str) -> Manifest | None:
        """The reference for planning: the verified manifest overlaid with journaled entries."""
        verified = self.verified()
        rows: dict[str, Row] = {}
        if verified is not None and verified.algorithm == algorithm:
            rows = verified.index()
        for e in self.journaled():
            if e.algorithm == algorithm:
                rows[e.path] = (e.path, e.size, e.mtime, e.digest)
        if not rows:
            return None
        return Manifest.from_rows(self.target, algorithm, rows.values())

    def lock(self) -> None:
        """Hold this pair's lock until `unlock` (or the process ends): one run per source/target.

        A local state store only (flock); raises TransferError when another run holds it.
        """
        if not self._local or self._lock_fd is not None:
            return
        import fcntl

        from migration_waves.transfer.errors import TransferError

        self.fs.makedirs(self.dir, exist_ok=True)
        path = self.fs._strip_protocol(f"{self.dir}/lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TransferError(
                f"another migration-waves run is copying {self.source} to {self.target} (lock {path}); "
                "wait for it to finish, or stop it"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the pair's lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def recopy(self) -> list[str]:
        """Paths a run read back as different from what it sent: the next run sends them again."""
        try:
            return list(json.loads(self.fs.cat_file(f"{self.dir}/recopy.json")))
        except FileNotFoundError:
            return []

    def set_recopy(self, paths: list[str]) -> None:
        """Record (or, with [], clear) the paths the next run must send again."""
        from migration_waves.transfer.atomic import staged_write

        name = f"{self.dir}/recopy.json"
        if not paths:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(name)
            return
        self.fs.makedirs(self.dir, exist_ok=True)
        with staged_write(self.fs, name) as out:
            out.write(json.dumps(sorted(paths)).encode())

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
        row = {
            "path": entry.path,
            "size": entry.size,
            "mtime": entry.mtime,
            "digest": entry.digest,
            "algorithm": entry.algorithm,
        }
        line = json.dumps(row, separators=(",", ":")) + "\n"
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

    def commit(
        self,
        changed: Manifest,
        deleted: list[str],
        *,
        complete: bool = False,
        listed_at: float | None = None,
    ) -> str:
        """After a verified run: record what it placed and deleted, drop the journals.

        `changed` holds the rows this run vouches for: every file in scope when `complete` (the run
        built the whole target manifest), else only those it placed. An incomplete record goes to
        the log, unless the log has grown enough to fold into the Parquet base. Entries of paths
        outside this run (other include/exclude) are kept; deleted paths go. Returns the base path.
        """
        self.close()
        info = dict(self.info())
        algorithm = changed.algorithm
        log_rows = int(info.get("log_rows", 0)) if info.get("algorithm") == algorithm else 0
        base_rows = int(info.get("base_rows", 0)) if info.get("algorithm") == algorithm else 0
        pending = log_rows + len(changed) + len(deleted)
        if complete or pending >= max(COMPACT_MIN_ROWS, base_rows // 4):
            merged: dict[str, Row] = {}
            old = self.verified()
            if old is not None and old.algorithm == algorithm:
                merged = old.index()
            for path in deleted:
                merged.pop(path, None)
            merged.update(changed.index())
            self.fs.makedirs(self.dir, exist_ok=True)
            base = Manifest.from_rows(self.target, algorithm, merged.values())
            base.listed_at = listed_at
            base.write_parquet(self.fs, self.verified_path)
            for name in self._log_segments():
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(name)
            info.update(base_rows=len(base), log_rows=0)
        else:
            from migration_waves.transfer.atomic import staged_write

            segment = {
                "algorithm": algorithm,
                "paths": changed.paths,
                "sizes": changed.sizes,
                "mtimes": changed.mtimes,
                "digests": changed.digests,
                "deleted": list(deleted),
            }
            self.fs.makedirs(self.log_dir, exist_ok=True)
            name = f"{self.log_dir}/{time.time_ns():020d}-{self.run_id}.json"
            with staged_write(self.fs, name) as out:
                out.write(json.dumps(segment, separators=(",", ":")).encode("utf-8", "surrogatepass"))
            info.update(log_rows=pending, base_rows=base_rows)
        info.update(source=self.source, target=self.target, algorithm=algorithm, listed_at=listed_at)
        self._write_info(info)
        own = [n for n in self._own_journals()]
        for name in {*self.loaded_journals, *own}:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(name)
        return self.verified_path

    def _write_info(self, info: dict[str, Any]) -> None:
        from migration_waves.transfer.atomic import staged_write

        with staged_write(self.fs, f"{self.dir}/pair.json") as out:
            out.write(json.dumps(info).encode("utf-8", "surrogatepass"))
        self._info = info

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
