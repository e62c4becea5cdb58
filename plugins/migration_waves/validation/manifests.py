"""Great Expectations over manifests: is the target a complete, byte-exact copy of the source?

The two manifests are joined on path (outer join) into one frame, and a GX 1.x suite checks it:
the target holds as many files as the source, none is missing, none is extra, sizes and digests
are equal, digests look real. An empty source manifest fails: validating nothing proves nothing.
GX runs in an ephemeral context, so nothing is written outside `docs_dir`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from migration_waves.transfer.manifest import Manifest

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

MAX_PATHS = 20  # offending paths kept per failed expectation
DIGEST_REGEX = r"^[0-9a-f]{32,128}$"  # md5 is 32 hex chars, sha256/blake3 64


class FailedExpectation(BaseModel):
    """One expectation that did not hold, with the paths that broke it."""

    expectation: str
    description: str
    column: str | None = None
    unexpected_count: int = 0
    paths: list[str] = Field(default_factory=list, description=f"up to {MAX_PATHS} offending paths")
    observed: Any = None


class ValidationReport(BaseModel):
    """Outcome of validating a target manifest against its source manifest."""

    dataset: str
    algorithm: str
    source_root: str
    target_root: str
    source_files: int
    target_files: int
    passed: bool
    statistics: dict[str, int] = Field(default_factory=lambda: {"evaluated": 0, "successful": 0})
    failed: list[FailedExpectation] = Field(default_factory=list)
    docs_index: str | None = None
    duration_s: float = 0.0
    reasons: list[str] = Field(default_factory=list)


def merged_frame(source: Manifest, target: Manifest) -> pd.DataFrame:
    """Outer join of the two manifests on path: size/digest per side, and in_source/in_target flags."""
    import pandas as pd

    cols = ["path", "size", "digest"]
    src = source.to_frame()[cols].rename(columns={"size": "size_src", "digest": "digest_src"})
    dst = target.to_frame()[cols].rename(columns={"size": "size_dst", "digest": "digest_dst"})
    src["in_source"] = 1
    dst["in_target"] = 1
    frame = src.merge(dst, on="path", how="outer", sort=True)
    frame["in_source"] = frame["in_source"].fillna(0).astype("int64")
    frame["in_target"] = frame["in_target"].fillna(0).astype("int64")
    # nullable integers: a missing side is <NA>, never a float that would print as 1234.0
    frame["size_src"] = frame["size_src"].astype("Int64")
    frame["size_dst"] = frame["size_dst"].astype("Int64")
    frame["digest_src"] = frame["digest_src"].astype("object").where(frame["digest_src"].notna(), None)
    frame["digest_dst"] = frame["digest_dst"].astype("object").where(frame["digest_dst"].notna(), None)
    return pd.DataFrame(frame).reset_index(drop=True)


def _plain(value: Any) -> Any:
    """A numpy scalar GX reports (e.g. the row count of an empty target) as a plain Python value."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "shape", None) == () else value


def _expectations(gxe: Any, n_source: int) -> list[Any]:
    """The suite: each expectation carries a sentence a platform engineer understands."""
    return [
        gxe.ExpectColumnSumToBeBetween(
            column="in_target",
            min_value=n_source,
            max_value=n_source,
            description=f"the target holds as many files as the source ({n_source})",
        ),
        gxe.ExpectColumnValuesToBeUnique(column="path", description="each path appears once"),
        gxe.ExpectColumnValuesToNotBeNull(
            column="digest_dst", description="no source file is missing at the target"
        ),
        gxe.ExpectColumnValuesToNotBeNull(
            column="digest_src", description="the target holds no file that the source lacks"
        ),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="size_src",
            column_B="size_dst",
            ignore_row_if="either_value_is_missing",
            description="sizes are equal on both sides",
        ),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="digest_src",
            column_B="digest_dst",
            ignore_row_if="either_value_is_missing",
            description="content digests are equal on both sides",
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="digest_src", regex=DIGEST_REGEX, description="source digests are non-empty hex"
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="digest_dst", regex=DIGEST_REGEX, description="target digests are non-empty hex"
        ),
    ]


def _offending_paths(result: dict[str, Any], frame: pd.DataFrame) -> list[str]:
    # with unexpected_index_column_names=["path"] GX returns rows as {"path": ..., <column>: ...};
    # fall back to positional indexes when it returns plain integers
    paths: list[str] = []
    for row in result.get("unexpected_index_list") or []:
        if isinstance(row, dict) and "path" in row:
            paths.append(str(row["path"]))
        elif isinstance(row, int):
            paths.append(str(frame.iloc[row]["path"]))
    return list(dict.fromkeys(paths))[:MAX_PATHS]


def validate_manifests(
    source: Manifest,
    target: Manifest,
    *,
    dataset: str,
    docs_dir: str | None = None,
) -> ValidationReport:
    """Validate with Great Expectations that `target` is a complete, byte-exact copy of `source`.

    Returns a ValidationReport; with `docs_dir` a Data Docs site is written there and
    `docs_index` points at its index.html. Raises ValueError when the manifests use different
    checksum algorithms (their digests cannot be compared).
    """
    started = time.perf_counter()
    if source.algorithm != target.algorithm:
        raise ValueError(
            f"dataset {dataset}: source manifest uses {source.algorithm} and target manifest uses "
            f"{target.algorithm}; digests of different algorithms cannot be compared. Rebuild one "
            "manifest with the dataset's checksum algorithm."
        )
    report = ValidationReport(
        dataset=dataset,
        algorithm=source.algorithm,
        source_root=source.root,
        target_root=target.root,
        source_files=len(source.entries),
        target_files=len(target.entries),
        passed=False,
    )
    if not source.entries:
        report.reasons.append(
            f"dataset {dataset}: the source manifest of {source.root} is empty; nothing to validate. "
            "Check the dataset's source path and include/exclude patterns."
        )
        return report

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frame = merged_frame(source, target)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(name="migration")
        .add_dataframe_asset(name=f"{dataset}-manifests")
        .add_batch_definition_whole_dataframe("source-vs-target")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{dataset}-parity"))
    for expectation in _expectations(gxe, len(source.entries)):
        suite.add_expectation(expectation)
    vd = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{dataset}-parity", data=batch, suite=suite)
    )
    actions: list[Any] = []
    if docs_dir is not None:
        Path(docs_dir).mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name="migration_waves",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
            },
        )
        actions.append(UpdateDataDocsAction(name="docs", site_names=["migration_waves"]))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{dataset}-parity",
            validation_definitions=[vd],
            actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})

    evaluated = successful = 0
    for vr in run.run_results.values():
        evaluated += int(vr.statistics["evaluated_expectations"])
        successful += int(vr.statistics["successful_expectations"])
        for r in vr.results:
            if r.success:
                continue
            cfg = r.expectation_config
            result = dict(r.result or {})
            kwargs = dict(cfg.kwargs)
            column = kwargs.get("column") or (
                f"{kwargs['column_A']}={kwargs['column_B']}" if "column_A" in kwargs else None
            )
            paths = _offending_paths(result, frame)
            count = int(result.get("unexpected_count") or len(paths))
            report.failed.append(
                FailedExpectation(
                    expectation=cfg.type,
                    description=cfg.description or cfg.type,
                    column=column,
                    unexpected_count=count,
                    paths=paths,
                    observed=_plain(result.get("observed_value")),
                )
            )
            if r.exception_info and r.exception_info.get("raised_exception"):
                msg = r.exception_info.get("exception_message")
                report.reasons.append(f"dataset {dataset}: expectation {cfg.type} raised: {msg}")
    report.statistics = {"evaluated": evaluated, "successful": successful}
    report.passed = bool(run.success) and evaluated > 0 and not report.failed

    if docs_dir is not None:
        urls = context.build_data_docs(site_names=["migration_waves"])
        index = Path(docs_dir).resolve() / "index.html"
        report.docs_index = str(index) if index.exists() else urls.get("migration_waves")

    for failure in report.failed:
        shown = ", ".join(failure.paths[:5]) + (" ..." if len(failure.paths) > 5 else "")
        what = (
            f"{failure.unexpected_count} files: {shown}" if failure.paths else f"observed {failure.observed}"
        )
        report.reasons.append(
            f"dataset {dataset}: Great Expectations: expected {failure.description}, but not so ({what})"
        )
    if report.passed:
        report.reasons.append(
            f"dataset {dataset}: {len(target.entries)} target files match {len(source.entries)} source "
            f"files by size and {source.algorithm} digest ({successful}/{evaluated} expectations)"
        )
    report.duration_s = round(time.perf_counter() - started, 3)
    return report
