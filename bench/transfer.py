"""Copy/sync benchmark: `migration-waves copy|sync` against rsync and rclone, measured in the same run.

Corpus (deterministic recipe, generated once into bench/.corpus, git-ignored): 2,000 files of
4-64 KiB and 20 files of 40 MiB (about 870 MB). Local disk to local disk, page cache warm (each
tool's source read is preceded by one untimed read of the corpus). Cases:

- seed: ours (copy + read-back verification) vs `rsync -a` (no verification) and
  `rclone copy` + `rclone check` (copy + verification, the like-for-like peer);
- incremental: 1% of the files changed (20 small files rewritten, mtime moved): ours `sync` vs
  `rsync -a`, `rclone copy` and `rclone sync`;
- no-op: nothing changed: ours `sync` vs `rsync -a` and `rclone copy`.

Ratios are ours / peer wall time (below 1: we are faster). Run: `make bench-transfer`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "bench" / ".corpus"
SMALL, BIG = 2000, 20
SEED = 3


def build_corpus(src: Path) -> int:
    """Write the corpus if it is not complete; returns its size in bytes."""
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


def warm(src: Path) -> None:
    for p in src.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(8 << 20):
                    pass


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-1500:]}")
    return elapsed


def change_one_percent(src: Path, round_: int) -> None:
    rng = random.Random(1000 + round_)
    for i in rng.sample(range(SMALL), SMALL // 100):
        path = src / f"shard-{i % 16:02d}" / f"sample-{i:05d}.bin"
        data = bytearray(path.read_bytes())
        data[rng.randrange(len(data))] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, (time.time() + round_, time.time() + round_))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=4)
    parser.add_argument("--checksum", default="blake3")
    args = parser.parse_args()
    for tool in ("rsync", "rclone"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install -y rsync rclone")
    src, work = CORPUS / "src", CORPUS / "runs"
    total = build_corpus(src)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ours = [sys.executable, "-m", "migration_waves.cli"]
    common = ["--transfers", str(args.transfers), "--checksum", args.checksum, "--state", str(work / "state")]
    # the machine sets AWS_CA_BUNDLE, which rclone refuses when it cannot load it
    rclone_env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    rclone = ["rclone", "--config", "/dev/null", "--transfers", str(args.transfers), "--checkers", "8"]
    d_ours, d_rsync, d_rclone = work / "ours", work / "rsync", work / "rclone"
    results: dict[str, dict[str, float]] = {}

    warm(src)
    results["seed"] = {
        "ours copy (+verify)": timed([*ours, "copy", str(src), str(d_ours), *common]),
        "rsync -a": timed(["rsync", "-a", f"{src}/", f"{d_rsync}/"]),
        "rclone copy": timed([*rclone, "copy", str(src), str(d_rclone)], rclone_env),
    }
    results["seed"]["rclone check"] = timed([*rclone, "check", str(src), str(d_rclone)], rclone_env)
    results["seed"]["rclone copy + check"] = results["seed"]["rclone copy"] + results["seed"]["rclone check"]

    change_one_percent(src, 1)
    warm(src)
    results["incremental 1%"] = {
        "ours sync (+verify)": timed([*ours, "sync", str(src), str(d_ours), *common]),
        "rsync -a": timed(["rsync", "-a", f"{src}/", f"{d_rsync}/"]),
        "rclone sync": timed([*rclone, "sync", str(src), str(d_rclone)], rclone_env),
    }
    results["no-op"] = {
        "ours sync": timed([*ours, "sync", str(src), str(d_ours), *common]),
        "rsync -a": timed(["rsync", "-a", f"{src}/", f"{d_rsync}/"]),
        "rclone sync": timed([*rclone, "sync", str(src), str(d_rclone)], rclone_env),
    }
    verify = timed([*ours, "verify", str(src), str(d_ours), "--transfers", str(args.transfers)])

    print(
        f"corpus: {SMALL + BIG} files, {total / 1e6:.0f} MB, {os.cpu_count()} CPUs, "
        f"--transfers {args.transfers}, --checksum {args.checksum}"
    )
    for case, rows in results.items():
        mine = next(v for k, v in rows.items() if k.startswith("ours"))
        print(f"\n{case}:")
        for name, secs in rows.items():
            ratio = "" if name.startswith("ours") else f"   ours/peer = {mine / secs:.2f}"
            print(f"  {name:24} {secs:7.2f} s{ratio}")
    print(f"\nours verify (hash both trees): {verify:.2f} s ({2 * total / 1e6 / verify:.0f} MB/s read)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
