"""A sharded seed end to end on local files, each operator's execute() as a worker runs it.

plan-shards returns the descriptors the seed is mapped over; here each mapped instance is run
as Airflow would run it for one map index (the operator built with that shard), then
merge-shards and the usual verify task. No scheduler here: tests/dags checks the mapping itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from spec_support import wave_spec, write_spec

pytestmark = pytest.mark.integration

# Names with fnmatch's special characters: a shard selects its files by exact path, never by pattern.
NAMES = ["a[1].bin", "b*.bin", "c?.bin", "d[!x].bin", "[[].bin", "sp ace #1.bin", "dir[0]/x*y?.bin"]


@pytest.fixture
def big_wave(tmp_path: Path, project_root: Path) -> Path:
    src = tmp_path / "onprem" / "corpus"
    sizes = {name: 1000 * (i + 1) for i, name in enumerate(NAMES)}
    sizes.update({f"parts/p{i:02d}.bin": 300 + 97 * i for i in range(12)})
    for rel, size in sizes.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(rel.encode() * (size // len(rel)))
    spec = wave_spec(
        project_root,
        "big",
        state=tmp_path / "state",
        sites={"onprem": {"kind": "onprem", "storage": str(tmp_path / "onprem")},
               "cloud": {"kind": "cloud", "storage": str(tmp_path / "cloud")}},
        datasets=[{"name": "corpus", "class": "immutable", "source": "onprem:corpus/",
                   "target": "cloud:corpus/", "shards": 4, "checksum": "sha256"}],
    )  # fmt: skip
    path = write_spec(tmp_path / "big.yaml", spec)
    return path


def _context() -> dict[str, Any]:
    return {"run_id": "manual__2026-12-05", "dag": SimpleNamespace(dag_id="wave_big"), "params": {}}


def _run(op_cls: Any, spec: Path, **kwargs: Any) -> Any:
    op = op_cls(task_id=f"t-{op_cls.__name__}", wave_spec=str(spec), subject="corpus", **kwargs)
    return op.execute(_context())


def _evidence(summary: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(Path(summary["evidence"]).read_text())["data"])


def test_sharded_seed_merges_into_a_manifest_that_verifies(big_wave: Path) -> None:
    from migration_waves.airflow import operators as ops
    from migration_waves.airflow.data_operators import (
        MergeShardsOperator,
        PlanShardsOperator,
        ShardCopyOperator,
    )

    source = big_wave.parent / "onprem" / "corpus"
    every = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    assert _run(ops.SnapshotManifestOperator, big_wave)["passed"]
    shards = _run(PlanShardsOperator, big_wave)
    assert [s["index"] for s in shards] == [0, 1, 2, 3] and all(s["of"] == 4 for s in shards)
    assert sum(s["files"] for s in shards) == len(every)
    assert len(json.dumps(shards)) < 1000  # descriptors only: the paths stay in the state store

    copied: list[str] = []
    for shard in shards:  # one mapped instance per map index
        record = _evidence(_run(ShardCopyOperator, big_wave, shard=shard, mode="seed"))
        assert record["files_copied"] == shard["files"] and record["bytes_copied"] == shard["bytes"]
        assert record["shard"]["index"] == shard["index"]
        copied += [item["path"] for item in record["plan"] if item["action"] == "copy"]
    assert sorted(copied) == every  # each file copied by exactly one shard

    merged = _run(MergeShardsOperator, big_wave, mode="seed")
    merge_record = _evidence(merged)
    assert merge_record["files"] == len(every) and merge_record["files_copied"] == len(every)
    assert Path(merged["evidence"]).name.startswith("corpus-seed")  # cost/report read the seed's totals here
    verified = _run(ops.VerifyDatasetOperator, big_wave, mode="seed")
    assert verified["passed"] and verified["files_verified"] == len(every)
    target = big_wave.parent / "cloud" / "corpus"
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == every

    # A retried shard resumes: nothing left to send.
    again = _evidence(_run(ShardCopyOperator, big_wave, shard=shards[2], mode="seed"))
    assert again["files_copied"] == 0 and again["files_skipped"] == shards[2]["files"]


def test_a_missing_shard_fails_the_merge_and_a_stale_descriptor_the_copy(big_wave: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from migration_waves.airflow import operators as ops
    from migration_waves.airflow.data_operators import (
        MergeShardsOperator,
        PlanShardsOperator,
        ShardCopyOperator,
    )

    shards = _run(PlanShardsOperator, big_wave)
    for shard in shards[:-1]:  # the last mapped instance never ran
        _run(ShardCopyOperator, big_wave, shard=shard, mode="seed")
    with pytest.raises(ops.WaveGateFailed, match=r"wave big: dataset corpus: shard\(s\) 3 left no manifest"):
        _run(MergeShardsOperator, big_wave, mode="seed")

    # The source changed and was planned again: a descriptor of the old plan is refused.
    (big_wave.parent / "onprem" / "corpus" / "late.bin").write_bytes(b"late")
    _run(PlanShardsOperator, big_wave)
    with pytest.raises(AirflowFailException, match="re-planned"):
        _run(ShardCopyOperator, big_wave, shard=shards[0], mode="seed")
