"""Copy tasks of datasets whose spec names a managed engine: AWS DataSync or Storage Transfer.

Thin: the provider hooks (amazon DataSyncHook, google CloudDataTransferServiceHook) do the calls;
the request is built from the spec by `migration_waves.transfer.managed`. After the service
reports success, the task records the manifest the target must match (the source, with content
digests) as the dataset's "copied" manifest, so the verify task after it reads the target back
and compares digests exactly as it does after the native engine. The service's own word is
evidence, never verification.
"""

from __future__ import annotations

import math
import time
from typing import Any

from migration_waves.airflow.context import WaveRunContext, resolve_fs
from migration_waves.airflow.operators import (
    CopyDatasetOperator,
    WaveGateFailed,
    _read_manifest,
    _write_manifest,
)
from migration_waves.spec.models import (
    Dataset,
    DataSyncOptions,
    StorageTransferOptions,
    TransferEngine,
    WaveSpec,
    storage_scheme,
)

#: Storage Transfer operation states that are still running (a retry attaches to one of them).
STS_ACTIVE = ("QUEUED", "IN_PROGRESS", "PAUSED", "SUSPENDING")
STS_FINAL = ("SUCCESS", "FAILED", "ABORTED")
#: DataSync execution states before an end (the hook's own list, used to attach on retry).
DATASYNC_ACTIVE = ("QUEUED", "LAUNCHING", "INITIALIZING", "PREPARING", "TRANSFERRING", "VERIFYING")


def copy_operator_for(ds: Dataset) -> type[CopyDatasetOperator]:
    """The copy operator class of a dataset: the managed one when its spec names a managed engine."""
    return ManagedCopyOperator if ds.managed else CopyDatasetOperator


def _site_conn(spec: WaveSpec, ref: str, scheme: str) -> str | None:
    site = spec.sites[ref.split(":", 1)[0]]
    return site.conn_id if storage_scheme(site.storage) == scheme else None


class ManagedCopyOperator(CopyDatasetOperator):
    """Seed or sync through DataSync / Storage Transfer; the verify task after it checks the bytes."""

    ui_color = "#e6f4ea"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.transfer.managed import check_deletions, expected_manifest
        from migration_waves.transfer.manifest import strip_root

        ds = ctx.spec.dataset(str(self.subject))
        src_fs, src_root = resolve_fs(ctx.spec.location(ds.source))
        dst_fs, dst_root = resolve_fs(ctx.spec.location(ds.target))
        delete = ds.delete and self.mode != "seed"
        # Our plan from both listings: the figures the service should reach, and the max_delete cap
        # enforced before the service (which has no cap of its own) may delete anything.
        plan = check_deletions(
            src_fs,
            src_root,
            dst_fs,
            dst_root,
            dataset=ds.name,
            delete=delete,
            max_delete=ds.max_delete,
            links=ds.links,
        )
        started = time.time()
        if ds.engine is TransferEngine.DATASYNC:
            service = run_datasync(ctx.spec, ds, mode=self.mode, delete=delete, log=self.log)
        else:
            service = run_storage_transfer(ctx.spec, ds, mode=self.mode, delete=delete, log=self.log)
        record: dict[str, Any] = {
            "dataset": ds.name,
            "mode": self.mode,
            "engine": ds.engine.value,
            "planned": plan.counts(),
            "bytes_planned": plan.bytes_to_copy,
            **service,
        }
        if not service["passed"]:
            return record
        target_url = dst_fs.unstrip_protocol(strip_root(dst_fs, dst_root))
        known = [_read_manifest(ctx, ds.name, "source"), _read_manifest(ctx, ds.name, "verified")]
        expected, hashed = expected_manifest(
            src_fs, src_root, algorithm=ds.checksum.value, target_url=target_url, known=known, links=ds.links
        )
        record["manifest"] = _write_manifest(ctx, ds.name, "copied", expected)
        record["files_expected"] = len(expected.entries)
        record["files_hashed"] = hashed
        record["lag_s"] = round(time.time() - started, 3)
        record["reasons"].append(
            f"dataset {ds.name}: {ds.engine.value} reported success; the verify task reads the "
            f"{len(expected.entries)} files back from {target_url} and compares {ds.checksum.value} digests"
        )
        if self.mode != "seed":
            rpo_s = ctx.spec.targets.rpo_minutes * 60
            if record["lag_s"] > rpo_s:
                record["passed"] = False
                record["reasons"].append(
                    f"dataset {ds.name}: replication lag {record['lag_s']:.0f}s exceeds the RPO {rpo_s:.0f}s"
                )
        return record


# -- AWS DataSync ---------------------------------------------------------------------------------


def run_datasync(spec: WaveSpec, ds: Dataset, *, mode: str, delete: bool, log: Any) -> dict[str, Any]:
    """Start (or, on a retry, attach to) the dataset's DataSync task execution and wait for its end."""
    from airflow.providers.amazon.aws.hooks.datasync import DataSyncHook

    from migration_waves.transfer.managed import datasync_execution_options

    opts = ds.engine_options
    if not isinstance(opts, DataSyncOptions):  # the spec's validation guarantees it
        raise WaveGateFailed(f"wave {spec.wave}: dataset {ds.name}: engine datasync without its options")
    conn_id = (
        opts.conn_id
        or _site_conn(spec, ds.target, "s3")
        or _site_conn(spec, ds.source, "s3")
        or "aws_default"
    )
    hook = DataSyncHook(
        aws_conn_id=conn_id, region_name=opts.region, wait_interval_seconds=opts.poll_interval_s
    )
    task_arn, created = opts.task_arn, False
    if task_arn is None:
        src_arn, dst_arn = str(opts.source_location_arn), str(opts.destination_location_arn)
        found = sorted(hook.get_task_arns_for_location_arns([src_arn], [dst_arn]))
        if found:
            task_arn = found[0]
        else:
            task_arn = hook.create_task(src_arn, dst_arn, Name=f"migration-waves-{spec.wave}-{ds.name}")
            created = True
    described = hook.get_task_description(task_arn)
    wrong = _datasync_target_mismatch(hook, described, spec.location(ds.target).url)
    if wrong:
        return {
            "task_arn": task_arn,
            "passed": False,
            "reasons": [f"wave {spec.wave}, dataset {ds.name}: {wrong}"],
        }
    execution_arn = described.get("CurrentTaskExecutionArn")
    attached = bool(execution_arn) and (
        hook.describe_task_execution(execution_arn).get("Status") in DATASYNC_ACTIVE
    )
    if not attached:
        execution_arn = hook.start_task_execution(task_arn, **datasync_execution_options(delete=delete))
    log.info(
        "DataSync %s execution %s of task %s (%s)",
        ds.name,
        "attached to" if attached else "started",
        task_arn,
        execution_arn,
    )
    # The hook sleeps twice per poll; size the poll count to the spec's timeout.
    polls = max(1, math.ceil(opts.timeout_minutes * 60 / max(1, 2 * opts.poll_interval_s)))
    ok = hook.wait_for_task_execution(execution_arn, max_iterations=polls)
    status = hook.describe_task_execution(execution_arn)
    result = status.get("Result") or {}
    reasons = [f"dataset {ds.name}: DataSync execution {execution_arn} ended {status.get('Status')}"]
    if not ok:
        reasons.append(
            f"wave {spec.wave}, dataset {ds.name}: DataSync failed "
            f"({result.get('ErrorCode', 'no error code')}: {result.get('ErrorDetail', 'no detail')}); "
            "see the execution in the DataSync console, then re-run"
        )
    return {
        "task_arn": task_arn,
        "task_created": created,
        "execution_arn": execution_arn,
        "attached": attached,
        "status": status.get("Status"),
        "files_copied": int(status.get("FilesTransferred") or 0),
        "bytes_copied": int(status.get("BytesTransferred") or 0),
        "files_deleted": int(status.get("FilesDeleted") or 0),
        "service_result": {k: v for k, v in result.items() if isinstance(v, str | int | float)},
        "passed": bool(ok),
        "reasons": reasons,
    }


def _datasync_target_mismatch(hook: Any, task: dict[str, Any], target_url: str) -> str | None:
    """A reason when the task writes to an S3 location other than the spec's target, else None."""
    if storage_scheme(target_url) != "s3":
        return None  # a share mounted at the site: DataSync names it by server, not by our path
    location = hook.get_conn().describe_location_s3(LocationArn=task["DestinationLocationArn"])
    theirs = str(location.get("LocationUri", "")).rstrip("/")
    ours = "s3://" + target_url.split("://", 1)[1].strip("/")
    if theirs != ours:
        return (
            f"the DataSync task writes to {theirs}, not to the spec's target {ours}; point the task's "
            "destination location at the target, or fix the dataset's target"
        )
    return None


# -- Google Storage Transfer Service --------------------------------------------------------------


def run_storage_transfer(spec: WaveSpec, ds: Dataset, *, mode: str, delete: bool, log: Any) -> dict[str, Any]:
    """Create (or find) the dataset's transfer job, run it (or attach to its running operation), wait."""
    from airflow.providers.google.cloud.hooks.cloud_storage_transfer_service import (
        CloudDataTransferServiceHook,
    )

    opts = ds.engine_options
    if not isinstance(opts, StorageTransferOptions):  # the spec's validation guarantees it
        raise WaveGateFailed(f"wave {spec.wave}: dataset {ds.name}: engine storage_transfer without options")
    source_url, target_url = spec.location(ds.source).url, spec.location(ds.target).url
    hook = CloudDataTransferServiceHook(
        gcp_conn_id=opts.conn_id or _site_conn(spec, ds.target, "gs") or "google_cloud_default"
    )
    if opts.job_name:
        job_name, body = opts.job_name, None
        wrong = _sts_target_mismatch(
            hook.get_transfer_job(job_name=job_name, project_id=opts.project_id), target_url
        )
        if wrong:
            return {
                "job_name": job_name,
                "passed": False,
                "reasons": [f"wave {spec.wave}, dataset {ds.name}: {wrong}"],
            }
    else:
        aws_conn = opts.aws_conn_id or _site_conn(spec, ds.source, "s3") or "aws_default"
        body = create_or_update_job(
            hook,
            spec,
            ds,
            opts,
            mode=mode,
            delete=delete,
            aws_conn_id=aws_conn,
            source_url=source_url,
            target_url=target_url,
        )
        job_name = body["name"]
    running = [
        op
        for op in hook.list_transfer_operations(
            request_filter={"project_id": opts.project_id, "job_names": [job_name]}
        )
        if (op.get("metadata") or {}).get("status") in STS_ACTIVE
    ]
    attached = bool(running)
    op_name = (
        running[0]["name"]
        if running
        else hook.run_transfer_job(job_name=job_name, project_id=opts.project_id)["name"]
    )
    log.info(
        "Storage Transfer %s: %s operation %s of %s",
        ds.name,
        "attached to" if attached else "started",
        op_name,
        job_name,
    )
    op = _wait_operation(hook, op_name, poll_s=opts.poll_interval_s, timeout_s=opts.timeout_minutes * 60)
    meta = op.get("metadata") or {}
    counters = meta.get("counters") or {}
    status = meta.get("status")
    passed = status == "SUCCESS" and not op.get("error")
    reasons = [f"dataset {ds.name}: Storage Transfer operation {op_name} ended {status}"]
    if not passed:
        errors = [
            f"{b.get('errorCode')} x{b.get('errorCount')}" for b in meta.get("errorBreakdowns") or []
        ] or [str((op.get("error") or {}).get("message", "no detail"))]
        reasons.append(
            f"wave {spec.wave}, dataset {ds.name}: Storage Transfer failed ({'; '.join(errors)}); see the "
            "operation in the Cloud console, then re-run"
        )
    return {
        "job_name": job_name,
        "job_body": body,  # as built from the spec; never the credentials the preprocessor adds
        "operation": op_name,
        "attached": attached,
        "status": status,
        "files_copied": int(counters.get("objectsCopiedToSink") or 0),
        "bytes_copied": int(counters.get("bytesCopiedToSink") or 0),
        "files_deleted": int(counters.get("objectsDeletedFromSink") or 0),
        "passed": passed,
        "reasons": reasons,
    }


def create_or_update_job(
    hook: Any,
    spec: WaveSpec,
    ds: Dataset,
    opts: StorageTransferOptions,
    *,
    mode: str,
    delete: bool,
    aws_conn_id: str,
    source_url: str,
    target_url: str,
) -> dict[str, Any]:
    """The dataset's job, created with a fixed name so a retry or re-run finds it; returns the body sent.

    The provider's TransferJobValidator checks the body and its TransferJobPreprocessor adds the AWS
    keys of `aws_conn_id` for an s3:// source without a role; those keys never reach the evidence.
    """
    import copy

    from airflow.providers.google.cloud.operators.cloud_storage_transfer_service import (
        TransferJobPreprocessor,
        TransferJobValidator,
    )

    from migration_waves.transfer.managed import storage_transfer_job_body, sts_job_name

    body = storage_transfer_job_body(
        project_id=opts.project_id,
        job_name=sts_job_name(spec.wave, ds.name, mode),
        description=f"migration-waves wave {spec.wave} dataset {ds.name} ({mode})",
        source_url=source_url,
        target_url=target_url,
        delete=delete,
        aws_role_arn=opts.aws_role_arn,
        source_agent_pool=opts.source_agent_pool,
    )
    TransferJobValidator(body).validate_body()
    sent = TransferJobPreprocessor(copy.deepcopy(body), aws_conn_id=aws_conn_id).process_body()
    # 409 (the name exists): the hook returns the existing job, re-enabled if it was disabled.
    job = hook.create_transfer_job(body=sent)
    if job.get("transferSpec") != body["transferSpec"] or job.get("status") != "ENABLED":
        # A job from an earlier spec: make its source, sink and options this spec's.
        hook.update_transfer_job(
            job_name=body["name"],
            body={
                "projectId": opts.project_id,
                "transferJob": {k: sent[k] for k in ("description", "status", "transferSpec")},
                "updateTransferJobFieldMask": "description,status,transferSpec",
            },
        )
    return body


def _sts_target_mismatch(job: dict[str, Any], target_url: str) -> str | None:
    from migration_waves.transfer.managed import bucket_and_path

    _, bucket, path = bucket_and_path(target_url)
    sink = (job.get("transferSpec") or {}).get("gcsDataSink") or {}
    theirs = f"gs://{sink.get('bucketName')}/{sink.get('path', '')}"
    if (sink.get("bucketName"), sink.get("path", "")) != (bucket, path):
        return (
            f"transfer job {job.get('name')} writes to {theirs}, not to the spec's target "
            f"gs://{bucket}/{path}; point the job's sink at the target, or leave job_name out to create one"
        )
    return None


def _wait_operation(hook: Any, name: str, *, poll_s: float, timeout_s: float) -> dict[str, Any]:
    """Poll one transfer operation until it ends (a task retry attaches to it if this times out)."""
    from airflow.sdk.exceptions import AirflowException

    deadline = time.monotonic() + timeout_s
    while True:
        op: dict[str, Any] = hook.get_transfer_operation(operation_name=name)
        if op.get("done") or (op.get("metadata") or {}).get("status") in STS_FINAL:
            return op
        if time.monotonic() > deadline:
            raise AirflowException(
                f"Storage Transfer operation {name} still running after {timeout_s / 60:.0f} minutes; "
                "a retry of this task waits for it again"
            )
        time.sleep(poll_s)
