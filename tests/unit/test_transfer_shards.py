"""Shards of a large dataset: balanced split, exact-path selection, merged manifests; spec rules."""

from __future__ import annotations

import fnmatch
import glob
import random
from pathlib import Path
from typing import Any

import pytest
from spec_support import wave_spec, write_spec

from migration_waves.transfer.errors import TransferError
from migration_waves.transfer.manifest import Manifest, ManifestEntry, list_files, selector
from migration_waves.transfer.shards import (
    merge_shard_manifests,
    shard_include,
    split_into_shards,
)

pytestmark = pytest.mark.unit

TASK = "arn:aws:datasync:us-east-1:111122223333:task/task-0123456789abcdef0"

NASTY = [
    "a[1].bin", "b*.bin", "c?.bin", "d[!x].bin", "e].bin", "[[].bin", "f\\g.bin", "sp ace #1.bin",
    "dir[0]/x*y?.bin", "dir[0]/plain.bin", "ü-ñ.bin", "[abc]", "*", "?",
]  # fmt: skip


def _listing(rng: random.Random, n: int) -> list[tuple[str, int, float]]:
    return [
        (f"f/{i:05d}.bin", rng.choice([0, 1, 10, 4096, 1 << 20, rng.randrange(1 << 24)]), 0.0)
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_split_is_balanced_complete_and_deterministic(n: int) -> None:
    rng = random.Random(n)
    listing = _listing(rng, 500)
    plan = split_into_shards(listing, n, dataset="corpus")
    assert len(plan.shards) == n and [s.index for s in plan.shards] == list(range(n))
    paths = [p for s in plan.shards for p in s.paths]
    assert sorted(paths) == sorted(rel for rel, _, _ in listing)  # every path exactly once
    assert len(paths) == len(set(paths))
    sizes = dict((rel, size) for rel, size, _ in listing)
    for shard in plan.shards:
        assert shard.bytes == sum(sizes[p] for p in shard.paths) and shard.paths == sorted(shard.paths)
    totals = [s.bytes for s in plan.shards]
    assert max(totals) - min(totals) <= max(sizes.values())  # balanced within one largest file
    # the same tree, listed in another order, gives the same split and id
    shuffled = list(listing)
    rng.shuffle(shuffled)
    assert split_into_shards(shuffled, n, dataset="corpus") == plan


def test_plan_id_follows_the_tree() -> None:
    listing = [("a", 10, 0.0), ("b", 20, 0.0), ("c", 30, 0.0)]
    plan = split_into_shards(listing, 2, dataset="x")
    touched = split_into_shards([("a", 10, 99.0), ("b", 20, 1.0), ("c", 30, 5.0)], 2, dataset="x")
    assert touched.plan_id == plan.plan_id  # mtimes do not move files between shards
    grown = split_into_shards([*listing, ("d", 1, 0.0)], 2, dataset="x")
    assert grown.plan_id != plan.plan_id


def test_fewer_files_than_shards_and_bad_input() -> None:
    plan = split_into_shards([("only", 5, 0.0), ("two", 0, 0.0)], 8, dataset="x")
    assert [s.paths for s in plan.shards] == [["only"], ["two"]]  # no empty shard to map over
    with pytest.raises(ValueError, match="dataset x: shards must be at least 1"):
        split_into_shards([("a", 1, 0.0)], 0, dataset="x")
    with pytest.raises(TransferError, match="names a path twice"):
        split_into_shards([("a", 1, 0.0), ("a", 2, 0.0)], 2, dataset="x")


def test_escaped_paths_select_exactly_themselves(tmp_path: Path) -> None:
    from fsspec.implementations.local import LocalFileSystem

    for rel in NASTY:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
    fs = LocalFileSystem()
    every = [rel for rel, _, _ in list_files(fs, str(tmp_path))]
    assert sorted(every) == sorted(NASTY)
    for rel in NASTY:  # alone, each escaped path selects its one file
        assert [r for r, _, _ in list_files(fs, str(tmp_path), include=[glob.escape(rel)])] == [rel]
    plan = split_into_shards(list_files(fs, str(tmp_path)), 3, dataset="x")
    for shard in plan.shards:
        got = [r for r, _, _ in list_files(fs, str(tmp_path), include=shard_include(shard))]
        assert got == shard.paths


def test_selector_answers_as_fnmatch_does() -> None:
    rng = random.Random(7)
    names = [*NASTY, "f/00001.bin", "f/x.txt", "g/h/i.bin", "[", "]"]
    patterns = [glob.escape(n) for n in names] + ["*.bin", "f/*", "?", "[[]*", "*[?]*", "a[1]*", "[", "[!a]*"]
    for _ in range(300):
        include = rng.sample(patterns, rng.randrange(0, 4))
        exclude = rng.sample(patterns, rng.randrange(0, 3))
        chosen = selector(include, exclude)
        for name in names:
            want = (not include or any(fnmatch.fnmatchcase(name, p) for p in include)) and not any(
                fnmatch.fnmatchcase(name, p) for p in exclude
            )
            assert chosen(name) == want, (name, include, exclude)


def _manifest(paths: list[str], algorithm: str = "sha256") -> Manifest:
    entries = [
        ManifestEntry(path=p, size=len(p), mtime=0.0, digest="ab" * 32, algorithm=algorithm) for p in paths
    ]
    return Manifest(root="file:///shard", algorithm=algorithm, entries=entries)


def test_merge_checks_shard_manifests_against_the_plan() -> None:
    plan = split_into_shards([(f"p{i}", i + 1, 0.0) for i in range(9)], 3, dataset="corpus")
    parts = [_manifest(s.paths) for s in plan.shards]
    merged = merge_shard_manifests(plan, parts, root="s3://b/corpus", algorithm="sha256")
    assert [e.path for e in merged.entries] == sorted(f"p{i}" for i in range(9))
    assert merged.root == "s3://b/corpus"

    with pytest.raises(TransferError, match=r"dataset corpus: shard\(s\) 1 left no manifest"):
        merge_shard_manifests(plan, [parts[0], None, parts[2]], root="r", algorithm="sha256")
    short = _manifest(plan.shards[2].paths[1:])
    with pytest.raises(TransferError, match=r"1 planned file.*in no shard manifest"):
        merge_shard_manifests(plan, [parts[0], parts[1], short], root="r", algorithm="sha256")
    stray = _manifest([*plan.shards[0].paths, plan.shards[1].paths[0]])
    with pytest.raises(TransferError, match=r"shard 0 holds .* not its own"):
        merge_shard_manifests(plan, [stray, parts[1], parts[2]], root="r", algorithm="sha256")
    with pytest.raises(TransferError, match="shard 1 is md5, not sha256"):
        merge_shard_manifests(plan, [parts[0], _manifest(plan.shards[1].paths, "md5"), parts[2]],
                              root="r", algorithm="sha256")  # fmt: skip


def _spec(tmp_path: Path, project_root: Path, **dataset: Any) -> Path:
    data = wave_spec(
        project_root,
        "big",
        golden_images=False,
        sites={"onprem": {"kind": "onprem", "storage": "/srv/a"},
               "cloud": {"kind": "cloud", "storage": "/srv/b"}},
        datasets=[{"name": "corpus", "class": "immutable", "source": "onprem:c/", "target": "cloud:c/",
                   **dataset}],
    )  # fmt: skip
    path = write_spec(tmp_path / "big.yaml", data)
    return path


def test_spec_shards_rules(tmp_path: Path, project_root: Path) -> None:
    from migration_waves.spec.loader import SpecError, load_wave

    assert load_wave(_spec(tmp_path, project_root, shards=8)).datasets[0].shards == 8
    assert load_wave(_spec(tmp_path, project_root)).datasets[0].shards == 1
    cases = {
        "shards: 0": ({"shards": 0}, "datasets[0].shards", "greater than or equal to 1"),
        "telemetry": ({"shards": 4, "class": "telemetry"}, "datasets[0].shards", "class telemetry ingests"),
        "managed": (
            {"shards": 4, "engine": "datasync", "engine_options": {"task_arn": TASK}},
            "datasets[0].shards", "shards applies only to engine native",
        ),
    }  # fmt: skip
    for why, (extra, field, message) in cases.items():
        with pytest.raises(SpecError) as err:
            load_wave(_spec(tmp_path, project_root, **extra))
        fields = {p.field: str(p) for p in err.value.problems}
        assert field in fields and message in fields[field], why
