"""A dataset with `shards: N` renders as plan-shards -> seed mapped over the shards -> merge -> verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spec_support import wave_spec, write_spec

pytestmark = pytest.mark.dags


@pytest.fixture(scope="module")
def dag(tmp_path_factory: pytest.TempPathFactory, project_root: Path) -> Any:
    from migration_waves.airflow.dag_factory import build_wave_dag

    tmp = tmp_path_factory.mktemp("sharded-dag")
    spec = wave_spec(
        project_root,
        "big",
        state=tmp / "state",
        golden_images=False,
        sites={"onprem": {"kind": "onprem", "storage": str(tmp / "a")},
               "cloud": {"kind": "cloud", "storage": str(tmp / "b")}},
        datasets=[
            {"name": "corpus", "class": "immutable", "source": "onprem:c/", "target": "cloud:c/",
             "shards": 8},
            {"name": "features", "class": "mutable", "source": "onprem:f/", "target": "cloud:f/",
             "shards": 2},
            {"name": "small", "class": "immutable", "source": "onprem:s/", "target": "cloud:s/"},
        ],
    )  # fmt: skip
    path = write_spec(tmp / "big.yaml", spec)
    return build_wave_dag(path)


def test_seed_is_mapped_over_the_planned_shards(dag: Any) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from migration_waves.airflow.data_operators import (
        MergeShardsOperator,
        PlanShardsOperator,
        ShardCopyOperator,
    )
    from migration_waves.airflow.operators import CopyDatasetOperator, VerifyDatasetOperator

    for name in ("corpus", "features"):
        plan, seed = dag.get_task(f"data.{name}.plan-shards"), dag.get_task(f"data.{name}.seed")
        merge, verify = dag.get_task(f"data.{name}.merge-shards"), dag.get_task(f"data.{name}.verify")
        assert isinstance(plan, PlanShardsOperator) and isinstance(merge, MergeShardsOperator)
        assert isinstance(seed, MappedOperator) and seed.operator_class is ShardCopyOperator
        (arg,) = seed.expand_input.value.values()  # expanded over plan-shards' return value
        assert list(seed.expand_input.value) == ["shard"]
        assert arg.operator is plan and arg.key == "return_value"
        assert seed.partial_kwargs["mode"] == "seed" and seed.map_index_template == "{{ shard_label }}"
        assert f"data.{name}.snapshot" in plan.upstream_task_ids
        assert seed.upstream_task_ids == {plan.task_id}
        assert merge.upstream_task_ids == {seed.task_id} and verify.upstream_task_ids == {merge.task_id}
        assert isinstance(verify, VerifyDatasetOperator) and merge.trigger_rule == "all_success"
    # the incremental sync of a sharded mutable dataset is one task, as before
    assert type(dag.get_task("data.features.sync")) is CopyDatasetOperator
    assert "data.features.verify" in dag.get_task("data.features.sync").upstream_task_ids
    # an unsharded dataset keeps the single seed
    assert type(dag.get_task("data.small.seed")) is CopyDatasetOperator
    assert "data.small.plan-shards" not in dag.task_ids


def test_the_mapped_wave_serializes(dag: Any) -> None:
    """What the scheduler stores and runs: the mapping survives serialization."""
    from airflow.serialization.serialized_objects import DagSerialization

    back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    seed = back.get_task("data.corpus.seed")
    assert seed.is_mapped and seed.task_type == "ShardCopyOperator"
    assert back.get_task("data.corpus.merge-shards").upstream_task_ids == {"data.corpus.seed"}
