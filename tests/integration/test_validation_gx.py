"""Great Expectations (real GX 1.x, ephemeral context) over manifests of real copied trees."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest

from migration_waves.transfer.engine import copy_tree
from migration_waves.transfer.manifest import Manifest, ManifestEntry, build_manifest
from migration_waves.validation.manifests import merged_frame, validate_manifests

pytestmark = pytest.mark.integration

LOCAL = fsspec.filesystem("file")


@pytest.fixture(scope="module")
def copied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Manifest, Manifest]:
    base = tmp_path_factory.mktemp("gx")
    src, dst = base / "src", base / "dst"
    for rel, size in {"a.bin": 2000, "sub/b c#%.bin": 3000, "ünï/c.txt": 10, "d.txt": 1}.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    result = copy_tree(LOCAL, str(src), LOCAL, str(dst), dataset="corpus", algorithm="sha256")
    assert result.passed
    return src, dst, build_manifest(LOCAL, str(src), algorithm="sha256"), result.target_manifest


def test_good_pair_passes_and_writes_data_docs(copied, tmp_path: Path) -> None:
    _, _, source, target = copied
    report = validate_manifests(source, target, dataset="corpus", docs_dir=str(tmp_path / "docs"))
    assert report.passed, report.reasons
    assert report.statistics["evaluated"] == report.statistics["successful"] >= 8
    assert report.failed == []
    assert report.docs_index is not None and Path(report.docs_index).is_file()
    assert (tmp_path / "docs" / "index.html").is_file()
    assert list((tmp_path / "docs" / "validations").rglob("*.html"))  # the run's own page
    assert "dataset corpus" in report.reasons[0]


def test_missing_extra_and_flipped_byte_fail_naming_each_path(copied) -> None:
    _, dst, source, _ = copied
    # damage the real target, then manifest what is really there
    (dst / "d.txt").unlink()
    (dst / "stray.log").write_bytes(b"not from the source")
    data = bytearray((dst / "sub/b c#%.bin").read_bytes())
    data[7] ^= 0xFF
    (dst / "sub/b c#%.bin").write_bytes(bytes(data))
    target = build_manifest(LOCAL, str(dst), algorithm="sha256")

    report = validate_manifests(source, target, dataset="corpus")
    assert not report.passed
    assert report.statistics["successful"] < report.statistics["evaluated"]
    by_desc = {f.description: f for f in report.failed}
    assert by_desc["no source file is missing at the target"].paths == ["d.txt"]
    assert by_desc["the target holds no file that the source lacks"].paths == ["stray.log"]
    assert by_desc["content digests are equal on both sides"].paths == ["sub/b c#%.bin"]
    text = " ".join(report.reasons)
    for name in ("d.txt", "stray.log", "sub/b c#%.bin", "dataset corpus"):
        assert name in text


def test_count_mismatch_and_bad_digests_fail() -> None:
    def entry(path: str, digest: str, size: int = 1) -> ManifestEntry:
        return ManifestEntry(path=path, size=size, mtime=0.0, digest=digest, algorithm="md5")

    source = Manifest(root="file:///s", algorithm="md5", entries=[entry("x", "a" * 32), entry("y", "b" * 32)])
    target = Manifest(root="file:///t", algorithm="md5", entries=[entry("x", "", size=2)])
    report = validate_manifests(source, target, dataset="ckpt")
    assert not report.passed
    failed = {f.description: f for f in report.failed}
    count = failed["the target holds as many files as the source (2)"]
    assert count.observed == 1
    assert failed["sizes are equal on both sides"].paths == ["x"]
    assert failed["target digests are non-empty hex"].paths == ["x"]
    assert failed["no source file is missing at the target"].paths == ["y"]


def test_empty_source_manifest_is_a_failure_not_a_pass() -> None:
    empty = Manifest(root="file:///s", algorithm="blake3")
    report = validate_manifests(empty, empty, dataset="corpus")
    assert not report.passed
    assert report.statistics == {"evaluated": 0, "successful": 0}
    assert "nothing to validate" in report.reasons[0] and "corpus" in report.reasons[0]


def test_different_algorithms_are_refused() -> None:
    a = Manifest(root="file:///s", algorithm="sha256")
    b = Manifest(root="file:///t", algorithm="blake3")
    with pytest.raises(ValueError, match="dataset corpus: source manifest uses sha256"):
        validate_manifests(a, b, dataset="corpus")


def test_merged_frame_is_an_outer_join_on_path(copied) -> None:
    _, _, source, target = copied
    frame = merged_frame(source, Manifest(root="x", algorithm="sha256", entries=target.entries[:2]))
    assert len(frame) == len(source.entries)
    assert int(frame["in_target"].sum()) == 2 and int(frame["in_source"].sum()) == 4
