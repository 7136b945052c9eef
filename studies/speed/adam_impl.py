"""Adam's implementation, measured: ``foreach`` against ``fused`` in bearl's updates (CPU).

    python studies/speed/adam_impl.py --algo TD3 BC --threads 1 --repeats 4

Builds each algorithm as ``bearl bench`` does, swaps every Adam of it for one with the given
implementation (same parameters and learning rate), and times updates, alternating the two
implementations ``--repeats`` times. Prints the median updates/s of each and the gain.
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bearl.perf import tune_allocator
from bearl.runs.bench import bench_dataset, seeded_algo, time_updates


def with_adam(algo, impl: str):
    """``algo`` with each of its Adam optimizers rebuilt with ``impl`` (foreach or fused)."""
    for name, opt in algo.optims.items():
        params = [p for g in opt.param_groups for p in g["params"]]
        algo.optims[name] = torch.optim.Adam(params, lr=opt.param_groups[0]["lr"], **{impl: True})
    return algo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", nargs="+", default=["TD3", "BC"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    a = p.parse_args()
    tune_allocator()
    torch.set_num_threads(a.threads)
    data = bench_dataset()
    for name in a.algo:
        rates: dict[str, list[float]] = {"foreach": [], "fused": []}
        for _ in range(a.repeats):
            for impl in rates:
                algo, sampler = seeded_algo(name, data)
                steps = a.steps * (5 if name == "BC" else 1)
                rates[impl].append(time_updates(with_adam(algo, impl), sampler, steps, 30))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(
            f"{name} {a.threads} thread(s): foreach {med['foreach']:.1f}, fused {med['fused']:.1f} "
            f"upd/s ({100 * (med['fused'] / med['foreach'] - 1):+.0f} %)"
        )


if __name__ == "__main__":
    main()
