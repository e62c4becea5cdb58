"""Governance rules shared by lint and the preflight checklist: required tags, no secrets.

Lint rejects a spec that breaks them before a DAG exists; preflight re-checks the file a run
actually loads (it may have changed since the last lint).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from migration_waves.spec.models import WaveSpec

#: Tags every dataset and workload carries (its own or inherited from the wave's tags).
REQUIRED_TAGS = ("cost_center", "owner")

#: Strings that look like credentials. Specs name Airflow connections; they never hold secrets.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GCP service-account key": re.compile(r"\"?private_key(_id)?\"?\s*:"),
    "secret-looking key/value": re.compile(
        r"(?im)^[\s#-]*[\w-]*(password|passwd|secret|token|api[_-]?key|access[_-]?key)[\w-]*\s*:\s*\S+"
    ),
    "credentials in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b"),
}


def find_secrets(text: str) -> list[tuple[int, str]]:
    """(line number, kind) of every credential-looking string; the secret itself is never returned."""
    found: list[tuple[int, str]] = []
    for label, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            found.append((text.count("\n", 0, match.start()) + 1, label))
    return sorted(set(found))


def missing_tags(spec: WaveSpec) -> list[tuple[str, str, list[str]]]:
    """(field, item name, missing tags) for each dataset and workload lacking a required tag."""
    out = []
    for field, items in (("datasets", spec.datasets), ("workloads", spec.workloads)):
        for i, item in enumerate(items):
            tags = {**spec.tags, **item.tags}
            missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
            if missing:
                out.append((f"{field}[{i}].tags", item.name, missing))
    return out
