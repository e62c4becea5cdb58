"""Sharded seed of a large dataset (spec `shards: N`) with Airflow dynamic task mapping.

    plan-shards  -> seed (one mapped task per shard) -> merge-shards -> verify

`plan-shards` lists the source and splits it into byte-balanced shards (transfer/shards.py); it
stores the split in the state store and returns one small descriptor per shard, which the seed
task is `.expand()`ed over. Each mapped copy runs the native engine on its shard's paths only
and writes a shard manifest; `merge-shards` checks the shard manifests against the split and
merges them into the dataset's "copied" manifest, which the usual verify task reads back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from migration_waves.airflow.context import WaveRunContext, resolve_fs
from migration_waves.airflow.operators import (
    CopyDatasetOperator,
    DatasetOperator,
    _state_fs,
    _write_manifest,
)

if TYPE_CHECKING:
    from migration_waves.transfer.manifest import Manifest
    from migration_waves.transfer.shards import Shard, ShardPlan


def _shards_dir(ctx: WaveRunContext, dataset: str) -> str:
    return f"{ctx.dataset_state(dataset)}/shards"


def _plan_path(ctx: WaveRunContext, dataset: str) -> str:
    return f"{_shards_dir(ctx, dataset)}/plan.json"


def _shard_manifest_path(ctx: WaveRunContext, dataset: str, plan_id: str, index: int) -> str:
    # Under the plan's id: a later split of a changed tree never reads an earlier split's manifests.
    return f"{_shards_dir(ctx, dataset)}/{plan_id}/{index:04d}.parquet"


def read_shard_plan(ctx: WaveRunContext, dataset: str) -> ShardPlan | None:
    """The dataset's current split, as plan-shards stored it; None before the first plan."""
    from migration_waves.transfer.shards import ShardPlan

    fs, path = _state_fs(ctx), _plan_path(ctx, dataset)
    return ShardPlan.model_validate_json(fs.cat_file(path)) if fs.exists(path) else None


class PlanShardsOperator(DatasetOperator):
    """List the source and split it into `shards` byte-balanced shards; return one descriptor each."""

    action = "plan-shards"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.transfer.atomic import staged_write
        from migration_waves.transfer.manifest import list_files
        from migration_waves.transfer.names import capabilities, find_collisions
        from migration_waves.transfer.shards import split_into_shards

        ds = ctx.spec.dataset(str(self.subject))
        src_fs, src_root = resolve_fs(ctx.spec.location(ds.source))
        dst_fs, dst_root = resolve_fs(ctx.spec.location(ds.target))
        listing = list_files(src_fs, src_root, ds.include, ds.exclude, links=ds.links)
        self.shards: list[dict[str, Any]] = []
        record: dict[str, Any] = {"dataset": ds.name, "shards_asked": ds.shards, "files": len(listing)}
        if not listing:
            return {**record, "passed": False, "reasons": [
                f"dataset {ds.name}: source {ctx.spec.location(ds.source).url} holds no files to shard; "
                "check the site storage and the dataset path"]}  # fmt: skip
        # Each shard's copy checks only its own names; names that collide across shards at the
        # target (case folding, file vs folder) are found here, before any shard moves a byte.
        backslash = any("\\" in rel for rel, _, _ in listing)
        caps = capabilities(dst_fs, dst_root, backslash=backslash)
        collisions = find_collisions((rel for rel, _, _ in listing), caps)
        if collisions:
            return {**record, "passed": False, "reasons": [
                f"dataset {ds.name}: the target cannot hold these source paths apart: "
                + "; ".join(f"{why}: {', '.join(paths)}" for why, paths in collisions[:5])
                + "; rename them at the source or exclude them"]}  # fmt: skip
        plan = split_into_shards(listing, ds.shards, dataset=ds.name)
        fs, path = _state_fs(ctx), _plan_path(ctx, ds.name)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with staged_write(fs, path) as out:
            out.write(plan.model_dump_json().encode())
        # Small descriptors only (XCom): the paths stay in the state store.
        self.shards = [
            {"index": s.index, "of": len(plan.shards), "plan_id": plan.plan_id, "files": len(s.paths),
             "bytes": s.bytes} for s in plan.shards
        ]  # fmt: skip
        sizes = [s.bytes for s in plan.shards]
        return {
            **record,
            "plan": path,
            "plan_id": plan.plan_id,
            "shards": len(plan.shards),
            "bytes": plan.total_bytes,
            "shard_bytes": sizes,
            "passed": True,
            "reasons": [
                f"dataset {ds.name}: {len(listing)} files ({plan.total_bytes} B) in "
                f"{len(plan.shards)} shards of {min(sizes)}-{max(sizes)} B"
            ],
        }

    def execute(self, context: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        super().execute(context)  # evidence, and a typed failure when the plan is refused
        return self.shards  # the list the mapped seed is expanded over


class ShardCopyOperator(CopyDatasetOperator):
    """One mapped seed task: the native engine copies only its shard's files, into a shard manifest."""

    #: The factory passes this as the mapped task's map_index_template: the UI names instances by shard.
    MAP_INDEX_TEMPLATE = "{{ shard_label }}"

    def __init__(self, *, shard: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shard = shard

    @property
    def evidence_name(self) -> str:
        return f"{self.subject}-{self.mode}-shard-{int(self.shard['index']):04d}"

    def execute(self, context: Any) -> dict[str, Any]:
        # Rendered into the mapped instance's name (MAP_INDEX_TEMPLATE) after the task ran.
        context["shard_label"] = f"shard {self.shard['index']} of {self.shard.get('of', '?')}"
        return super().execute(context)

    def _own_shard(self, ctx: WaveRunContext, dataset: str) -> Shard:
        plan = read_shard_plan(ctx, dataset)
        if plan is None or plan.plan_id != self.shard["plan_id"]:
            raise AirflowFailException(
                f"wave {ctx.spec.wave}: dataset {dataset}: shard plan {self.shard['plan_id']} is not the "
                "stored one (the source was re-planned); clear plan-shards and the tasks after it"
            )
        return plan.shards[int(self.shard["index"])]

    def selection(self, ctx: WaveRunContext, ds: Any) -> tuple[list[str], list[str]]:
        from migration_waves.transfer.shards import shard_include

        # Exactly the shard's paths; the dataset's include/exclude were applied when it was planned.
        return shard_include(self._own_shard(ctx, ds.name)), []

    def write_target_manifest(self, ctx: WaveRunContext, dataset: str, manifest: Manifest) -> str:
        fs = _state_fs(ctx)
        path = _shard_manifest_path(ctx, dataset, self.shard["plan_id"], int(self.shard["index"]))
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        manifest.write_parquet(fs, path)
        return path

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        record = super().run(ctx)
        record["shard"] = dict(self.shard)
        return record


class MergeShardsOperator(DatasetOperator):
    """Merge the shard manifests into the dataset's "copied" manifest; sum what the shards moved."""

    action = "merge-shards"

    def __init__(self, *, mode: str = "seed", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    @property
    def evidence_name(self) -> str:
        # The seed's own record name: cost and the report count the moved bytes once, from here.
        return f"{self.subject}-{self.mode}"

    def run(self, ctx: WaveRunContext) -> dict[str, Any]:
        from migration_waves.transfer.errors import TransferError
        from migration_waves.transfer.manifest import Manifest, strip_root
        from migration_waves.transfer.shards import merge_shard_manifests

        ds = ctx.spec.dataset(str(self.subject))
        plan = read_shard_plan(ctx, ds.name)
        if plan is None:
            return {"dataset": ds.name, "passed": False,
                    "reasons": [f"dataset {ds.name}: no shard plan; run plan-shards first"]}  # fmt: skip
        fs = _state_fs(ctx)
        manifests: list[Manifest | None] = []
        for shard in plan.shards:
            path = _shard_manifest_path(ctx, ds.name, plan.plan_id, shard.index)
            manifests.append(Manifest.read_parquet(fs, path) if fs.exists(path) else None)
        dst_fs, dst_root = resolve_fs(ctx.spec.location(ds.target))
        root = dst_fs.unstrip_protocol(strip_root(dst_fs, dst_root))
        record: dict[str, Any] = {"dataset": ds.name, "mode": self.mode, "plan_id": plan.plan_id,
                                  "shards": len(plan.shards)}  # fmt: skip
        try:
            merged = merge_shard_manifests(plan, manifests, root=root, algorithm=ds.checksum.value)
        except TransferError as exc:
            return {**record, "passed": False, "reasons": [f"wave {ctx.spec.wave}: {exc}"]}
        shard_records = [
            (ctx.store.read("data", f"{ds.name}-{self.mode}-shard-{s.index:04d}") or {}).get("data", {})
            for s in plan.shards
        ]
        totals = {
            key: sum(int(r.get(key) or 0) for r in shard_records)
            for key in ("files_copied", "bytes_copied", "files_skipped")
        }
        record.update(totals)
        record["manifest"] = _write_manifest(ctx, ds.name, "copied", merged)
        record["files"] = len(merged.entries)
        record["passed"] = True
        record["reasons"] = [
            f"dataset {ds.name}: {len(plan.shards)} shard manifests merged, {len(merged.entries)} files "
            f"({totals['files_copied']} copied, {totals['files_skipped']} skipped); verify reads them back"
        ]
        return record


__all__ = ["MergeShardsOperator", "PlanShardsOperator", "ShardCopyOperator", "read_shard_plan"]
