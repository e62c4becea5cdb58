"""Typed models of wave specs and golden images (pydantic).

Every model forbids unknown keys: a misspelt field is an error, never silently ignored.
Cross-field rules (site references, unique names) live in model validators so that
`migration-waves lint` reports them with the same file/field/value/fix shape as type errors.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.networks import IPvAnyNetwork

from migration_waves.spec.judge_config import JudgeConfig

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
Slug = Annotated[str, Field(pattern=SLUG)]


class StrictModel(BaseModel):
    """Base: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class DatasetClass(StrEnum):
    """How a dataset moves: each class maps to one transfer method."""

    MUTABLE = "mutable"  # seed, incremental sync until cutover, final sync after freeze
    IMMUTABLE = "immutable"  # snapshot shipping: manifest, copy, verify
    CHECKPOINT = "checkpoint"  # tiered copy with retention (recent hot, older cold)
    TELEMETRY = "telemetry"  # append-only ingest


class ChecksumAlgorithm(StrEnum):
    BLAKE3 = "blake3"
    SHA256 = "sha256"
    MD5 = "md5"


class Encryption(StrictModel):
    """Encryption a site must provide; preflight checks it through the provider's API where it can."""

    at_rest: Literal["required", "optional"] = "required"
    in_transit: Literal["required", "optional"] = "required"


#: Network zones a site declares (CIDRs); preflight rejects overlaps within and across sites.
ZoneName = Literal["training", "inference", "ingestion", "admin"]


class Site(StrictModel):
    """A place data and workloads live: on-prem or a cloud region."""

    kind: Literal["onprem", "cloud"] = Field(description="where the site is; decides egress pricing flows")
    storage: str = Field(description="fsspec URL (s3://, gs://, file://) or a path relative to the spec file")
    conn_id: str | None = Field(default=None, description="Airflow connection for the storage")
    queue: str = Field(default="default", description="Airflow worker queue for tasks that run at this site")
    region: str | None = None
    encryption: Encryption | None = Field(default=None, description="governance: encryption required here")
    audit_logging: bool | None = Field(default=None, description="governance: audit logs are kept here")
    zones: dict[ZoneName, IPvAnyNetwork] = Field(
        default_factory=dict, description="network zones as CIDRs, e.g. {training: 10.20.0.0/16}"
    )


class Owners(StrictModel):
    """Named owners of the cutover runbook's steps."""

    launch: str
    validation: str
    rollback: str
    cutover: str


class Targets(StrictModel):
    """Acceptance and recovery targets of the wave."""

    rto_minutes: float = Field(gt=0)
    rpo_minutes: float = Field(gt=0)
    p95_ms: float = Field(gt=0)
    error_rate: float = Field(ge=0, le=1)


class Budget(StrictModel):
    egress_usd: float = Field(ge=0)
    pricing: str = Field(
        default="../pricing/default.yaml", description="pricing file, relative to the spec file"
    )


LOCATION_RE = re.compile(r"^(?P<site>[a-z0-9][a-z0-9_-]*):(?P<path>.*)$")


class TransferEngine(StrEnum):
    """Who moves a dataset's bytes; our own manifest verification follows whichever it is."""

    NATIVE = "native"  # our engine: hash while streaming, atomic placement, resume journal
    DATASYNC = "datasync"  # AWS DataSync, through the amazon provider's DataSyncHook
    STORAGE_TRANSFER = "storage_transfer"  # Google Storage Transfer Service, through the google provider


MANAGED_ENGINES = (TransferEngine.DATASYNC, TransferEngine.STORAGE_TRANSFER)

_DATASYNC_TASK_ARN = re.compile(r"^arn:aws[a-z-]*:datasync:[a-z0-9-]+:\d{12}:task/task-[0-9a-z]{17}$")
_DATASYNC_LOCATION_ARN = re.compile(r"^arn:aws[a-z-]*:datasync:[a-z0-9-]+:\d{12}:location/loc-[0-9a-z]{17}$")
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_STS_JOB_NAME = re.compile(r"^transferJobs/[A-Za-z0-9._~-]+$")
_STS_AGENT_POOL = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/agentPools/[a-z0-9-]+$")


def _check(pattern: re.Pattern[str], value: str | None, what: str, example: str) -> str | None:
    if value is not None and not pattern.match(value):
        raise ValueError(f"{value!r} is not {what}; e.g. {example}")
    return value


class DataSyncOptions(StrictModel):
    """AWS DataSync: an existing task, or the two locations whose task is found (or created)."""

    engine: Literal["datasync"] = "datasync"  # tag, filled in from the dataset's engine
    task_arn: str | None = Field(default=None, description="an existing DataSync task to start")
    source_location_arn: str | None = Field(
        default=None, description="DataSync location of the source (e.g. the on-prem NFS/SMB share)"
    )
    destination_location_arn: str | None = Field(
        default=None, description="DataSync location of the target (the S3 bucket and prefix)"
    )
    conn_id: str | None = Field(
        default=None,
        description="Airflow aws connection; default: the s3:// site's conn_id, else aws_default",
    )
    region: str | None = None
    poll_interval_s: int = Field(
        default=30, ge=0, le=900, description="seconds between status polls of the task execution"
    )
    timeout_minutes: float = Field(default=24 * 60, gt=0, description="give up waiting after this long")

    @field_validator("task_arn")
    @classmethod
    def _task(cls, value: str | None) -> str | None:
        return _check(_DATASYNC_TASK_ARN, value, "a DataSync task ARN",
                      "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0")  # fmt: skip

    @field_validator("source_location_arn", "destination_location_arn")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        return _check(_DATASYNC_LOCATION_ARN, value, "a DataSync location ARN",
                      "arn:aws:datasync:us-east-1:111122223333:location/loc-0123456789abcdef0")  # fmt: skip

    @model_validator(mode="after")
    def _task_or_locations(self) -> DataSyncOptions:
        locations = (self.source_location_arn, self.destination_location_arn)
        if self.task_arn and any(locations):
            raise ValueError(
                "give either task_arn or source_location_arn + destination_location_arn, not both"
            )
        if not self.task_arn and not all(locations):
            raise ValueError(
                "datasync needs task_arn (an existing task), or both source_location_arn and "
                "destination_location_arn (a task between them is found or created)"
            )
        return self


class StorageTransferOptions(StrictModel):
    """Google Storage Transfer Service: the project, and optionally an existing transfer job."""

    engine: Literal["storage_transfer"] = "storage_transfer"  # tag, filled in from the dataset's engine
    project_id: str = Field(description="Google Cloud project that owns the transfer job")
    job_name: str | None = Field(
        default=None,
        description="an existing job (transferJobs/...) to run as it is; absent: one is created per dataset",
    )
    conn_id: str | None = Field(
        default=None,
        description="Airflow google_cloud_platform connection; default: the gs:// site's conn_id, else "
        "google_cloud_default",
    )
    aws_conn_id: str | None = Field(
        default=None, description="s3:// source: the aws connection whose keys the job reads with"
    )
    aws_role_arn: str | None = Field(
        default=None, description="s3:// source: an IAM role the service assumes instead of keys"
    )
    source_agent_pool: str | None = Field(
        default=None,
        description="local (POSIX) source: projects/<p>/agentPools/<pool> of the transfer agents",
    )
    poll_interval_s: int = Field(default=10, ge=0, le=900)
    timeout_minutes: float = Field(default=24 * 60, gt=0)

    @field_validator("project_id")
    @classmethod
    def _project(cls, value: str) -> str:
        return _check(_GCP_PROJECT, value, "a Google Cloud project id", "ml-landing-prod") or value

    @field_validator("job_name")
    @classmethod
    def _job(cls, value: str | None) -> str | None:
        return _check(_STS_JOB_NAME, value, "a transfer job name", "transferJobs/corpus-seed")

    @field_validator("source_agent_pool")
    @classmethod
    def _pool(cls, value: str | None) -> str | None:
        return _check(
            _STS_AGENT_POOL, value, "an agent pool name", "projects/ml-landing-prod/agentPools/dc-east"
        )


#: dataset_problems' value for a field that is absent (lint then shows no value).
_MISSING_VALUE: Any = None

EngineOptions = Annotated[DataSyncOptions | StorageTransferOptions, Field(discriminator="engine")]


def storage_scheme(storage: str) -> str:
    """The kind of store a site URL points at: s3, gs, file (a path or file://), or its scheme."""
    if "://" not in storage:
        return "file"
    scheme = storage.split("://", 1)[0].lower()
    return {"s3a": "s3", "s3n": "s3", "gcs": "gs", "local": "file"}.get(scheme, scheme)


def dataset_problems(
    wave: str, index: int, ds: Dataset, sites: Mapping[str, Site]
) -> list[tuple[str, Any, str]]:
    """How this dataset's engine and shards do not fit it, as (field, value, fix) triples.

    A managed engine needs its options, no native-only fields, and stores it can reach at the
    dataset's sites; shards split the native engine's seed. WaveSpec checks these, and the lint
    checks them on the raw mapping too, so they are reported with exact fields beside any other error.
    """
    where = f"wave {wave}, dataset {ds.name}"
    at = f"datasets[{index}]"
    problems: list[tuple[str, Any, str]] = []

    def add(field: str, value: Any, fix: str) -> None:
        problems.append((f"{at}.{field}", value, f"{where}: {fix}"))

    if ds.shards > 1 and ds.class_ is DatasetClass.TELEMETRY:
        add(
            "shards",
            ds.shards,
            "class telemetry ingests append-only files as they go quiet, one task "
            "per ingest; remove shards (or set shards: 1)",
        )
    if ds.links == "copy":
        target_site = ds.target.split(":", 1)[0]
        if target_site in sites and (scheme := storage_scheme(sites[target_site].storage)) != "file":
            add(
                "links",
                ds.links,
                f"links: copy recreates symlinks at the target, and site {target_site} is {scheme}://, "
                "which holds no symlinks; use links: skip (leave them out) or links: follow (copy what "
                "they point to)",
            )
        if ds.shards > 1:
            add(
                "shards",
                ds.shards,
                "shards split the seed's files, and symlinks kept as links (links: copy) belong to no "
                "shard; use shards: 1 with links: copy",
            )
    if ds.engine is TransferEngine.NATIVE:
        return problems

    kind: dict[str, str] = {}
    for field in ("source", "target"):
        site = getattr(ds, field).split(":", 1)[0]
        if site in sites:  # an unknown site is reported by the reference checks
            kind[field] = storage_scheme(sites[site].storage)
    src, dst = kind.get("source"), kind.get("target")
    opts = ds.engine_options
    engine = ds.engine.value
    if opts is None:
        needs = {
            "datasync": "task_arn, or source_location_arn and destination_location_arn",
            "storage_transfer": "project_id (and optionally job_name)",
        }[engine]
        add("engine_options", _MISSING_VALUE, f"engine {engine} needs engine_options with {needs}; add them")
    native_only = (
        ("include", ds.include),
        ("exclude", ds.exclude),
        ("links", ds.links != "skip"),
        ("shards", ds.shards > 1),
    )
    for field, on in native_only:
        if on:
            add(
                field,
                getattr(ds, field),
                f"{field} applies only to engine native (the managed engine "
                f"{engine} copies the whole folder); remove it or use engine: native",
            )
    if ds.class_ is DatasetClass.TELEMETRY:
        add(
            "class",
            ds.class_.value,
            f"class telemetry holds back files still being appended to, which "
            f"engine {engine} cannot do; use engine: native for telemetry",
        )
    if ds.engine is TransferEngine.DATASYNC:
        if dst == "gs":
            add(
                "engine",
                ds.engine.value,
                "engine datasync cannot write to the gs:// target; use engine: "
                "storage_transfer for a Google Cloud Storage target",
            )
        elif dst not in (None, "s3", "file"):
            add(
                "engine",
                ds.engine.value,
                f"engine datasync cannot write to a {dst}:// target; its "
                "targets here are s3:// or a share mounted at the site (a path)",
            )
    if ds.engine is TransferEngine.STORAGE_TRANSFER and isinstance(opts, StorageTransferOptions):
        if dst not in (None, "gs"):
            add(
                "target",
                ds.target,
                f"engine storage_transfer writes only to Google Cloud Storage, not to "
                f"{dst}://; point the target at a gs:// site, or use engine: datasync for s3://",
            )
        if src not in (None, "gs", "s3", "file"):
            add(
                "source",
                ds.source,
                f"engine storage_transfer reads gs://, s3:// or a local path (through "
                f"its agents), not {src}://; use engine: native",
            )
        for field, applies in (("aws_role_arn", "s3"), ("aws_conn_id", "s3"), ("source_agent_pool", "file")):
            value = getattr(opts, field)
            if value and src not in (None, applies):
                what = "an s3:// source" if applies == "s3" else "a local (POSIX) source"
                add(f"engine_options.{field}", value, f"{field} applies only to {what}; remove it")
    return problems


class Dataset(StrictModel):
    """A dataset to move from a source site to a target site."""

    name: Slug
    class_: DatasetClass = Field(alias="class")
    source: str = Field(description="site:path, for example onprem:corpus/")
    target: str = Field(description="site:path, for example cloud:corpus/")
    delete: bool = Field(default=False, description="propagate deletions on sync")
    max_delete: int = Field(default=100, ge=0, description="refuse a sync that would delete more files")
    keep_hot: int | None = Field(default=None, ge=1, description="checkpoint class: newest N stay hot")
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    checksum: ChecksumAlgorithm = ChecksumAlgorithm.BLAKE3
    links: Literal["skip", "follow", "copy"] = Field(
        default="skip",
        description="local source symlinks: skip them, follow them (loops are skipped), or copy them as "
        "symlinks with the same link text (never followed; a local target only)",
    )
    tags: dict[str, str] = Field(default_factory=dict)
    engine: TransferEngine = Field(
        default=TransferEngine.NATIVE,
        description="who copies: native (our engine), datasync (AWS DataSync) or storage_transfer "
        "(Google Storage Transfer Service); our manifest verification follows in every case",
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="native engine: the seed is split into this many shards balanced by bytes, copied "
        "by mapped tasks in parallel (at most [core] max_map_length, 1024 by default)",
    )
    engine_options: EngineOptions | None = Field(
        default=None, description="what the managed engine needs (datasync: task or locations; "
        "storage_transfer: project, optionally an existing job)",
    )  # fmt: skip

    @field_validator("source", "target")
    @classmethod
    def _location(cls, value: str) -> str:
        if not LOCATION_RE.match(value):
            raise ValueError(
                f"{value!r} is not site:path; write it as onprem:corpus/ (a site name, a colon, a path)"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _tag_engine_options(cls, data: Any) -> Any:
        # The options' model is chosen by the dataset's engine: copy it in as the union's tag
        # (engine native has no options model, so options there fail with the tag named).
        if isinstance(data, dict) and isinstance(data.get("engine_options"), dict):
            engine = data.get("engine", TransferEngine.NATIVE.value)
            data = {**data, "engine_options": {**data["engine_options"], "engine": engine}}
        return data

    @model_validator(mode="after")
    def _class_rules(self) -> Dataset:
        if self.keep_hot is not None and self.class_ is not DatasetClass.CHECKPOINT:
            raise ValueError(
                "keep_hot only applies to class: checkpoint; remove keep_hot or change the class"
            )
        return self

    @property
    def managed(self) -> bool:
        """True when a managed service (DataSync, Storage Transfer) does the copy."""
        return self.engine in MANAGED_ENGINES


class RouterSpec(StrictModel):
    """Who splits a workload's traffic: the demo router, an ALB listener, Route 53 records, a GCP URL map."""

    kind: Literal["local", "aws_alb", "route53", "gcp_urlmap"] = "local"
    admin: AnyHttpUrl = Field(
        description="local: the demo router (admin API and proxy); aws_alb/route53: the URL clients send "
        "traffic to (the ALB's DNS name or the weighted record's name); the canary drives load through it"
    )
    region: str | None = None
    conn_id: str | None = Field(
        default=None, description="Airflow connection for the router's API (AWS; gcp_urlmap: Google Cloud)"
    )
    endpoint_url: str | None = Field(default=None, description="AWS / Compute API endpoint override (tests)")
    listener_arn: str | None = Field(default=None, description="aws_alb: listener whose default rule splits")
    baseline_target_group_arn: str | None = None
    candidate_target_group_arn: str | None = None
    hosted_zone_id: str | None = Field(default=None, description="route53: the zone of the weighted records")
    record_name: str | None = None
    record_type: str = "CNAME"
    baseline_set_identifier: str | None = None
    candidate_set_identifier: str | None = None
    project: str | None = Field(default=None, description="gcp_urlmap: the URL map's project")
    url_map: str | None = Field(default=None, description="gcp_urlmap: global URL map whose route splits")
    baseline_backend_service: str | None = Field(default=None, description="gcp_urlmap: name or self-link")
    candidate_backend_service: str | None = None
    path_matcher: str | None = Field(
        default=None, description="gcp_urlmap: split in this path matcher's defaultRouteAction, not the map's"
    )

    @model_validator(mode="after")
    def _fields_of_kind(self) -> RouterSpec:
        needed = {
            "local": (),
            "aws_alb": ("listener_arn", "baseline_target_group_arn", "candidate_target_group_arn"),
            "route53": ("hosted_zone_id", "record_name", "baseline_set_identifier",
                        "candidate_set_identifier"),
            "gcp_urlmap": ("project", "url_map", "baseline_backend_service", "candidate_backend_service"),
        }[self.kind]  # fmt: skip
        missing = [f for f in needed if not getattr(self, f)]
        if missing:
            raise ValueError(f"router kind {self.kind} needs {', '.join(missing)}")
        return self


class CanarySpec(StrictModel):
    """Traffic steps and gate thresholds of a canary."""

    steps: list[Annotated[int, Field(gt=0, le=100)]] = Field(default_factory=lambda: [5, 25, 50, 100])
    samples_per_step: int = Field(default=300, ge=10)
    concurrency: int = Field(default=8, ge=1, le=256)
    p95_ratio_max: float = Field(default=1.2, gt=1)
    p95_min_delta_ms: float = Field(
        default=5.0, ge=0, description="a slower p95 fails only when it also grew by this many ms"
    )
    error_rate_max: float = Field(default=0.01, ge=0, le=1)
    min_samples: int = Field(default=50, ge=5, description="fewer samples per side is inconclusive")
    # Per-metric rules (p50/p95/p99, error rate, throughput, Prometheus) with power-planned sample
    # sizes; absent: the gate uses the thresholds above.
    judge: JudgeConfig | None = None
    approve_before_full: bool = Field(
        default=False, description="a human approves (Airflow HITL) before the candidate takes 100%"
    )
    rate_rps: float | None = Field(
        default=None, gt=0, description="open-loop request rate of the load generator; absent: closed loop"
    )
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1])

    @field_validator("steps")
    @classmethod
    def _steps_increase(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("steps is empty; give at least one traffic percentage, e.g. [5, 25, 50, 100]")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps {steps} must strictly increase, e.g. [5, 25, 50, 100]")
        if steps[-1] != 100:
            raise ValueError(
                f"steps {steps} must end at 100 so the candidate takes all traffic before cutover"
            )
        return steps


class InferenceWorkload(StrictModel):
    """An inference service moved behind a canary."""

    name: Slug
    kind: Literal["inference"]
    golden_image: Slug
    baseline: AnyHttpUrl = Field(description="on-prem endpoint")
    candidate: AnyHttpUrl = Field(description="cloud endpoint")
    router: RouterSpec
    predict_path: str = "/predict"
    health_path: str = "/health"
    payloads: str = Field(description="JSONL request payloads, relative to the spec file")
    canary: CanarySpec = Field(default_factory=CanarySpec)
    instance: str | None = Field(
        default=None, description="instance type in the pricing file it runs on at the target (showback)"
    )
    tags: dict[str, str] = Field(default_factory=dict)


class DrillSpec(StrictModel):
    signal: Literal["KILL", "TERM"] = "KILL"
    grace_s: float = Field(default=0, ge=0)
    interrupt_after_checkpoints: int = Field(default=2, ge=1)
    timeout_s: float = Field(default=300, gt=0)


class TrainingWorkload(StrictModel):
    """A training job proven by a forced-interruption drill."""

    name: Slug
    kind: Literal["training"]
    golden_image: Slug
    command: list[str] = Field(
        min_length=1, description="argv; {checkpoint_dir} is replaced with the drill's checkpoint folder"
    )
    checkpoint: str = Field(description="site:path where the job's checkpoints live")
    drill: DrillSpec = Field(default_factory=DrillSpec)
    instance: str | None = Field(
        default=None, description="instance type in the pricing file it runs on at the target (showback)"
    )
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("checkpoint")
    @classmethod
    def _location(cls, value: str) -> str:
        return Dataset._location(value)


Workload = Annotated[InferenceWorkload | TrainingWorkload, Field(discriminator="kind")]


class WaveSpec(StrictModel):
    """One migration wave: what moves, what is proven, who owns the cutover."""

    wave: Slug
    description: str = ""
    order: int = Field(ge=0)
    after: list[Slug] = Field(default_factory=list, description="waves that must be accepted first")
    window: str = Field(description="cron expression of the change window; the DAG's schedule")
    owners: Owners
    targets: Targets
    budget: Budget
    tags: dict[str, str] = Field(default_factory=dict)
    state: str | None = Field(default=None, description="state root: fsspec URL or path relative to the spec")
    golden_images: str = Field(default="../golden_images", description="folder of golden-image specs")
    sites: dict[Slug, Site]
    datasets: list[Dataset] = Field(default_factory=list)
    workloads: list[Workload] = Field(default_factory=list)

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("window")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"window {value!r} is not a valid 5-field cron expression (minute 0-59, hour 0-23, "
                "day 1-31, month 1-12, weekday 0-6); e.g. '0 2 * * 6' (02:00 every Saturday)"
            )
        return value

    @model_validator(mode="after")
    def _references(self) -> WaveSpec:
        problems: list[str] = []
        if self.wave in self.after:
            problems.append(f"after lists the wave itself ({self.wave!r}); remove it")
        seen: set[str] = set()
        for i, ds in enumerate(self.datasets):
            if ds.name in seen:
                problems.append(f"datasets[{i}].name {ds.name!r} is used twice; dataset names must be unique")
            seen.add(ds.name)
            for field in ("source", "target"):
                site = getattr(ds, field).split(":", 1)[0]
                if site not in self.sites:
                    problems.append(
                        f"datasets[{i}].{field} names site {site!r}, which is not under sites "
                        f"(known: {', '.join(sorted(self.sites))}); add it or fix the name"
                    )
            problems.extend(
                f"{field}: {fix}" for field, _, fix in dataset_problems(self.wave, i, ds, self.sites)
            )
        seen = set()
        for i, wl in enumerate(self.workloads):
            if wl.name in seen:
                problems.append(
                    f"workloads[{i}].name {wl.name!r} is used twice; workload names must be unique"
                )
            seen.add(wl.name)
            if isinstance(wl, TrainingWorkload):
                site = wl.checkpoint.split(":", 1)[0]
                if site not in self.sites:
                    problems.append(
                        f"workloads[{i}].checkpoint names site {site!r}, which is not under sites; add it"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- resolution helpers -------------------------------------------------------------------

    @property
    def source_file(self) -> Path | None:
        return self._source

    def resolve_path(self, value: str) -> str:
        """A spec-relative path or URL as an absolute URL/path (URLs pass through)."""
        if "://" in value or value.startswith("/"):
            return value
        base = self._source.parent if self._source else Path.cwd()
        return str((base / value).resolve())

    def location(self, ref: str) -> ResolvedLocation:
        """Resolve `site:path` to the storage URL, connection and queue of that site."""
        match = LOCATION_RE.match(ref)
        if not match:
            raise ValueError(f"wave {self.wave}: {ref!r} is not site:path")
        site_name, rel = match["site"], match["path"]
        site = self.sites[site_name]
        root = self.resolve_path(site.storage).rstrip("/")
        url = f"{root}/{rel.strip('/')}" if rel.strip("/") else root
        return ResolvedLocation(site=site_name, url=url, conn_id=site.conn_id, queue=site.queue)

    def dataset(self, name: str) -> Dataset:
        for ds in self.datasets:
            if ds.name == name:
                return ds
        raise KeyError(f"wave {self.wave} has no dataset {name!r}")

    def workload(self, name: str) -> InferenceWorkload | TrainingWorkload:
        for wl in self.workloads:
            if wl.name == name:
                return wl
        raise KeyError(f"wave {self.wave} has no workload {name!r}")

    @property
    def inference_workloads(self) -> list[InferenceWorkload]:
        return [w for w in self.workloads if isinstance(w, InferenceWorkload)]

    @property
    def training_workloads(self) -> list[TrainingWorkload]:
        return [w for w in self.workloads if isinstance(w, TrainingWorkload)]

    @property
    def golden_image_names(self) -> list[str]:
        return sorted({w.golden_image for w in self.workloads})

    def state_root(self, override: str | None = None) -> str:
        """Where manifests, journals and evidence of this wave live."""
        if override:
            return override.rstrip("/")
        if self.state:
            return self.resolve_path(self.state).rstrip("/")
        raise ValueError(
            f"wave {self.wave}: no state root; set 'state:' in the spec or MIGRATION_WAVES_STATE_ROOT"
        )


class ResolvedLocation(BaseModel):
    """A dataset side after site resolution."""

    model_config = ConfigDict(frozen=True)

    site: str
    url: str
    conn_id: str | None = None
    queue: str = "default"


# -- golden images ---------------------------------------------------------------------------


class VersionPin(StrictModel):
    """Either an exact version or a minimum (dotted, any number of parts)."""

    exact: str | None = None
    min: str | None = None

    @model_validator(mode="after")
    def _one(self) -> VersionPin:
        if (self.exact is None) == (self.min is None):
            raise ValueError("give exactly one of exact or min, e.g. {min: '550.54'}")
        return self


class GpuRequirement(StrictModel):
    model_contains: str | None = Field(default=None, description="substring of the NVML device name")
    count: int = Field(default=1, ge=1)
    memory_gib_min: float | None = Field(default=None, gt=0)
    ecc_required: bool = False
    mig_enabled: bool | None = Field(default=None, description="None: either; otherwise required state")
    mig_layout: list[str] | None = Field(
        default=None,
        description="MIG profiles each matching GPU must carry, e.g. ['3g.71gb', '3g.71gb']; None: unchecked",
    )
    persistence_mode: bool | None = Field(default=None, description="None: not checked")
    clocks_min_ratio: float = Field(
        default=0.5, gt=0, le=1, description="busy GPU: current SM/memory clock >= ratio * max clock"
    )


#: Check categories of golden-image conformance; `GoldenImage.severity` may set each to fail or warn.
CheckCategory = Literal[
    "driver", "gpu_count", "memory", "ecc", "ecc_errors", "mig", "mig_layout", "persistence",
    "clocks", "throttle", "pcie", "retired_pages", "remapped_rows", "frameworks", "packages", "nvml_errors",
]  # fmt: skip

#: Metrics of the benchmark suite; throughput metrics are "higher is better", soak growth is a ceiling.
SuiteMetric = Literal[
    "matmul_float64_gflops", "matmul_float32_gflops", "matmul_float16_gflops", "matmul_bfloat16_gflops",
    "memcpy_gbps", "h2d_pinned_gbps", "d2h_pinned_gbps", "allreduce_busbw_gbps", "soak_growth_mib",
]  # fmt: skip


class FrameworkPins(StrictModel):
    """Framework versions of the worker's Python environment (torch, its CUDA runtime, NCCL)."""

    torch: VersionPin | None = None
    cuda_runtime: VersionPin | None = Field(default=None, description="torch.version.cuda, e.g. {min: 12.4}")
    nccl: VersionPin | None = Field(default=None, description="NCCL torch is built with, e.g. {min: '2.21'}")


class BenchmarkSuite(StrictModel):
    """The benchmark suite of an image: sizes, and baselines with tolerances per metric."""

    matmul_size: int = Field(default=2048, ge=64, le=32768)
    dtypes: list[Literal["float32", "float64", "float16", "bfloat16"]] = Field(
        default_factory=lambda: ["float32"]
    )
    copy_mib: int = Field(default=256, ge=1, le=65536, description="buffer size of copy benchmarks")
    allreduce_mib: int = Field(default=256, ge=1, le=65536)
    repeats: int = Field(default=5, ge=1, le=100)
    soak_s: float = Field(default=0, ge=0, le=3600, description="0: no soak")
    tolerance: float = Field(default=0.25, ge=0, lt=1, description="allowed shortfall as a fraction")
    tolerances: dict[SuiteMetric, float] = Field(default_factory=dict, description="per-metric override")
    baselines: dict[SuiteMetric, float] = Field(
        default_factory=dict, description="metric -> recorded value (GFLOP/s, GB/s; soak: max growth in MiB)"
    )


class BenchmarkBaseline(StrictModel):
    """Recorded baseline of a benchmark and the tolerated shortfall."""

    matmul_size: int = Field(default=1024, ge=64, le=32768)
    dtype: Literal["float32", "float64", "float16", "bfloat16"] = "float32"
    baseline_gflops: float = Field(gt=0)
    tolerance: float = Field(default=0.5, ge=0, lt=1, description="allowed shortfall as a fraction")
    repeats: int = Field(default=5, ge=1, le=100)


class GoldenImage(StrictModel):
    """The pinned stack a worker must present before a workload may run on it."""

    name: Slug
    purpose: Literal["training", "inference", "dev"]
    accelerator: Literal["gpu", "cpu"]
    description: str = ""
    driver: VersionPin | None = None
    cuda_driver: VersionPin | None = None
    gpu: GpuRequirement | None = None
    packages: dict[str, str] = Field(
        default_factory=dict, description="python distribution -> minimum version on the worker"
    )
    benchmark: BenchmarkBaseline
    frameworks: FrameworkPins | None = None
    suite: BenchmarkSuite | None = None
    severity: dict[CheckCategory, Literal["fail", "warn"]] = Field(
        default_factory=dict, description="override a check category's severity, e.g. {throttle: warn}"
    )

    @model_validator(mode="after")
    def _gpu_fields(self) -> GoldenImage:
        if self.accelerator == "gpu" and self.gpu is None:
            raise ValueError("accelerator: gpu needs a gpu: section (count, memory, ECC)")
        return self


def dump_json_schema() -> dict[str, Any]:
    """JSON Schema of a wave spec, for editors."""
    return WaveSpec.model_json_schema(by_alias=True)
