"""Copy engine on fsspec: list, plan, copy (hash while streaming, atomic placement), verify, manifests.

Names are resolved lazily (PEP 562): `migration_waves.transfer.cli` is imported for every
`migration-waves` command, and must not pay for fsspec and pydantic unless a transfer runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FileError": "engine",
    "PlanItem": "engine",
    "TransferPlan": "engine",
    "TransferResult": "engine",
    "VerifyResult": "engine",
    "copy_tree": "engine",
    "plan_transfer": "engine",
    "verify_tree": "engine",
    "DeleteLimitExceeded": "errors",
    "PathCollision": "errors",
    "SourceNotFound": "errors",
    "TransferError": "errors",
    "Manifest": "manifest",
    "ManifestEntry": "manifest",
    "build_manifest": "manifest",
    "hasher": "manifest",
    "list_files": "manifest",
    "run_transfer": "run",
    "run_verify": "run",
    "RunSummary": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
