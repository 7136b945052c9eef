"""Is BEAR's actor held away from its behaviour model, or only slow to reach it?

    python studies/bear_200k/bear_constraint_rate.py studies/bear_200k/runs/BEAR_hopper-medium_seed0

Needs the run's ``checkpoint.pt`` (not committed). From the checkpoint's actor, each variant
takes ``--steps`` Adam steps on the support constraint alone (the MMD between actor and VAE
samples, the run's kernel and sigma; alpha is left out, a constant factor that Adam's step does
not see) on fresh minibatches of the run's dataset, as training does, and prints the MMD on
2,048 held-out states (the run's estimator, its ``num_samples_match`` samples, fixed draws) as
it goes. Variants: the run's actor learning rate and sample count, ten times the learning rate,
5x the samples, and, instead of the MMD, a plain regression (MSE) of the actor's mean on the
VAE's per-state mean. Each starts with fresh Adam moments. The run's own progress.csv gives the
rate at which training moved the same distance, for comparison; the floor is the estimator
between two independent draws of the VAE (what an actor equal to it would score).
"""

from __future__ import annotations

import argparse
import copy
import csv
from pathlib import Path

import torch

from bearl.data import load_dataset
from bearl.kernels import mmd
from bearl.policy.load import load_policy

CHECK = (0, 250, 500, 1000, 2000)


def held_out_distance(actor, vae, obs, n: int, kernel: str, sigma: float) -> float:
    """The MMD on ``obs`` with ``n`` samples a side, the same draws for every call."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        beta = vae.decode(obs, n=n)[1]
        pre = actor.sample(obs, n=n)[1]
        return float(mmd(beta, pre, kernel, sigma).mean())


def vae_floor(vae, obs, n: int, c) -> float:
    """The estimator's value between two independent VAE draws: what a perfect actor scores."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(2)
        one, two = vae.decode(obs, n=n)[1], vae.decode(obs, n=n)[1]
        return float(mmd(one, two, c.kernel_type, c.mmd_sigma).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--steps", type=int, default=CHECK[-1])
    p.add_argument("--only", nargs="*", type=int, help="variant numbers (0-3) to run")
    a = p.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(a.run, "final")
    algo, c = policy.algo, policy.algo.cfg
    data = load_dataset(str(policy.config["train"]["dataset"]))
    gen = torch.Generator().manual_seed(0)
    held = torch.as_tensor(data.observations[torch.randint(len(data), (2048,), generator=gen)])
    n0, lr0 = c.num_samples_match, c.actor_lr
    variants = {
        f"as trained (lr {lr0:g}, {n0} samples)": (lr0, n0),
        f"lr x10 ({10 * lr0:g})": (10 * lr0, n0),
        f"{5 * n0} samples": (lr0, 5 * n0),
        "the actor's mean regressed on the VAE's (MSE, the run's lr)": (lr0, None),
    }
    checks = [s for s in CHECK if s <= a.steps]
    print(f"MMD on held-out states ({c.kernel_type}, sigma {c.mmd_sigma:g}, {n0} samples)")
    print(f"floor, two independent draws of the VAE: {vae_floor(algo.vae, held, n0, c):.4f}\n")
    print("| variant | " + " | ".join(f"step {s}" for s in checks) + " |")
    print("|---" * (1 + len(checks)) + "|")
    for i, (name, (lr, n)) in enumerate(variants.items()):
        if a.only is not None and i not in a.only:
            continue
        actor = copy.deepcopy(algo.actor).requires_grad_(True)
        opt = torch.optim.Adam(actor.parameters(), lr=lr)
        torch.manual_seed(0)
        out = []
        for step in range(a.steps + 1):
            if step in checks:
                out.append(held_out_distance(actor, algo.vae, held, n0, c.kernel_type, c.mmd_sigma))
            if step == a.steps:
                break
            idx = torch.randint(len(data), (c.batch_size,), generator=gen)
            obs = torch.as_tensor(data.observations[idx])
            with torch.no_grad():
                beta = algo.vae.decode(obs, n=n or n0)[1]
            if n is None:  # a plain regression of the mean on the VAE's per-state mean
                loss = (actor.dist_params(obs)[0] - beta.mean(1)).pow(2).sum(-1).mean()
            else:
                loss = mmd(beta, actor.sample(obs, n=n)[1], c.kernel_type, c.mmd_sigma).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in out) + " |")
    rows = list(csv.DictReader(open(a.run / "progress.csv", newline="")))
    if len(rows) >= 2 and "distance" in rows[0]:
        (s0, d0), (s1, d1) = [(int(float(r["Step"])), float(r["distance"])) for r in rows[-2:]]
        print(
            f"\ntraining (progress.csv, its minibatch estimate): distance {d0:.4f} at step {s0:,},"
            f" {d1:.4f} at {s1:,}: {(d1 - d0) / (s1 - s0) * 1000:+.5f} per 1,000 steps"
        )


if __name__ == "__main__":
    main()
