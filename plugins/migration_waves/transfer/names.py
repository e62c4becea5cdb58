"""Names the target cannot hold apart, found from the listing before any byte moves.

What a target can tell apart is a capability of its backend:
- object stores (s3, gs): keys are case-sensitive, byte-exact UTF-8, no normalisation;
- local disk: depends on the filesystem (ext4 is case- and normalisation-sensitive, APFS/NTFS
  usually are not), so it is probed on the target itself.
Some collisions hold on every target: empty, `.` or `..` path components (doubled slashes from
object-store keys). A file `a` beside a file `a/b` collides on a disk (a name cannot be a file and
a folder) but not on an object store, where `a` is a key and `a/` a prefix.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sys
import tempfile
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fsspec.implementations.local import LocalFileSystem

from migration_waves.transfer.atomic import placement

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fsspec import AbstractFileSystem

NAME_MAX = 255  # bytes per path component on common local filesystems


@dataclass(frozen=True)
class Capabilities:
    """What a target backend can hold apart."""

    case_sensitive: bool = True
    normalisation_sensitive: bool = True  # NFC and NFD spellings are different names
    utf8_only: bool = False  # object-store keys are UTF-8: undecodable bytes cannot be stored
    name_max: int | None = None  # longest path component in bytes, where the backend limits it
    file_and_folder: bool = False  # `a` and `a/b` side by side (object stores: a key and a prefix)
    backslash_is_slash: bool = False  # the store files `a\b` as `a/b` (SeaweedFS, some S3 gateways)


def _probe_dir(fs: AbstractFileSystem, root: str) -> str | None:
    """The deepest existing local folder at or above `root`."""
    path = os.path.abspath(fs._strip_protocol(root))
    while path and not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path or None


def _probe_local(folder: str) -> tuple[bool, bool]:
    """(case_sensitive, normalisation_sensitive) of the filesystem holding `folder`, by experiment."""
    nfc, nfd = unicodedata.normalize("NFC", "é"), unicodedata.normalize("NFD", "é")
    probe = tempfile.mkdtemp(prefix=".mwprobe-", dir=folder)
    try:
        with open(os.path.join(probe, "a" + nfc), "wb"):
            pass
        case = not os.path.exists(os.path.join(probe, "A" + nfc))
        norm = not os.path.exists(os.path.join(probe, "a" + nfd))
        return case, norm
    finally:
        for name in os.listdir(probe):
            os.unlink(os.path.join(probe, name))
        os.rmdir(probe)


def capabilities(fs: AbstractFileSystem, root: str, *, backslash: bool = False) -> Capabilities:
    """The target's capabilities: object stores by protocol, local disk by a probe next to `root`.

    The probe creates and removes a hidden folder in the deepest existing folder above `root`;
    where that is not writable, the platform default is assumed (macOS and Windows insensitive).
    `backslash` (some source path holds a `\\`): an object store is probed for whether it keeps
    the character (AWS S3 and GCS do; SeaweedFS files `a\\b` as `a/b`).
    """
    if placement(fs) == "direct":
        return Capabilities(
            case_sensitive=True,
            normalisation_sensitive=True,
            utf8_only=True,
            name_max=1024,
            file_and_folder=True,
            backslash_is_slash=backslash and not _keeps_backslash(fs, root),
        )
    if isinstance(fs, LocalFileSystem):
        folder = _probe_dir(fs, root)
        default = not sys.platform.startswith(("darwin", "win"))
        case, norm = default, default
        if folder is not None:
            with contextlib.suppress(OSError):
                case, norm = _probe_local(folder)
        return Capabilities(case_sensitive=case, normalisation_sensitive=norm, name_max=NAME_MAX)
    return Capabilities()


def _keeps_backslash(fs: AbstractFileSystem, root: str) -> bool:
    """Write a probe key with a backslash under `root` and see whether it reads back as a slash."""
    base = f"{root.rstrip('/')}/.mwprobe-{uuid.uuid4().hex[:12]}"
    probe, alias = base + "\\x", base + "/x"
    try:
        fs.pipe_file(probe, b"")
        fs.invalidate_cache(base)
        aliased = bool(fs.exists(alias))
    except Exception:  # cannot tell (no write access yet, an outage): the copy reports its own errors
        return True
    finally:
        for key in (probe, alias):
            with contextlib.suppress(Exception):
                fs.rm_file(key)
    return not aliased


def target_key(path: str, caps: Capabilities) -> str:
    """The name the target actually stores for `path`: two paths with one key collide."""
    key = path
    if not caps.normalisation_sensitive:
        key = unicodedata.normalize("NFC", key)
    if not caps.case_sensitive:
        key = key.casefold()
    return key


def _undecodable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes from a non-UTF-8 local name
        return True
    return False


def _bad_component(p: str) -> bool:
    # an empty, "." or ".." component, found with string tests instead of a split per path
    return (
        p in ("", ".", "..")
        or p.startswith(("/", "./", "../"))
        or p.endswith(("/", "/.", "/.."))
        or "//" in p
        or "/./" in p
        or "/../" in p
    )


def find_collisions(
    paths: Iterable[str], caps: Capabilities, *, held: Collection[str] = ()
) -> list[tuple[str, list[str]]]:
    """Groups of relative paths the target cannot hold apart, each with the reason, sorted.

    Checks: twins under the target's case/normalisation folding, a file that is also a folder
    of another path (not on object stores), empty/`.`/`..` components, undecodable names on UTF-8 stores, and
    components longer than the target allows. `held` are paths the target already holds under
    exactly these names: on a target that folds nothing they need no check of their own (an
    incremental sync checks only what is new), though new paths are still checked against them.
    """
    found: list[tuple[str, list[str]]] = []
    folds = not (caps.case_sensitive and caps.normalisation_sensitive)
    if not folds and held:
        unique = set(paths)
        todo = sorted(p for p in unique if p not in held)
        if not todo:
            return []  # every path is already held by the target under exactly its name
        all_paths = sorted(unique)
    else:
        all_paths = sorted(set(paths))
        todo = all_paths
    for p in todo:
        if caps.backslash_is_slash and "\\" in p:
            found.append(("the target stores '\\' as '/' (a different path than the source's)", [p]))
            continue
        if _bad_component(p):
            found.append(("empty, '.' or '..' path component (doubled or trailing slash)", [p]))
        if p.isascii():
            if caps.name_max is None or len(p) <= caps.name_max:
                continue  # every component is shorter than the whole path
        elif caps.utf8_only and _undecodable(p):
            found.append(("name is not valid UTF-8 and the target stores UTF-8 keys", [p]))
            continue
        if caps.name_max is not None and any(
            len(part.encode("utf-8", "surrogateescape")) > caps.name_max for part in p.split("/")
        ):
            found.append((f"a path component is longer than {caps.name_max} bytes", [p]))
    if folds:
        by_key: dict[str, list[str]] = defaultdict(list)
        for p in all_paths:
            by_key[target_key(p, caps)].append(p)
        for group in by_key.values():
            if len(group) > 1:
                why = []
                if len({unicodedata.normalize("NFC", g) for g in group}) < len(group):
                    why.append("Unicode normalisation (NFC/NFD) twins")
                if len({g.casefold() for g in group}) < len(group):
                    why.append("case-only twins")
                found.append((" and ".join(why) + " on a target that folds them", group))
        keys = sorted((target_key(p, caps), p) for p in all_paths)
    else:
        keys = [(p, p) for p in all_paths]
    if not caps.file_and_folder:
        found.extend(_file_and_folder(keys, {target_key(p, caps) for p in todo} if folds else set(todo)))
    found.sort(key=lambda row: (row[1], row[0]))
    return found


def _file_and_folder(keys: list[tuple[str, str]], check: set[str]) -> list[tuple[str, list[str]]]:
    """A file `a` and a file `a/b` (`a` would be a file and a folder at once), among `check`.

    `keys` are (target key, path) sorted by key: the paths under folder `a` follow `a/` directly,
    so one binary search per checked key finds them.
    """
    out: list[tuple[str, list[str]]] = []
    names = [k for k, _ in keys]
    seen: set[tuple[str, str]] = set()
    for key, p in keys:
        if key not in check:
            continue
        # `key` as a folder of a later path
        at = bisect.bisect_left(names, key + "/")
        if at < len(names) and names[at].startswith(key + "/"):
            seen.add((p, keys[at][1]))
        # a parent of `key` that is itself a file
        cut = key.find("/")
        while cut != -1:
            i = bisect.bisect_left(names, key[:cut])
            if i < len(names) and names[i] == key[:cut]:
                seen.add((keys[i][1], p))
                break
            cut = key.find("/", cut + 1)
    for parent, child in sorted(seen):
        out.append(("a file and a folder with the same name", [parent, child]))
    return out
