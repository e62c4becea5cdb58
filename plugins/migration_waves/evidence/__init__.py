"""Evidence of wave runs: the evidence store, wave markers, runbooks and the evidence pack report."""

from migration_waves.evidence.report import EvidencePack, build_evidence_pack
from migration_waves.evidence.runbook import render_runbook
from migration_waves.evidence.store import (
    STAGES,
    EvidenceStore,
    freeze_marker_path,
    freeze_writes,
    is_accepted,
    is_frozen,
    mark_accepted,
    read_marker,
    safe_run_id,
    unfreeze_writes,
    wave_marker_path,
    write_marker,
)

__all__ = [
    "STAGES",
    "EvidencePack",
    "EvidenceStore",
    "build_evidence_pack",
    "freeze_marker_path",
    "freeze_writes",
    "is_accepted",
    "is_frozen",
    "mark_accepted",
    "read_marker",
    "render_runbook",
    "safe_run_id",
    "unfreeze_writes",
    "wave_marker_path",
    "write_marker",
]
