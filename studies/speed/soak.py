"""Long-run soak: does memory grow over many updates?

    python studies/speed/soak.py --algo BEAR --dataset hopper-medium --updates 300000 --every 10000
    python studies/speed/soak.py --algo BEAR --bench-settings ...  # smaller networks


Runs ``--updates`` gradient steps of one algorithm on a dataset (no evaluation, as the
training loop's inner part: sample, update, accumulate metrics) and prints the process's
resident memory every ``--every`` updates, then the growth from the first sample to the last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from bearl.algos import algorithm_class
from bearl.config import resolve
from bearl.data import load_dataset
from bearl.perf import resident_mib, tune_allocator


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--algo", default="BEAR")
    p.add_argument("--dataset", default="hopper-medium")
    p.add_argument("--updates", type=int, default=300_000)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--bench-settings",
        action="store_true",
        help="use `bearl bench`'s hyperparameters (d3rlpy's smaller networks) instead of the "
        "paper preset's; the warm start of the preset is kept, so both phases run",
    )
    args = p.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    _, cfg = resolve({"algo": args.algo, "dataset": args.dataset, "steps": args.updates})
    if args.bench_settings:
        settings = dict(algorithm_class(args.algo).bench_settings)
        settings.pop("warm_start_steps", None)
        cfg = dataclasses.replace(cfg, **settings)
    print(json.dumps({"config": dataclasses.asdict(cfg)}), flush=True)
    algo = algorithm_class(args.algo)(cfg, ds.obs_dim, ds.act_dim, "cpu")
    sampler = ds.sampler(cfg.batch_size, "cpu", seed=0)
    samples = []
    sums: dict[str, torch.Tensor] = {}
    t0 = time.time()
    for step in range(1, args.updates + 1):
        for k, v in algo.update(sampler.sample()).items():
            sums[k] = sums[k] + v if k in sums else v.clone()
        if step % args.every == 0:
            sums = {}
            samples.append(
                {
                    "update": step,
                    "rss_mib": round(resident_mib(), 1),
                    "seconds": round(time.time() - t0, 1),
                }
            )
            print(json.dumps(samples[-1]), flush=True)
    first, last = samples[0], samples[-1]
    print(
        json.dumps(
            {
                "algo": args.algo,
                "dataset": args.dataset,
                "updates": args.updates,
                "rss_first_mib": first["rss_mib"],
                "rss_last_mib": last["rss_mib"],
                "rss_max_mib": max(s["rss_mib"] for s in samples),
                "growth_mib": round(last["rss_mib"] - first["rss_mib"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
