"""`migration-waves copy|sync|verify SRC DST`: the transfer engine from the command line.

Exit status: 0 when everything in scope was verified (or, on --dry-run, planned); 1 when a file
failed, changed while read, or did not verify; 2 when the run was refused before anything moved
(bad option, missing source, names the target cannot hold apart, delete cap).
Only argparse is imported here; the handler imports the engine (fsspec, pydantic) when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

ALGORITHMS = ("blake3", "sha256", "md5", "xxh128", "crc32c")  # = manifest.ALGORITHMS, without importing it

LINK_POLICIES = ("skip", "follow", "copy")  # = manifest.LINK_POLICIES, without importing it

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="source: a path or an fsspec URL (file://, s3://bucket/prefix, gs://...)")
    p.add_argument("dst", help="target: a path or an fsspec URL")
    p.add_argument("--checksum", choices=ALGORITHMS, default="blake3", help="content digest (default blake3)")
    p.add_argument(
        "--transfers", type=int, default=4, metavar="N", help="files in flight at once (default 4)"
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="fnmatch on the relative path; repeatable",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="fnmatch on the relative path; repeatable",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary (the plan too on --dry-run)")
    p.add_argument("--manifest-out", metavar="URL", help="write the target manifest (Parquet) there")
    p.add_argument(
        "--links",
        choices=LINK_POLICIES,
        default="skip",
        help="local symlinks: skip them (default), follow them (loops are detected and skipped) or "
        "copy them as symlinks with the same link text, never followed (rsync -l; local targets only)",
    )


def register(subparsers: Any) -> None:
    """Add copy, sync and verify."""
    for name, text in (
        ("copy", "copy new and changed files, verify them by read-back; never deletes"),
        ("sync", "make the target match the source (deletions only with --delete)"),
    ):
        p = subparsers.add_parser(name, help=text, description=text)
        _common(p)
        p.add_argument(
            "--dry-run", action="store_true", help="print the plan (copy/skip/delete + reason), move nothing"
        )
        p.add_argument(
            "--state",
            metavar="URL",
            help="state store for the resume journal and verified manifests "
            "(default $MIGRATION_WAVES_STATE or ~/.local/state/migration-waves)",
        )
        p.add_argument("--bwlimit", metavar="RATE", help="bytes/s over all transfers: 800, 512K, 10M, 1.5G")
        if name == "sync":
            p.add_argument(
                "--delete", action="store_true", help="delete target files not in the source (in scope)"
            )
            p.add_argument(
                "--max-delete",
                default="50%",
                metavar="N|PCT",
                help="refuse to delete more than N files or PCT%% of the target's files (default 50%%)",
            )
        p.set_defaults(func=_transfer, mode=name)
    v = subparsers.add_parser("verify", help="hash source and target and compare them file by file")
    _common(v)
    v.add_argument(
        "--state",
        metavar="URL",
        help="state store: files found missing or different are sent again by the next copy/sync",
    )
    v.set_defaults(func=_verify, mode="verify")
    d = subparsers.add_parser(
        "diff",
        help="compare two manifests (Parquet, from --manifest-out): missing, extra, changed files",
        description="Compare two manifests path by path; exit 0 only when they hold the same files.",
    )
    d.add_argument("left", help="the reference manifest: a path or an fsspec URL")
    d.add_argument("right", help="the manifest compared with it")
    d.add_argument(
        "--limit", type=int, default=1000, metavar="N", help="paths listed per kind (default 1000)"
    )
    d.add_argument("--json", action="store_true", help="print the comparison as JSON")
    d.set_defaults(func=_diff)


def _emit(summary: Any, as_json: bool) -> int:
    from migration_waves.transfer.run import as_json as to_json
    from migration_waves.transfer.run import describe

    if as_json:
        print(json.dumps(to_json(summary)))
    else:
        if summary.plan is not None:
            for item in summary.plan:
                print(f"{item.action:6} {item.path!r:60} {item.reason}")
        for reason in summary.reasons:
            print(reason, file=sys.stderr)
        print(describe(summary))
    return EXIT_OK if summary.passed else EXIT_FAILED


def _refused(exc: Exception, as_json: bool) -> int:
    from migration_waves.transfer.errors import DeleteLimitExceeded

    message = str(exc)
    if isinstance(exc, DeleteLimitExceeded):
        message += " On the command line: raise --max-delete (a count or a percentage) or drop --delete."
    if as_json:
        print(json.dumps({"passed": False, "refused": True, "error": message, "kind": type(exc).__name__}))
    print(f"migration-waves: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _is_storage_error(exc: Exception) -> bool:
    """An error of the disk or of a storage client (unreachable, refused, throttled), not a bug."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    module = type(exc).__module__.split(".", 1)[0]
    return module in ("botocore", "aiobotocore", "aiohttp", "google", "gcsfs", "s3fs", "requests")


def _unreachable(exc: Exception, args: argparse.Namespace) -> int:
    message = f"a storage error stopped the run ({args.src} to {args.dst}): {type(exc).__name__}: {exc}"
    if args.json:
        print(json.dumps({"passed": False, "refused": False, "error": message, "kind": type(exc).__name__}))
    if args.mode == "verify":
        print(f"migration-waves: {message}; re-run when it is back", file=sys.stderr)
    else:
        print(
            f"migration-waves: {message}; files placed before it are in the journal: re-run when it is "
            "back to resume",
            file=sys.stderr,
        )
    return EXIT_FAILED


def _local_path(url: str) -> str | None:
    """The absolute path of a plain path or file:// URL (as fsspec's local filesystem reads it)."""
    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url:
        return None
    return os.path.abspath(os.path.expanduser(url))


def _start_listings(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """Local to local: list source and target in two children while the engine is imported."""
    from migration_waves.transfer.listing import folder_key, list_local_in_child

    src, dst = _local_path(args.src), _local_path(args.dst)
    if src is None or dst is None or not os.path.isdir(src):
        return None  # the engine reports a missing source with its usual message
    # following links, the source walk never enters the target (see listing._walk_local)
    avoid = folder_key(dst) if args.links == "follow" else frozenset()
    collect_src = list_local_in_child(src, args.include, args.exclude, args.links, sort=True, avoid=avoid)
    if collect_src is None:
        return None
    # never follow target links; sorted like the source, so an unchanged set of paths compares
    # position by position
    collect_dst = list_local_in_child(dst, args.include, args.exclude, "skip", sort=True)
    if collect_dst is None:
        collect_src()
        return None
    return collect_src, collect_dst


def _transfer(args: argparse.Namespace) -> int:
    if args.transfers < 1:
        return _refused(ValueError("--transfers must be at least 1"), args.json)
    prelisted = _start_listings(args)
    try:
        return _run_transfer(args, prelisted)
    finally:
        for collect in prelisted or ():
            with contextlib.suppress(Exception):
                collect()  # reaps a child the run never asked for (it stopped early)


def _run_transfer(args: argparse.Namespace, prelisted: tuple[Any, Any] | None) -> int:
    from migration_waves.transfer.errors import TransferError
    from migration_waves.transfer.run import run_transfer

    try:
        summary = run_transfer(
            args.src,
            args.dst,
            mode=args.mode,
            algorithm=args.checksum,
            transfers=args.transfers,
            include=args.include,
            exclude=args.exclude,
            delete=getattr(args, "delete", False),
            max_delete=getattr(args, "max_delete", "50%"),
            dry_run=args.dry_run,
            state=args.state,
            manifest_out=args.manifest_out,
            bwlimit=args.bwlimit,
            links=args.links,
            prelisted=prelisted,
        )
    except TransferError as exc:
        return _refused(exc, args.json)
    except Exception as exc:
        if not _is_storage_error(exc):
            raise
        return _unreachable(exc, args)
    return _emit(summary, args.json)


def _verify(args: argparse.Namespace) -> int:
    from migration_waves.transfer.errors import TransferError
    from migration_waves.transfer.run import run_verify

    try:
        summary = run_verify(
            args.src,
            args.dst,
            algorithm=args.checksum,
            transfers=max(1, args.transfers),
            include=args.include,
            exclude=args.exclude,
            manifest_out=args.manifest_out,
            links=args.links,
            state=args.state,
        )
    except TransferError as exc:
        return _refused(exc, args.json)
    except Exception as exc:
        if not _is_storage_error(exc):
            raise
        return _unreachable(exc, args)
    return _emit(summary, args.json)


def _diff(args: argparse.Namespace) -> int:
    from migration_waves.transfer.diff import diff_manifest_files
    from migration_waves.transfer.errors import TransferError
    from migration_waves.transfer.run import open_url

    try:
        left_fs, left = open_url(args.left)
        right_fs, right = open_url(args.right)
        diff = diff_manifest_files(left_fs, left, right_fs, right, limit=max(0, args.limit))
    except TransferError as exc:
        return _refused(exc, args.json)
    if args.json:
        print(json.dumps(diff.model_dump(mode="json")))
    else:
        for kind in ("missing", "extra", "changed"):
            for path in getattr(diff, kind):
                print(f"{kind:8} {path!r}")
        print(
            f"diff: {diff.files_left} files left, {diff.files_right} right: {diff.same} same, "
            f"{diff.missing_count} missing, {diff.extra_count} extra, {diff.changed_count} changed: "
            f"{'OK' if diff.passed else 'DIFFERENT'}"
        )
    return EXIT_OK if diff.passed else EXIT_FAILED
