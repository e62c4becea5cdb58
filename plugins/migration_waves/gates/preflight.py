"""Preflight gates: capacity, the executed security checklist, and the transfer plan.

`resolve` turns a ResolvedLocation into (filesystem, root); the Airflow layer passes one that
honours connections, the CLI and tests pass `local_resolve`.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from migration_waves.spec.governance import REQUIRED_TAGS, SECRET_PATTERNS
from migration_waves.spec.models import ResolvedLocation, WaveSpec

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from migration_waves.gates.governance import S3ClientFactory
    from migration_waves.transfer.manifest import Manifest

Resolver = Callable[[ResolvedLocation], "tuple[AbstractFileSystem, str]"]


def local_resolve(location: ResolvedLocation) -> tuple[AbstractFileSystem, str]:
    """Resolve with fsspec's own configuration (CLI, tests): no Airflow connections."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(location.url)
    return fs, root


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_security(spec: WaveSpec, *, s3_client: S3ClientFactory | None = None) -> dict[str, Any]:
    """Run the security checklist of a wave: tags, no secrets, credentials via connections, TLS,
    and per site encryption, audit logging and network zones (gates/governance.py).

    s3_client builds the S3 client of an s3:// site (the Airflow layer uses the site's connection).
    """
    from migration_waves.gates.governance import check_site_governance

    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, message: str, severity: str = "fail") -> None:
        checks.append({"name": name, "passed": passed, "severity": severity, "message": message})

    for kind, items in (("dataset", spec.datasets), ("workload", spec.workloads)):
        for item in items:
            tags = {**spec.tags, **item.tags}
            missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
            check(
                f"tags:{kind}:{item.name}",
                not missing,
                f"{kind} {item.name}: missing required tags {missing}; add them under the wave's or the "
                f"{kind}'s tags"
                if missing
                else f"{kind} {item.name}: tags {sorted(tags)}",
            )
    text = spec.source_file.read_text(encoding="utf-8") if spec.source_file else ""
    found = [label for label, pat in SECRET_PATTERNS.items() if pat.search(text)]
    check(
        "no-secrets-in-spec",
        not found,
        f"wave {spec.wave}: the spec contains what looks like a secret ({', '.join(found)}); "
        "keep credentials in Airflow connections or a secrets backend and name the conn_id"
        if found
        else "no credential-like strings in the spec",
    )
    for name, site in spec.sites.items():
        remote = "://" in site.storage and not site.storage.startswith("file://")
        if remote:
            check(
                f"credentials:site:{name}",
                bool(site.conn_id),
                f"site {name}: {site.storage} has no conn_id; "
                "name the Airflow connection holding its credentials"
                if not site.conn_id
                else f"site {name}: credentials from connection {site.conn_id}",
                severity="warn",
            )
    for wl in spec.inference_workloads:
        for side, url in (
            ("baseline", wl.baseline),
            ("candidate", wl.candidate),
            ("router", wl.router.admin),
        ):
            plain = str(url).startswith("http://")
            ok = not plain or _is_loopback(str(url))
            check(
                f"in-transit:{wl.name}:{side}",
                ok,
                f"workload {wl.name}: {side} {url} is plain http off this host; use https"
                if not ok
                else f"workload {wl.name}: {side} {url} " + ("is loopback (demo)" if plain else "uses TLS"),
            )
    checks.extend(check_site_governance(spec, s3_client=s3_client))
    failures = [c for c in checks if not c["passed"] and c["severity"] == "fail"]
    return {"checks": checks, "passed": not failures, "reasons": [c["message"] for c in failures]}


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_capacity(spec: WaveSpec, *, resolve: Resolver = local_resolve) -> dict[str, Any]:
    """Room at each local target for its dataset's source bytes; object stores have no cap here."""
    from migration_waves.transfer.manifest import list_files

    need: dict[str, int] = {}
    datasets = []
    reasons: list[str] = []
    for ds in spec.datasets:
        src = spec.location(ds.source)
        fs, root = resolve(src)
        if not fs.exists(root):
            reasons.append(
                f"dataset {ds.name}: source {src.url} does not exist; create it or fix site "
                f"{src.site}'s storage / the dataset path"
            )
            datasets.append({"dataset": ds.name, "source": src.url, "bytes": None})
            continue
        size = sum(size for _, size, _ in list_files(fs, root, include=ds.include, exclude=ds.exclude))
        dst = spec.location(ds.target)
        datasets.append({"dataset": ds.name, "source": src.url, "target": dst.url, "bytes": size})
        if "://" not in dst.url or dst.url.startswith("file://"):
            disk = str(_existing_parent(Path(dst.url.removeprefix("file://"))))
            need[disk] = need.get(disk, 0) + size
    disks = []
    for disk, size in need.items():
        free = shutil.disk_usage(disk).free
        disks.append({"path": disk, "needed_bytes": size, "free_bytes": free})
        if size > free:
            reasons.append(
                f"target disk {disk}: needs {size:,} bytes, {free:,} free; free space or move the target"
            )
    gpus = {}
    for image in spec.golden_image_names:
        from migration_waves.spec.loader import golden_image_for

        gi = golden_image_for(spec, image)
        gpus[image] = gi.gpu.count if gi.gpu else 0
    return {
        "datasets": datasets,
        "disks": disks,
        "gpus_required": gpus,
        "passed": not reasons,
        "reasons": reasons,
    }


def plan_datasets(
    spec: WaveSpec,
    *,
    resolve: Resolver = local_resolve,
    previous: Callable[[str], Manifest | None] = lambda _: None,
) -> list[dict[str, Any]]:
    """The transfer plan of every dataset (list both sides; no bytes read, none moved)."""
    from migration_waves.transfer.engine import SourceNotFound, TransferError, plan_transfer
    from migration_waves.transfer.manifest import list_files

    plans = []
    for ds in spec.datasets:
        src, dst = spec.location(ds.source), spec.location(ds.target)
        src_fs, src_root = resolve(src)
        dst_fs, dst_root = resolve(dst)
        try:
            listing = list_files(src_fs, src_root, include=ds.include, exclude=ds.exclude)
            if not listing:
                raise SourceNotFound(
                    ds.name,
                    src.url,
                    "does not exist or holds no files"
                    + (" matching include/exclude" if ds.include or ds.exclude else ""),
                )
            plan = plan_transfer(
                listing,
                list_files(dst_fs, dst_root, include=ds.include, exclude=ds.exclude),
                delete=ds.delete,
                max_delete=ds.max_delete,
                dataset=ds.name,
                previous=previous(ds.name),
            )
        except TransferError as exc:
            plans.append({"dataset": ds.name, "passed": False, "bytes_to_copy": 0, "reasons": [str(exc)]})
            continue
        actions = [a.model_dump(mode="json") for a in plan.items]
        to_copy = [a for a in actions if a["action"] == "copy"]
        plans.append(
            {
                "dataset": ds.name,
                "class": ds.class_.value,
                "source": spec.location(ds.source).url,
                "target": spec.location(ds.target).url,
                "files_to_copy": len(to_copy),
                "bytes_to_copy": sum(int(a.get("size") or 0) for a in to_copy),
                "files_to_skip": sum(1 for a in actions if a["action"] == "skip"),
                "files_to_delete": sum(1 for a in actions if a["action"] == "delete"),
                "actions": actions[:500],
                "passed": True,
                "reasons": [],
            }
        )
    return plans
