"""Do two versions of bearl compute the same numbers? progress.csv of short runs, compared.

    python bench/same_numbers.py --base d43eab9          # this checkout against a revision
    python bench/same_numbers.py --base HEAD~3 --new HEAD

A refactoring (moving code, merging helpers, deriving the CLI another way) must not change what
a run computes. For every algorithm, and the variants whose code paths differ (BEAR's presets,
KL distance and fixed alpha; BC's three policy models; DQfD's two demo actions; CQL's backups
and its Lagrange alpha; the pretrained behaviour VAE, each version with a cache of its own),
each version trains the same short run from the same seed on the same small generated dataset
(Pendulum-v1 shapes, actions in [-2, 2], so the rescaling path runs too), evaluating both
action rules a few times. Then every column of the two progress.csv files is compared exactly,
except the machine columns (wall time, updates/s, memory). Exit status 1 when any run differs;
the first differing cells are printed.

Each version runs in its own process with its own tree first on ``sys.path`` (a revision is
checked out into a temporary git worktree), through the public API that every version has
(``bearl.config.resolve``, ``bearl.train`` with an in-memory ``Dataset``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab import REPO, checkout  # noqa: E402

# name -> settings (any `bearl train` setting); steps and evaluation are added below
VARIANTS: dict[str, dict] = {
    "BEAR": {"algo": "BEAR"},
    "BEAR-original": {"algo": "BEAR", "preset": "original"},
    "BEAR-KL-fixed": {"algo": "BEAR", "distance_type": "KL", "mode": "fixed"},
    "BEAR-variance": {"algo": "BEAR", "use_ensemble_variance": True, "lamda": 0.5, "version": 2},
    "BCQ": {"algo": "BCQ"},
    "TD3": {"algo": "TD3"},
    "BC": {"algo": "BC"},
    "BC-vae": {"algo": "BC", "bc_type": "vae"},
    "BC-deterministic": {"algo": "BC", "bc_type": "deterministic"},
    "KLControl": {"algo": "KLControl"},
    "DQfD": {"algo": "DQfD"},
    "DQfD-vae": {"algo": "DQfD", "demo_action": "vae"},
    "TD3BC": {"algo": "TD3BC"},
    "IQL": {"algo": "IQL"},
    # CQL's actor clones the data for its first warm_start_steps; half of the run here
    "CQL": {"algo": "CQL", "warm_start_steps": 100},
    "CQL-lagrange-soft": {
        "algo": "CQL",
        "warm_start_steps": 100,
        "lagrange": True,
        "backup": "soft",
    },
    "CQL-max": {"algo": "CQL", "warm_start_steps": 100, "backup": "max", "auto_alpha": False},
    # bf16 (a CPU without native bf16 converts: slower, the same comparison)
    "BEAR-bf16": {"algo": "BEAR", "precision": "bf16"},
    "BCQ-bf16": {"algo": "BCQ", "precision": "bf16"},
    "TD3-bf16": {"algo": "TD3", "precision": "bf16"},
    "CQL-bf16": {"algo": "CQL", "warm_start_steps": 100, "precision": "bf16"},
    # the behaviour VAE fitted alone first (each version fits its own: a cache of its own)
    "BEAR-pretrained": {"algo": "BEAR", "behavior_model": "pretrained", "behavior_steps": 100},
}
MACHINE_COLUMNS = {"WallTime", "UpdatesPerSecond", "MemoryMiB"}

# Runs inside one version: trains every variant named in argv[2] (JSON) into argv[1].
_CHILD = """
import json, sys
import numpy as np, torch
import bearl
from bearl.config import resolve
from bearl.data.dataset import Dataset, DatasetInfo

out, variants, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
rng = np.random.default_rng(0)
n = 2000
obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
ends = np.zeros(n, bool)
ends[199::200] = True
actions = rng.uniform(-2, 2, size=(n, 1)).astype(np.float32)
rewards = (-np.square(actions).sum(1) + 0.1 * rng.normal(size=n)).astype(np.float32)
info = DatasetInfo(source="memory:same-numbers", env_name="Pendulum-v1",
                   ref_min_score=-1500.0, ref_max_score=0.0)
data = Dataset(obs[:-1], actions, rewards, obs[1:].copy(), ends & (rng.random(n) < 0.3),
               ends & ~(rng.random(n) < 0.3), info)
train = bearl.train  # an old bearl's submodule bearl.train hid the function once imported
train = train if callable(train) else train.train
print(bearl.__file__, flush=True)
for name, settings in variants.items():
    values = {"steps": steps, "eval_every": steps // 4, "eval_episodes": 2,
              "eval_deterministic": True, "seed": 3, "log_dir": out, "run_name": name,
              "progress": False, "dataset": "memory", "env": "Pendulum-v1", **settings}
    cfg, algo_cfg = resolve(values)
    train(cfg, algo_cfg, dataset=data)
    print(name, flush=True)
"""


def run_version(tree: Path, out: Path, variants: dict, steps: int) -> None:
    cache = out.parent / f"cache-{out.name}"  # no version reuses a VAE the other fitted
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "BEARL_CACHE": str(cache)}
    cmd = [sys.executable, "-c", _CHILD, str(out), json.dumps(variants), str(steps)]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    where = proc.stdout.splitlines()[:1]
    if proc.returncode != 0 or not where or not where[0].startswith(str(tree)):
        sys.exit(f"{tree}: the runs failed (bearl from {where}):\n{proc.stderr[-3000:]}")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def differences(a: Path, b: Path) -> list[str]:
    """Cells that differ between two progress.csv files (machine columns left out)."""
    ra, rb = rows(a), rows(b)
    if len(ra) != len(rb):
        return [f"{len(ra)} rows against {len(rb)}"]
    cols_a = set(ra[0]) - MACHINE_COLUMNS if ra else set()
    cols_b = set(rb[0]) - MACHINE_COLUMNS if rb else set()
    out = [f"columns only in one: {sorted(cols_a ^ cols_b)}"] if cols_a != cols_b else []
    for i, (x, y) in enumerate(zip(ra, rb)):
        out += [f"row {i} {c}: {x[c]} vs {y[c]}" for c in sorted(cols_a & cols_b) if x[c] != y[c]]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision to compare against")
    p.add_argument("--new", default=str(REPO), help="source tree or git revision (default: here)")
    p.add_argument("--steps", type=int, default=200, help="gradient steps per run")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), help="some variants only")
    a = p.parse_args()
    variants = {k: v for k, v in VARIANTS.items() if not a.only or k in a.only}
    with tempfile.TemporaryDirectory(prefix="bearl-same-") as tmp:
        trees: list[Path] = []
        try:
            base = checkout(a.base, Path(tmp) / "base", trees)
            new = Path(a.new) if Path(a.new).is_dir() else checkout(a.new, Path(tmp) / "new", trees)
            for label, tree in (("base", base), ("new", new)):
                run_version(tree, Path(tmp) / f"runs-{label}", variants, a.steps)
            failed = 0
            for name in variants:
                diff = differences(
                    Path(tmp) / "runs-base" / name / "progress.csv",
                    Path(tmp) / "runs-new" / name / "progress.csv",
                )
                failed += bool(diff)
                print(f"{name:18s} {'same' if not diff else 'DIFFERS: ' + '; '.join(diff[:4])}")
            print(
                f"{len(variants) - failed} of {len(variants)} runs identical ({a.base} vs {a.new})"
            )
        finally:
            for tree in trees:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
