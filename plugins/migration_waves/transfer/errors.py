"""Typed errors of the transfer engine: each names the dataset and says how to fix the input."""

from __future__ import annotations


class TransferError(ValueError):
    """A transfer cannot start or cannot continue because of its input."""


class DeleteLimitExceeded(TransferError):
    """The plan would delete more target files than the dataset allows in one run."""

    def __init__(
        self, dataset: str, would_delete: int, max_delete: int, sample: list[str], limit: str | None = None
    ) -> None:
        self.dataset = dataset
        self.would_delete = would_delete
        self.max_delete = max_delete
        self.sample = sample
        shown = ", ".join(sample[:5]) + (" ..." if len(sample) > 5 else "")
        super().__init__(
            f"dataset {dataset}: the sync would delete {would_delete} target files, more than "
            f"{limit or f'max_delete={max_delete}'}; nothing was moved or deleted. First paths: {shown}. "
            "Check that the source is complete (a wrong or half-mounted source looks like mass "
            "deletion), then raise max_delete for this dataset or set delete: false."
        )


class SourceNotFound(TransferError):
    """The source root does not exist or holds no files."""

    def __init__(self, dataset: str, url: str, detail: str) -> None:
        self.dataset = dataset
        self.url = url
        super().__init__(
            f"dataset {dataset}: source {url} {detail}; nothing to copy. Check the dataset's "
            "source (site:path) and the site's storage URL in the wave spec (on the command line: "
            "the SRC argument), and that the connection (or your credentials) can read it."
        )


class PathCollision(TransferError):
    """Source paths that the target cannot hold apart; found before any byte moves."""

    def __init__(self, dataset: str, target: str, collisions: list[tuple[str, list[str]]]) -> None:
        self.dataset = dataset
        self.target = target
        self.collisions = collisions
        lines = [f"  {why}: " + " | ".join(repr(p) for p in paths) for why, paths in collisions[:20]]
        more = f"\n  ... and {len(collisions) - 20} more" if len(collisions) > 20 else ""
        super().__init__(
            f"dataset {dataset}: {len(collisions)} groups of source paths cannot be held apart at "
            f"{target}; nothing was moved:\n" + "\n".join(lines) + more + "\n"
            "Rename one path of each group at the source, or exclude it (--exclude / the dataset's "
            "exclude), then re-run."
        )
