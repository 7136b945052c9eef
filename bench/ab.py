"""Before/after of a code change: updates/s of two versions of bearl, finely interleaved.

    python bench/ab.py --base HEAD --algo BEAR TD3 --threads 1 2 --blocks 30

Compares ``--new`` (a source tree, default this checkout as it is on disk, or a git revision)
against the git revision ``--base`` (revisions are checked out into temporary git worktrees).
For each algorithm and thread count it starts one process per version; each builds the
algorithm as ``bearl bench`` does (same settings, same random dataset) and warms up. Then the
two take turns timing blocks of ``--block`` updates (minibatch sampling + one update each):
base, new, base, new, ... ``--blocks`` times. Turns of a second or so put both versions under
the same machine conditions, so the paired ratio new/base of neighbouring blocks is far
steadier than rates taken minutes apart on a busy or throttled machine. Prints the median
updates/s of each version and the median paired change with its interquartile range. Run it
on a quiet machine anyway (pause a sweep's trainings with ``kill -STOP``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs inside the version under test (its own bearl first on sys.path): builds the algorithm,
# warms up, prints where its bearl comes from, then for each number N read from stdin times N
# updates and prints their rate (updates/s).
_CHILD = """
import sys, torch
from pathlib import Path
import bearl
if (Path(bearl.__file__).parent / "runs").is_dir():
    from bearl.runs.bench import bench_dataset, make_algo, time_updates
elif (Path(bearl.__file__).parent / "experiments").is_dir():  # before 2026-12-07
    from bearl.experiments.bench import bench_dataset, make_algo, time_updates
else:  # a bearl before the package was grouped (2026-12-01)
    from bearl.bench import bench_dataset, make_algo, time_updates
from bearl.perf import tune_allocator
name, threads, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tune_allocator()
torch.set_num_threads(threads)
torch.manual_seed(0)
algo, cfg = make_algo(name)
sampler = bench_dataset().sampler(getattr(cfg, "batch_size", 256), "cpu", seed=0)
time_updates(algo, sampler, 1, warmup)
print(bearl.__file__, flush=True)
for line in sys.stdin:
    print(time_updates(algo, sampler, int(line), 0), flush=True)
"""


class Version:
    """One version of bearl in its own process, timing blocks of updates on request."""

    def __init__(self, tree: Path, name: str, threads: int, warmup: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
        self.tree = tree
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, name, str(threads), str(warmup)],
            env=env,
            cwd=tree,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        where = Path(self._read().strip()).resolve()
        if not where.is_relative_to(tree.resolve()):
            raise SystemExit(f"{tree}: imported bearl from {where}, not from this tree")

    def _read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.tree}: the benchmark process failed (its error is above)")
        return line

    def rate(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return float(self._read())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return q[0], q[1], q[2]


def compare(base: Path, new: Path, name: str, threads: int, a: argparse.Namespace) -> str:
    versions: dict[str, Version] = {}
    block = a.block * (5 if name == "BC" else 1)
    rates: dict[str, list[float]] = {"base": [], "new": []}
    try:  # a version that fails to start still closes the one started before it
        versions["base"] = Version(base, name, threads, a.warmup)
        versions["new"] = Version(new, name, threads, a.warmup)
        for _ in range(a.blocks):
            for k, v in versions.items():
                rates[k].append(v.rate(block))
    finally:
        for v in versions.values():
            v.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    lo, mid, hi = quartiles([100 * (n / b - 1) for b, n in zip(rates["base"], rates["new"])])
    return (
        f"{name:9s} {threads} thread(s): base {med['base']:7.1f}  new {med['new']:7.1f} upd/s  "
        f"change {mid:+.1f} % [IQR {lo:+.1f} .. {hi:+.1f}]"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="HEAD", help="git revision to compare against")
    p.add_argument(
        "--new", default=str(REPO), help="source tree or git revision of the new version"
    )
    p.add_argument("--algo", nargs="+", default=["BEAR"])
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--blocks", type=int, default=30, help="turns per version")
    p.add_argument("--block", type=int, default=20, help="updates per turn (BC: 5x as many)")
    p.add_argument("--warmup", type=int, default=20)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bearl-ab-") as tmp:
        trees: list[Path] = []
        try:
            base = checkout(a.base, Path(tmp) / "base", trees)
            new = Path(a.new) if Path(a.new).is_dir() else checkout(a.new, Path(tmp) / "new", trees)
            print(f"base {a.base} vs new {a.new}: {a.blocks} turns each")
            for name in a.algo:
                for t in a.threads:
                    print(compare(base, new, name, t, a), flush=True)
        finally:
            for tree in trees:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)])


def checkout(rev: str, where: Path, trees: list[Path]) -> Path:
    """``rev`` checked out into a temporary git worktree at ``where`` (added to ``trees``)."""
    cmd = ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(where), rev]
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"cannot check out {rev!r}")
    trees.append(where)
    return where


if __name__ == "__main__":
    main()
