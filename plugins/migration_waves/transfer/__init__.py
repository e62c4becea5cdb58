"""Copy engine on fsspec: list, plan, copy (hash while streaming, atomic placement), verify, manifests."""

from migration_waves.transfer.engine import (
    FileError,
    PlanItem,
    TransferPlan,
    TransferResult,
    VerifyResult,
    copy_tree,
    plan_transfer,
    verify_tree,
)
from migration_waves.transfer.errors import DeleteLimitExceeded, SourceNotFound, TransferError
from migration_waves.transfer.manifest import Manifest, ManifestEntry, build_manifest, hasher, list_files

__all__ = [
    "DeleteLimitExceeded",
    "FileError",
    "Manifest",
    "ManifestEntry",
    "PlanItem",
    "SourceNotFound",
    "TransferError",
    "TransferPlan",
    "TransferResult",
    "VerifyResult",
    "build_manifest",
    "copy_tree",
    "hasher",
    "list_files",
    "plan_transfer",
    "verify_tree",
]
