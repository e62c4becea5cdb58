"""What every wave task needs at run time: the spec, the evidence store, filesystems.

Resolution happens in `execute()`, never at DAG parse time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from migration_waves.spec.loader import load_wave
from migration_waves.spec.models import ResolvedLocation, WaveSpec

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from migration_waves.evidence.store import EvidenceStore

STATE_ROOT_ENV = "MIGRATION_WAVES_STATE_ROOT"


def resolve_fs(location: ResolvedLocation) -> tuple[AbstractFileSystem, str]:
    """A filesystem and root path for a dataset side; credentials from the site's Airflow connection."""
    url = location.url
    if "://" not in url or url.startswith(("file://", "local://")):
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), url.split("://", 1)[-1]
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath(url, conn_id=location.conn_id)
    return path.fs, path.path


@dataclass
class WaveRunContext:
    """The spec and stores of one task of one wave run."""

    spec: WaveSpec
    run_id: str
    dag_id: str
    params: dict[str, Any] = field(default_factory=dict)
    airflow_context: Any = None

    @classmethod
    def from_airflow(cls, spec_path: str, context: Any) -> WaveRunContext:
        spec = load_wave(spec_path)
        return cls(
            spec=spec,
            run_id=str(context["run_id"]),
            dag_id=str(context["dag"].dag_id),
            params=dict(context.get("params") or {}),
            airflow_context=context,
        )

    @property
    def state_root(self) -> str:
        return self.spec.state_root(os.environ.get(STATE_ROOT_ENV))

    @cached_property
    def store(self) -> EvidenceStore:
        from migration_waves.evidence.store import EvidenceStore

        return EvidenceStore(self.state_root, self.spec.wave, self.run_id)

    def dataset_state(self, dataset: str) -> str:
        """Wave-level (not run-level) folder of a dataset's manifests: re-runs resume from it."""
        return f"{self.state_root}/waves/{self.spec.wave}/datasets/{dataset}"

    @property
    def dry_run(self) -> bool:
        return bool(self.params.get("dry_run", False))

    def dataset_selected(self, name: str) -> bool:
        chosen = self.params.get("datasets") or []
        return not chosen or name in chosen
