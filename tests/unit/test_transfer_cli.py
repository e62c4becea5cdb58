"""`migration-waves copy|sync|verify` on real local trees: plan, JSON, checksums, deletes, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blake3
import google_crc32c
import pytest
import xxhash

from migration_waves.cli import main
from migration_waves.transfer.journal import Journal
from migration_waves.transfer.manifest import Manifest
from migration_waves.transfer.run import parse_max_delete, parse_rate

pytestmark = pytest.mark.unit


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    _write(root / "a.txt", b"alpha\n")
    _write(root / "models/w.bin", os.urandom(200_000))
    _write(root / "models/c.json", b"{}")
    _write(root / "logs/x.log", b"log line\n")
    _write(root / "zero", b"")
    return root


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    """Run the CLI in-process; (exit code, parsed JSON stdout or text, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def test_copy_then_rerun_sends_nothing_and_summary_counts_bytes(src: Path, tmp_path: Path, capsys) -> None:
    dst, state = tmp_path / "dst", str(tmp_path / "state")
    code, first, _ = cli(capsys, "copy", str(src), str(dst), "--state", state, "--json")
    assert code == 0 and first["passed"]
    total = sum(len(b) for b in _tree(src).values())
    assert (first["files_copied"], first["bytes_copied"], first["files_verified"]) == (5, total, 5)
    assert first["bytes_verified"] == total and first["mismatched"] == first["errors"] == []
    assert _tree(dst) == _tree(src)
    code, again, _ = cli(capsys, "sync", str(src), str(dst), "--state", state, "--json")
    assert code == 0 and (again["files_copied"], again["bytes_copied"], again["files_skipped"]) == (0, 0, 5)
    # the verified manifest in the state store carries real digests for the skipped files
    verified = Journal(state, first["source"], first["target"]).verified()
    assert verified is not None and (
        verified.by_path()["models/w.bin"].digest
        == blake3.blake3((src / "models/w.bin").read_bytes()).hexdigest()
    )


def test_dry_run_prints_the_plan_with_reasons_and_moves_nothing(src: Path, tmp_path: Path, capsys) -> None:
    dst, state = tmp_path / "dst", str(tmp_path / "state")
    assert cli(capsys, "copy", str(src), str(dst), "--state", state, "--json")[0] == 0
    _write(src / "a.txt", b"alpha, changed\n")
    _write(src / "new.bin", b"n")
    (dst / "logs/x.log").unlink()
    _write(dst / "stray.tmp", b"s")
    code, plan, _ = cli(
        capsys, "sync", str(src), str(dst), "--state", state, "--delete", "--dry-run", "--json"
    )
    assert code == 0 and plan["dry_run"]
    actions = {i["path"]: (i["action"], i["reason"]) for i in plan["plan"]}
    assert actions == {
        "a.txt": ("copy", "size differs"),
        "logs/x.log": ("copy", "new"),
        "models/c.json": ("skip", "same size and mtime"),
        "models/w.bin": ("skip", "same size and mtime"),
        "new.bin": ("copy", "new"),
        "zero": ("skip", "same size and mtime"),
        "stray.tmp": ("delete", "not in source"),
    }
    assert (plan["files_copied"], plan["files_deleted"]) == (3, 1)
    assert (dst / "stray.tmp").exists() and not (dst / "new.bin").exists()
    code, text, _ = cli(capsys, "sync", str(src), str(dst), "--state", state, "--dry-run")
    assert code == 0 and "copy   'new.bin'" in text and "would copy 3 files" in text


@pytest.mark.parametrize(
    ("algorithm", "reference"),
    [
        ("blake3", lambda d: blake3.blake3(d).hexdigest()),
        ("sha256", lambda d: hashlib.sha256(d).hexdigest()),
        ("md5", lambda d: hashlib.md5(d).hexdigest()),
        ("xxh128", lambda d: xxhash.xxh3_128(d).hexdigest()),
        ("crc32c", lambda d: google_crc32c.Checksum(d).digest().hex()),
    ],
)
def test_checksum_choice_digests_match_independent_libraries(
    algorithm: str, reference: Any, src: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "m.parquet"
    code, summary, _ = cli(
        capsys, "copy", str(src), str(tmp_path / "dst"), "--state", str(tmp_path / "st"),
        "--checksum", algorithm, "--manifest-out", str(out), "--json", "--transfers", "2",
    )  # fmt: skip
    assert code == 0 and summary["algorithm"] == algorithm
    manifest = Manifest.read_parquet(__import__("fsspec").filesystem("file"), str(out))
    assert {e.path: e.digest for e in manifest.entries} == {p: reference(d) for p, d in _tree(src).items()}


def test_include_exclude_scope_the_copy_and_the_deletes(src: Path, tmp_path: Path, capsys) -> None:
    dst, state = tmp_path / "dst", str(tmp_path / "st")
    code, s, _ = cli(
        capsys,
        "copy",
        str(src),
        str(dst),
        "--state",
        state,
        "--include",
        "models/*",
        "--exclude",
        "*.json",
        "--json",
    )
    assert code == 0 and sorted(_tree(dst)) == ["models/w.bin"]
    _write(dst / "logs/outside.log", b"not in scope")
    # only models/* is in scope: the stray log outside it is neither listed nor deleted
    code, s, _ = cli(
        capsys, "sync", str(src), str(dst), "--state", state, "--include", "models/*", "--delete", "--json"
    )
    assert code == 0 and s["files_deleted"] == 0 and (dst / "logs/outside.log").exists()
    assert s["files_copied"] == 1  # models/c.json, no longer excluded


def test_delete_cap_by_count_and_percentage_refuses_before_anything_moves(
    src: Path, tmp_path: Path, capsys
) -> None:
    dst, state = tmp_path / "dst", str(tmp_path / "st")
    assert cli(capsys, "copy", str(src), str(dst), "--state", state)[0] == 0
    for name in ("a.txt", "logs/x.log", "zero"):
        (src / name).unlink()
    _write(src / "fresh.bin", b"fresh")
    for cap in ("2", "50%"):  # 3 of 5 target files = 60 %
        code, _, err = cli(
            capsys, "sync", str(src), str(dst), "--state", state, "--delete", "--max-delete", cap
        )
        assert code == 2
        assert "would delete 3 target files" in err and "--max-delete" in err
        assert (dst / "a.txt").exists() and not (dst / "fresh.bin").exists()
    code, s, _ = cli(
        capsys, "sync", str(src), str(dst), "--state", state, "--delete", "--max-delete", "60%", "--json"
    )
    assert code == 0 and (s["files_deleted"], s["files_copied"]) == (3, 1)
    assert _tree(dst) == _tree(src)
    # without --delete nothing at the target is removed, and copy does not even offer it
    _write(dst / "extra", b"e")
    code, s, _ = cli(capsys, "sync", str(src), str(dst), "--state", state, "--json")
    assert code == 0 and s["extra_kept"] == 1 and (dst / "extra").exists()
    with pytest.raises(SystemExit) as exc:
        main(["copy", str(src), str(dst), "--delete"])
    assert exc.value.code == 2


def test_verify_names_the_flipped_file_and_exits_1(src: Path, tmp_path: Path, capsys) -> None:
    dst = tmp_path / "dst"
    assert cli(capsys, "copy", str(src), str(dst), "--state", str(tmp_path / "st"))[0] == 0
    assert cli(capsys, "verify", str(src), str(dst), "--json")[0] == 0
    data = bytearray((dst / "models/w.bin").read_bytes())
    data[123_456] ^= 0x01
    (dst / "models/w.bin").write_bytes(bytes(data))
    code, s, _ = cli(capsys, "verify", str(src), str(dst), "--json")
    assert code == 1 and s["mismatched"] == ["models/w.bin"] and s["files_verified"] == 4
    assert "models/w.bin" in " ".join(s["reasons"])
    code, text, err = cli(capsys, "verify", str(src), str(dst))
    assert code == 1 and "FAILED" in text and "models/w.bin" in err


def test_refusals_exit_2_with_the_fix(tmp_path: Path, capsys) -> None:
    code, s, _ = cli(
        capsys, "copy", str(tmp_path / "nope"), str(tmp_path / "d"), "--json", "--state", str(tmp_path / "s")
    )
    assert code == 2 and s["kind"] == "SourceNotFound" and "does not exist" in s["error"]
    _write(tmp_path / "s1/f", b"x")
    code, _, err = cli(capsys, "copy", str(tmp_path / "s1"), str(tmp_path / "d"), "--bwlimit", "fast")
    assert code == 2 and "--bwlimit 'fast'" in err
    code, _, err = cli(
        capsys, "sync", str(tmp_path / "s1"), str(tmp_path / "d"), "--delete", "--max-delete", "-3"
    )
    assert code == 2 and "--max-delete '-3'" in err
    assert not (tmp_path / "d").exists()


def test_rate_and_cap_parsing() -> None:
    assert parse_rate("800") == 800 and parse_rate("512K") == 512 * 1024 and parse_rate("1.5G") == 1.5 * 2**30
    assert parse_rate("10MiB/s") == 10 * 2**20
    assert parse_max_delete("7") == (7, None) and parse_max_delete("12.5%")[1] == 12.5


def test_bwlimit_holds_the_average_rate(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "src/big.bin", os.urandom(3 * 2**20))
    started = time.perf_counter()
    code, s, _ = cli(
        capsys,
        "copy",
        str(tmp_path / "src"),
        str(tmp_path / "dst"),
        "--bwlimit",
        "4M",
        "--json",
        "--state",
        str(tmp_path / "st"),
    )
    elapsed = time.perf_counter() - started
    # 3 MiB at 4 MiB/s with a 1 MiB burst: at least 0.5 s (unthrottled it is a few ms)
    assert code == 0 and s["bytes_copied"] == 3 * 2**20 and elapsed >= 0.45


def test_cli_imports_no_airflow_or_heavy_packages(src: Path, tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from migration_waves.cli import main\n"
        f"rc = main(['copy', {str(src)!r}, {str(tmp_path / 'dst')!r}, '--state', {str(tmp_path / 'st')!r}])\n"
        # pandas is absent from the list: pyarrow imports it while writing the Parquet manifest
        "banned = ('airflow', 'great_expectations', 'boto3', 'scipy', 'sklearn', 'torch')\n"
        "heavy = sorted(m for m in banned if m in sys.modules)\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rc": 0, "heavy": []}


def test_the_command_ends_at_once_with_its_output_and_exit_status(src: Path, tmp_path: Path) -> None:
    """`python -m migration_waves.cli` (and the installed `migration-waves`) end a transfer command
    with os._exit once its output is flushed: piped stdout must still arrive whole, and the exit
    status must be the command's own."""
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "migration_waves.cli"]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a user's shell
    ok = subprocess.run(
        [*cmd, "sync", str(src), str(tmp_path / "dst"), "--json", "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        env=buffered,
    )
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["passed"] and summary["files_copied"] == len(_tree(src))
    refused = subprocess.run(
        [*cmd, "copy", str(tmp_path / "nowhere"), str(tmp_path / "d2"), "--json", "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        env=buffered,
    )
    assert refused.returncode == 2, refused.stderr
    assert json.loads(refused.stdout)["refused"] is True
    assert "nowhere" in refused.stderr
