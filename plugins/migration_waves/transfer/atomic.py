"""Atomic placement: a file appears under its final name only when it is complete.

Two ways, chosen by the filesystem:
- "rename" (local disk, memory, sftp, anything with a cheap rename): write `.<name>.mwpart-<uuid>`
  in the same folder, then rename over the final name. On failure the temp file is removed.
- "direct" (object stores: s3, gs, azure): the object only becomes visible when the upload
  completes on close, so write the final key and, on failure, abort the upload instead of
  closing (closing would publish the partial bytes).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile

from migration_waves.transfer.listing import TEMP_MARKER

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fsspec import AbstractFileSystem

OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "s3n", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss"})

Placement = Literal["rename", "direct"]


def placement(fs: AbstractFileSystem) -> Placement:
    """How `staged_write` makes a write atomic on this filesystem."""
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return "direct" if protocols & OBJECT_STORE_PROTOCOLS else "rename"


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TOKEN = uuid.uuid4().hex[:6]  # this process; a counter tells its temp files apart
_COUNTER = itertools.count()
NAME_MAX = 255  # bytes in one path component on Linux filesystems


def temp_name(path: str) -> str:
    """A hidden sibling of `path` that list_files ignores, unique across processes and threads.

    `.<name>.mwpart-<host>-<pid>-<token><n>`: the host and process that write it, so a later run
    on the same host can tell a dead run's leftover (see `stale_temp`) from a live one's file. A
    long name is shortened in the temp name only, so the temp name fits NAME_MAX as the final one does.
    """
    cut = path.rfind("/") + 1
    suffix = f"{TEMP_MARKER}{_HOST}-{os.getpid():x}-{_TOKEN}{next(_COUNTER):x}"
    name = os.fsencode(path[cut:])
    room = NAME_MAX - 1 - len(suffix.encode())
    return f"{path[:cut]}.{os.fsdecode(name[:room])}{suffix}"


def stale_temp(name: str) -> bool:
    """Whether temp file `name` was left by a process of this host that is no longer running."""
    tag = name.rsplit(TEMP_MARKER, 1)[-1].split("-")
    if len(tag) < 3 or tag[0] != _HOST:
        return False  # another host's, or an older format: cannot tell, leave it
    try:
        pid = int(tag[1], 16)
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def supports_mtime(fs: AbstractFileSystem) -> bool:
    """Whether the engine can set a file's mtime on this filesystem (local disk only)."""
    return isinstance(fs, LocalFileSystem)


def _abort_upload(f: Any) -> None:
    # discard() aborts a started multipart upload (s3fs, gcsfs); marking the file closed stops
    # AbstractBufferedFile.close()/__del__ from flushing the buffered tail as a final object.
    with contextlib.suppress(Exception):
        f.discard()
    if isinstance(f, AbstractBufferedFile):
        f.closed = True
    else:
        with contextlib.suppress(Exception):
            f.close()


def _rename(fs: AbstractFileSystem, tmp: str, path: str) -> None:
    if isinstance(fs, LocalFileSystem):
        # os.replace is atomic within one folder and overwrites an older copy in one step
        os.replace(fs._strip_protocol(tmp), fs._strip_protocol(path))
    else:
        fs.mv(tmp, path)


@contextlib.contextmanager
def staged_write(fs: AbstractFileSystem, path: str, *, mtime: float | None = None) -> Iterator[Any]:
    """Yield a binary file to write; `path` appears only if the block finishes without an exception.

    `mtime` (epoch seconds) is set on the file before it is placed, where the filesystem allows it.
    """
    if placement(fs) == "direct":
        f = fs.open(path, "wb")
        try:
            yield f
        except BaseException:
            _abort_upload(f)
            raise
        f.close()
        return

    tmp = temp_name(path)
    parent = fs._parent(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    f = fs.open(tmp, "wb")
    try:
        yield f
        f.close()
        if mtime is not None and supports_mtime(fs):
            ns = int(mtime * 1_000_000_000)
            os.utime(fs._strip_protocol(tmp), ns=(ns, ns))
        _rename(fs, tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            f.close()
        with contextlib.suppress(Exception):
            if fs.exists(tmp):
                fs.rm_file(tmp)
        raise
