"""The behaviour model's loss curve: BEAR's conditional VAE fitted alone on a dataset.

    python studies/cheaper_runs/behavior_curve.py walker2d-medium --steps 50000 -o curve.csv

What ``--behavior_model pretrained`` fits once per (dataset, VAE settings, seed), and what
its default ``--behavior_steps`` is chosen from (docs/performance.md): the VAE at BEAR's paper
settings (750-750, lr 3e-4, batch 256), its training loss averaged over each 1,000 steps and
its loss on 10,000 held-out transitions (a fixed sample, never trained on) every 1,000 steps.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import torch

from bearl.algos.base import adam
from bearl.algos.bear import BEARConfig
from bearl.data.load import load_dataset
from bearl.nets import VAE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", default="-")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    cfg = BEARConfig()
    ds = load_dataset(a.dataset)
    held = torch.randperm(len(ds), generator=torch.Generator().manual_seed(123))[:10_000]
    obs_h = torch.as_tensor(ds.observations[held.numpy()])
    act_h = torch.as_tensor(ds.actions[held.numpy()])
    vae = VAE(ds.obs_dim, ds.act_dim, cfg.vae_hidden)
    opt = adam(vae, cfg.vae_lr)
    sampler = ds.sampler(cfg.batch_size, "cpu", seed=a.seed)
    out = sys.stdout if a.out == "-" else open(a.out, "w", newline="")
    w = csv.writer(out)
    w.writerow(["step", "train_loss", "heldout_loss", "seconds"])
    total, t0 = 0.0, time.time()
    for step in range(1, a.steps + 1):
        b = sampler.sample()
        loss = vae.loss(b.observations, b.actions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
        if step % 1000 == 0:
            with torch.no_grad(), torch.random.fork_rng():
                torch.manual_seed(0)
                held_loss = float(vae.loss(obs_h, act_h))
            w.writerow([step, f"{total / 1000:.6f}", f"{held_loss:.6f}", f"{time.time() - t0:.1f}"])
            out.flush()
            total = 0.0


if __name__ == "__main__":
    main()
