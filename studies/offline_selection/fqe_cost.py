"""What batching buys: seconds per FQE step of ``P`` policies' critics trained as one batched
ensemble (``bearl ope``) against ``P`` fits of one policy each, on hopper-medium's shapes.

    OMP_NUM_THREADS=1 python studies/offline_selection/fqe_cost.py --json fqe_cost.json

The policies are small fixed MLPs (a snapshot's action rule costs about the same); the data is
random with hopper-medium's widths, since only the shapes matter for the cost.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from bearl.data.dataset import Dataset
from bearl.perf import machine_line
from bearl.training.fqe import FQE, FQEConfig


def data(n: int = 100_000, obs: int = 11, act: int = 3, episode: int = 500) -> Dataset:
    rng = np.random.default_rng(0)
    o = rng.normal(size=(n, obs)).astype(np.float32)
    a = rng.uniform(-1, 1, size=(n, act)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[episode - 1 :: episode] = True
    return Dataset(o, a, rng.normal(size=n).astype(np.float32), o, np.zeros(n, bool), timeouts)


def policy(obs: int, act: int, seed: int):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(obs, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, act), torch.nn.Tanh(),
    )  # fmt: skip
    return lambda s: net(s)


def per_step(rules, d: Dataset, cfg: FQEConfig, steps: int, fits: int) -> float:
    """Seconds per step of ``fits`` separate FQE fits sharing ``rules`` between them."""
    groups = np.array_split(np.arange(len(rules)), fits)
    models = [FQE(len(g), d, cfg, 0.99) for g in groups]
    for m, g in zip(models, groups):  # warm-up
        m.fit([rules[i] for i in g], 5)
    t0 = time.perf_counter()
    for m, g in zip(models, groups):
        m.fit([rules[i] for i in g], steps)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policies", type=int, default=10)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    d = data()
    rules = [policy(d.obs_dim, d.act_dim, i) for i in range(a.policies)]
    out = {"machine": machine_line(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out["policies"], out["steps"], out["rows"] = a.policies, a.steps, []
    for hidden in ((256, 256), (128, 128)):
        for heads in (1, 5):
            cfg = FQEConfig(hidden=hidden, heads=heads)
            batched = per_step(rules, d, cfg, a.steps, 1)
            apart = per_step(rules, d, cfg, a.steps, a.policies)
            row = {
                "hidden": list(hidden), "heads": heads,
                "batched_ms_per_step": round(1e3 * batched, 2),
                "one_at_a_time_ms_per_step": round(1e3 * apart, 2),
                "speedup": round(apart / batched, 2),
            }  # fmt: skip
            out["rows"].append(row)
            print(row, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
