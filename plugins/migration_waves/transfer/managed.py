"""Managed transfer engines (AWS DataSync, Google Storage Transfer Service): the pure part.

The service moves the bytes; this module builds what is sent to it (request bodies, options)
and what our own verification needs afterwards: the manifest the target must match, taken from
the source with content digests. A managed copy is never trusted by itself: the verify task
reads the target back and compares digests with this manifest, as for the native engine.
No Airflow here; `migration_waves.airflow.managed_transfer` makes the provider calls.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from migration_waves.transfer.engine import TransferPlan, plan_transfer
from migration_waves.transfer.manifest import LinkPolicy, Manifest, hash_listing, list_files

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fsspec import AbstractFileSystem

#: Storage Transfer Service job names: "transferJobs/" then letters, digits and - . _ ~ (the API's rule).
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]")


def bucket_and_path(url: str) -> tuple[str, str, str]:
    """(scheme, bucket, path) of an object-store URL; the path is '' or ends with '/' (the APIs' form)."""
    parts = urlsplit(url)
    scheme = {"gcs": "gs", "s3a": "s3", "s3n": "s3"}.get(parts.scheme, parts.scheme)
    if scheme not in ("s3", "gs") or not parts.netloc:
        raise ValueError(f"{url!r} is not an s3:// or gs:// URL with a bucket")
    path = parts.path.strip("/")
    return scheme, parts.netloc, f"{path}/" if path else ""


def local_root(url: str) -> str:
    """The absolute folder of a local (POSIX) location, with a trailing slash."""
    path = url.split("://", 1)[1] if url.startswith(("file://", "local://")) else url
    if not path.startswith("/"):
        raise ValueError(f"{url!r} is not an absolute local path")
    return path.rstrip("/") + "/"


def sts_job_name(wave: str, dataset: str, mode: str) -> str:
    """The transfer job a dataset's copy creates: the same name on every run, so a retry finds it."""
    return "transferJobs/" + _JOB_NAME_UNSAFE.sub("-", f"migration-waves-{wave}-{dataset}-{mode}")


def storage_transfer_job_body(
    *,
    project_id: str,
    job_name: str,
    description: str,
    source_url: str,
    target_url: str,
    delete: bool,
    aws_role_arn: str | None = None,
    source_agent_pool: str | None = None,
) -> dict[str, Any]:
    """A TransferJob resource (Storage Transfer API v1, camelCase JSON) that copies source to target.

    No schedule: the job runs only when asked (transferJobs.run), once per copy task. The sink is a
    gs:// URL; the source gs:// (gcsDataSource), s3:// (awsS3DataSource; keys come from an Airflow
    connection unless `aws_role_arn` is given) or a local path read by transfer agents
    (posixDataSource). `delete` removes sink objects that are not in the source.
    """
    scheme, bucket, path = bucket_and_path(target_url)
    if scheme != "gs":
        raise ValueError(f"Storage Transfer writes to Google Cloud Storage only, not {target_url!r}")
    spec: dict[str, Any] = {"gcsDataSink": {"bucketName": bucket, "path": path}}
    if "://" in source_url and not source_url.startswith(("file://", "local://")):
        src_scheme, src_bucket, src_path = bucket_and_path(source_url)
        if src_scheme == "gs":
            spec["gcsDataSource"] = {"bucketName": src_bucket, "path": src_path}
        else:
            spec["awsS3DataSource"] = {"bucketName": src_bucket, "path": src_path}
            if aws_role_arn:
                spec["awsS3DataSource"]["roleArn"] = aws_role_arn
    else:
        spec["posixDataSource"] = {"rootDirectory": local_root(source_url)}
        if source_agent_pool:
            spec["sourceAgentPoolName"] = source_agent_pool
    spec["transferOptions"] = {
        # Content-aware comparison by the service; our own digest verification follows anyway.
        "overwriteWhen": "DIFFERENT",
        "deleteObjectsUniqueInSink": bool(delete),
    }
    return {
        "name": job_name,
        "projectId": project_id,
        "description": description[:1024],
        "status": "ENABLED",
        "transferSpec": spec,
    }


def datasync_execution_options(*, delete: bool) -> dict[str, Any]:
    """start_task_execution kwargs: whether files gone from the source are removed at the target."""
    return {"OverrideOptions": {"PreserveDeletedFiles": "REMOVE" if delete else "PRESERVE"}}


def check_deletions(
    src_fs: AbstractFileSystem,
    src_root: str,
    dst_fs: AbstractFileSystem,
    dst_root: str,
    *,
    dataset: str,
    delete: bool,
    max_delete: int,
    links: LinkPolicy = "skip",
) -> TransferPlan:
    """Our plan of the copy from both listings, before the service runs.

    A service that propagates deletions has no cap of its own: with `delete`, raises
    DeleteLimitExceeded when more than `max_delete` target files would go, before anything moves.
    """
    return plan_transfer(
        list_files(src_fs, src_root, links=links),
        list_files(dst_fs, dst_root, links=links),
        delete=delete,
        max_delete=max_delete,
        dataset=dataset,
    )


def expected_manifest(
    src_fs: AbstractFileSystem,
    src_root: str,
    *,
    algorithm: str,
    target_url: str,
    known: Sequence[Manifest | None] = (),
    links: LinkPolicy = "skip",
    workers: int = 4,
) -> tuple[Manifest, int]:
    """What the target must hold after a managed copy: the source as it is now, with content digests.

    Digests of files whose size and mtime match an entry of a `known` manifest of the same
    algorithm (the snapshot taken before the copy) are taken from it; the rest are read and hashed.
    Returns the manifest (rooted at the target) and how many files were hashed.
    """
    listing = list_files(src_fs, src_root, links=links)
    reuse: dict[str, Any] = {}
    for manifest in known:
        if manifest is not None and manifest.algorithm == algorithm:
            reuse.update(manifest.by_path())
    # Exact mtimes: a reused digest must describe the very version listed now.
    fresh = [row for row in listing if not _same(reuse.get(row[0]), row[1], row[2])]
    hashed = {e.path: e for e in hash_listing(src_fs, src_root, fresh, algorithm, workers)}
    entries = [hashed.get(rel) or reuse[rel] for rel, _, _ in listing]
    return Manifest(root=target_url, algorithm=algorithm, entries=entries), len(fresh)


def _same(entry: Any, size: int, mtime: float) -> bool:
    return entry is not None and entry.size == size and entry.mtime == mtime
