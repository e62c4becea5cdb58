"""Local listings: what a folder holds, as rows, without importing fsspec or pydantic.

Kept light on purpose: the CLI starts listing the source and the target in two forked children
(as rsync lists its sender and receiver sides in two processes) before it imports the engine, so
the listings run while the interpreter loads the rest.
"""

from __future__ import annotations

import array
import fnmatch
import marshal
import os
import posixpath
import re
import threading
from collections.abc import Callable, Sequence
from stat import S_ISDIR, S_ISREG
from typing import Any, Literal

from migration_waves.transfer.errors import TransferError

TEMP_MARKER = ".mwpart-"  # our own in-flight files are named .<name>.mwpart-<token>
SYMLINK_MARK = " (symlink)"  # how a skipped symlink is named in a `skipped` list: "<path> (symlink)"
TEMP_MARK = f" (named like an in-flight temp file: .<name>{TEMP_MARKER}<id>)"
SPECIAL_MARK = " (not a regular file: a fifo, socket or device)"
TARGET_MARK = " (the target itself, reached through a symlink: never copied into itself)"

Listing = list[tuple[str, int, float]]
LinkListing = list[tuple[str, str, float]]  # symlinks: (relative path, link text, the link's own mtime)
LinkPolicy = Literal["skip", "follow", "copy"]
LINK_POLICIES: tuple[str, ...] = ("skip", "follow", "copy")

# scandir on an open folder: each entry is then stat'ed relative to it (where the OS allows)
_SCANDIR_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def folder_key(path: str) -> frozenset[tuple[int, int]]:
    """{(device, inode)} of a local folder, for `avoid`; empty when it does not exist (yet)."""
    try:
        st = os.stat(path)
    except OSError:
        return frozenset()
    return frozenset({(st.st_dev, st.st_ino)}) if S_ISDIR(st.st_mode) else frozenset()


def is_temp_name(relpath: str) -> bool:
    """True for our own in-flight files (`.<name>.mwpart-<uuid>`)."""
    if TEMP_MARKER not in relpath:  # the common case, without splitting the path
        return False
    base = posixpath.basename(relpath)
    return base.startswith(".") and TEMP_MARKER in base


#: A pattern that matches exactly one path: no wildcard, or each one escaped as glob.escape does
#: (`[*]`, `[?]`, `[[]`); fnmatch reads those as the literal character.
_LITERAL_PATTERN = re.compile(r"(?:[^*?\[]|\[[*?\[]\])*")
_ESCAPED_CHAR = re.compile(r"\[([*?\[])\]")


def _split_patterns(patterns: Sequence[str]) -> tuple[frozenset[str], list[str]]:
    literal: set[str] = set()
    wild: list[str] = []
    for pat in patterns:
        if _LITERAL_PATTERN.fullmatch(pat):
            literal.add(_ESCAPED_CHAR.sub(r"\1", pat))
        else:
            wild.append(pat)
    return frozenset(literal), wild


def selector(include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Callable[[str], bool]:
    """include/exclude fnmatch patterns as one predicate on a relative path (same answers as fnmatch).

    Exact paths (`glob.escape(path)`, as a shard of a dataset selects its files) are looked up in
    a set, so selecting 100,000 named files costs a lookup per path, not 100,000 matches.
    """
    inc_literal, inc_wild = _split_patterns(include)
    exc_literal, exc_wild = _split_patterns(exclude)

    def selected(relpath: str) -> bool:
        # fnmatchcase: the same answer on every OS; note that "*" also matches "/" here
        if (
            include
            and relpath not in inc_literal
            and not any(fnmatch.fnmatchcase(relpath, p) for p in inc_wild)
        ):
            return False
        return relpath not in exc_literal and not any(fnmatch.fnmatchcase(relpath, p) for p in exc_wild)

    return selected


def _walk_local(
    base: str,
    links: LinkPolicy,
    skipped: list[str] | None,
    links_found: LinkListing | None = None,
    files: bool = True,
    empty_dirs: list[str] | None = None,
    avoid: frozenset[tuple[int, int]] = frozenset(),
) -> list[tuple[str, int, float]]:
    """(relative path, size, mtime) of the regular files under a local folder, per the link policy.

    fsspec's local find follows directory symlinks without loop checks (a link to an ancestor
    nests until the kernel's ELOOP, two such links grow the walk exponentially); this walk knows
    the (device, inode) of every folder on the way down, so a link back to one of them is a loop,
    is skipped, and the walk always ends. A link to a folder elsewhere is followed (rsync -L).
    With links="copy" no link is followed (rsync -l): each one goes to `links_found` with its text;
    `files=False` (with "copy" only) then walks for the links alone, without a stat per file.
    Folders with nothing in them (below the root) go to `empty_dirs`. Folders whose (device,
    inode) is in `avoid` (the target, when links are followed) are never walked into: a link to
    the target (or above it) would copy the target into itself again on every run.

    Each folder is opened once and its entries are stat'ed relative to it (fstatat), as find
    does: the kernel then resolves one name per file instead of the whole path again. A folder
    is known by the type readdir reports, with no stat at all, unless links are followed (loop
    detection needs its device and inode).
    """
    root_stat = os.stat(base)
    follow = links == "follow"
    out: list[tuple[str, int, float]] = []
    append = out.append
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (base, "", frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    ]
    while stack:
        folder, prefix, ancestors = stack.pop()
        fd: int | None = None
        try:
            if _SCANDIR_FD:
                fd = os.open(folder, _DIR_FLAGS)
            entries = list(os.scandir(folder if fd is None else fd))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            if fd is not None:
                os.close(fd)
            continue
        try:
            if not entries and prefix and empty_dirs is not None:
                empty_dirs.append(prefix[:-1])
            for entry in entries:
                name = entry.name
                try:
                    link = entry.is_symlink()
                    if link:
                        if links == "copy":
                            if links_found is not None:
                                text = os.readlink(entry.path if fd is None else name, dir_fd=fd)
                                own_mtime = entry.stat(follow_symlinks=False).st_mtime
                                links_found.append((prefix + name, text, own_mtime))
                            continue
                        if links == "skip":
                            if skipped is not None:
                                skipped.append(prefix + name + SYMLINK_MARK)
                            continue
                    elif not follow and entry.is_dir(follow_symlinks=False):  # readdir's type: no stat
                        stack.append((f"{folder}/{name}", f"{prefix}{name}/", ancestors))
                        continue
                    if not files:
                        continue
                    st = entry.stat(follow_symlinks=link)  # a followed link: what it points to
                except OSError:  # dangling link, or one the kernel refuses to resolve (ELOOP)
                    if skipped is not None:
                        skipped.append(f"{prefix}{name} (broken symlink)")
                    continue
                mode = st.st_mode
                if S_ISREG(mode):
                    append((prefix + name, st.st_size, st.st_mtime))
                elif S_ISDIR(mode):
                    key = (st.st_dev, st.st_ino)
                    if key in avoid:
                        if skipped is not None:
                            skipped.append(prefix + name + TARGET_MARK)
                        continue
                    if key in ancestors:
                        if skipped is not None:
                            skipped.append(f"{prefix}{name} (symlink loop)")
                        continue
                    stack.append((f"{folder}/{name}", f"{prefix}{name}/", ancestors | {key}))
                elif skipped is not None:  # a fifo, socket or device: no content to copy
                    skipped.append(prefix + name + SPECIAL_MARK)
        finally:
            if fd is not None:
                os.close(fd)
    return out


def _temp(rel: str, skipped: list[str] | None) -> bool:
    """Whether `rel` is named like our in-flight files (left out; said in `skipped`, never silently)."""
    if not is_temp_name(rel):
        return False
    if skipped is not None:
        skipped.append(rel + TEMP_MARK)
    return True


def list_local_rows(
    base: str,
    include: Sequence[str],
    exclude: Sequence[str],
    links: LinkPolicy,
    skipped: list[str] | None = None,
    sort: bool = True,
    links_found: LinkListing | None = None,
    empty_dirs: list[str] | None = None,
    avoid: frozenset[tuple[int, int]] = frozenset(),
) -> Listing:
    """Files under a local folder as (relative posix path, size, mtime), per link policy and selection.

    Empty folders in scope (include/exclude apply to their paths) go to `empty_dirs`, sorted.
    """
    if os.path.isfile(base):
        raise TransferError(f"{base} is a file, not a folder; point the dataset at the folder that holds it")
    if not os.path.isdir(base):
        return []
    filtered = bool(include or exclude)
    selected = selector(include, exclude)
    found: LinkListing | None = [] if links_found is not None else None
    empty: list[str] | None = [] if empty_dirs is not None else None
    rows = [
        row
        for row in _walk_local(base, links, skipped, found, empty_dirs=empty, avoid=avoid)
        if (not filtered or selected(row[0])) and not (TEMP_MARKER in row[0] and _temp(row[0], skipped))
    ]
    if sort:
        rows.sort(key=_first)
    if empty_dirs is not None and empty:
        empty_dirs.extend(sorted(d for d in empty if not filtered or selected(d)))
    if links_found is not None and found:
        links_found.extend(select_links(found, include, exclude))
    return rows


def select_links(found: LinkListing, include: Sequence[str], exclude: Sequence[str]) -> LinkListing:
    """Links in scope (include/exclude as for files, our own temp names left out), sorted by path."""
    filtered = bool(include or exclude)
    selected = selector(include, exclude)
    return sorted(
        (row for row in found if not is_temp_name(row[0]) and (not filtered or selected(row[0]))),
        key=_first,
    )


def list_local_in_child(
    root: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    links: LinkPolicy = "skip",
    *,
    sort: bool = False,
    avoid: frozenset[tuple[int, int]] = frozenset(),
) -> Callable[[], tuple[Listing, list[str], list[str]]] | None:
    """Start listing a local folder in a forked child; returns a function that waits for the rows.

    rsync lists its sender and receiver sides in two processes; this lets a single-threaded
    caller (the CLI) list the target on a second core while it lists the source. The rows come
    back through a pipe with `marshal` (names with undecodable bytes survive: surrogates pass).
    Returns None where forking is unsafe (threads running, no fork): list in-process then.
    The function returns (rows, symlinks left out with why, empty folders); rows are sorted with
    `sort` (else in walk order: a target listing is only looked up).
    """
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: list, send, and leave without running the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            try:
                skipped: list[str] = []
                empty: list[str] = []
                rows = list_local_rows(
                    root, include, exclude, links, skipped, sort=sort, empty_dirs=empty, avoid=avoid
                )
                # three flat values instead of 100,000 tuples: a tenth of the time to send and load
                payload = marshal.dumps(
                    (
                        True,
                        "\0".join([r[0] for r in rows]),
                        array.array("q", [r[1] for r in rows]).tobytes(),
                        array.array("d", [r[2] for r in rows]).tobytes(),
                        skipped,
                        empty,
                    )
                )
            except TransferError as exc:
                payload = marshal.dumps((False, str(exc), b"", b"", [], []))
            except BaseException as exc:
                payload = marshal.dumps((False, f"{type(exc).__name__}: {exc}", b"", b"", [], []))
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)

    reply: list[bytes] = []

    def collect() -> tuple[Listing, list[str], list[str]]:
        if not reply:  # the first call reaps the child; later calls read the same reply
            with os.fdopen(read_fd, "rb") as pipe:
                reply.append(pipe.read())
            os.waitpid(pid, 0)
        data = reply[0]
        if not data:
            raise TransferError(f"listing {root} in a child process failed without a reply")
        ok, *parts = marshal.loads(data)
        if not ok:
            raise TransferError(parts[0])
        names, sizes, mtimes, skipped, empty = parts
        if not names:
            return [], skipped, empty
        # tolist() makes the numbers in one C loop, faster than iterating the arrays in zip
        rows = list(
            zip(
                names.split("\0"),
                array.array("q", sizes).tolist(),
                array.array("d", mtimes).tolist(),
                strict=True,
            )
        )
        return rows, skipped, empty

    return collect
