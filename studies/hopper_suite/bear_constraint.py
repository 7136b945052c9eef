"""How tight BEAR's support constraint is in trained runs: is the MMD threshold reachable?

    python studies/hopper_suite/bear_constraint.py studies/hopper_suite/runs/BEAR_hopper-*_seed0

For each BEAR run folder (it needs the run's ``checkpoint.pt``, which the repository does not
store: rerun the suite to get them), prints

* from ``progress.csv``: the first evaluation step at which alpha sits at its upper clamp
  exp(lagrange_thresh), and alpha and the constraint distance at the end;
* from the final checkpoint, on 2,048 states of the run's dataset: the sampled MMD between
  two independent draws of the behaviour model (the VAE) itself, with the run's number of
  samples per state (``num_samples_match``) and with 100, i.e. the distance a policy equal to
  the behaviour model would get (the estimator's floor), and the actor's distance to the VAE.

If the floor with the run's sample count is above ``target_mmd_thresh``, the constraint can
never be met and alpha climbs to its clamp whatever the actor does. A second table says whether
a Gaussian policy could reach the floor (a per-state Gaussian fitted to 200 VAE samples,
against the VAE) and how the actor differs from the VAE (std and mean per action dimension,
pre-tanh).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch

from bearl.data import load_dataset
from bearl.kernels import mmd
from bearl.policy.load import load_policy


def at_clamp(run: Path, clamp: float) -> tuple[int | None, float, float]:
    """First step with alpha at ``clamp`` (1e-3 relative), final alpha, final distance."""
    with open(run / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first = next(
        (int(r["Step"]) for r in rows if abs(float(r["alpha"]) - clamp) <= 1e-3 * clamp), None
    )
    return first, float(rows[-1]["alpha"]), float(rows[-1]["distance"])


@torch.no_grad()
def distances(run: Path, states: int = 2048, seed: int = 0) -> dict[str, float]:
    policy = load_policy(run, "final")
    algo, c = policy.algo, policy.algo.cfg
    data = load_dataset(str(policy.config["train"]["dataset"]))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(data), (states,), generator=g)
    obs = torch.as_tensor(data.observations[idx.numpy()])
    torch.manual_seed(seed)

    def vae(o: torch.Tensor, n: int) -> torch.Tensor:
        return algo.vae.decode(o, n=n)[1]  # pre-tanh samples, as the constraint uses them

    def dist(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(mmd(x, y, c.kernel_type, c.mmd_sigma).mean())

    n = c.num_samples_match
    few = obs[:256]  # 100 samples per state: fewer states
    actor = algo.actor.sample(obs, n=n, noise_clip=c.actor_noise_clip)[1]
    out = {
        "eps": c.target_mmd_thresh,
        "n": n,
        "floor_n": dist(vae(obs, n), vae(obs, n)),
        "floor_100": dist(vae(few, 100), vae(few, 100)),
        "actor": dist(vae(obs, n), actor),
        "clamp": math.exp(c.lagrange_thresh),
    }
    # could a Gaussian policy reach the floor? a per-state Gaussian fitted to 200 VAE samples
    many = vae(obs, 200)
    mu, sd = many.mean(1, keepdim=True), many.std(1, keepdim=True)
    fit = mu + sd * torch.randn(obs.shape[0], n, many.shape[-1])
    actor_mu, actor_log_std = algo.actor.dist_params(obs)
    out.update(
        gauss=dist(vae(obs, n), fit),
        vae_sd=float(sd.mean()),
        actor_sd=float(actor_log_std.exp().mean()),
        mean_gap=float((actor_mu - mu.squeeze(1)).abs().mean()),
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    print(
        "| run | alpha at its clamp from step | final alpha | final distance | eps | "
        "VAE vs VAE, N samples | VAE vs VAE, 100 samples | actor vs VAE |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    shapes = []
    for run in a.runs:
        if not (run / "checkpoint.pt").is_file():
            print(f"| {run.name} | (no checkpoint.pt: rerun it to measure) ||||||| ")
            continue
        d = distances(run)
        first, alpha, distance = at_clamp(run, d["clamp"])
        print(
            f"| {run.name} | {first if first is not None else 'never'} | {alpha:.0f} | "
            f"{distance:.3f} | {d['eps']} | {d['floor_n']:.3f} (N={d['n']}) | "
            f"{d['floor_100']:.3f} | {d['actor']:.3f} |",
            flush=True,
        )
        shapes.append(
            f"| {run.name} | {d['gauss']:.3f} | {d['vae_sd']:.3f} | {d['actor_sd']:.3f} | "
            f"{d['mean_gap']:.3f} |"
        )
    if shapes:  # why the actor is where it is: the shape of both distributions (pre-tanh)
        print(
            "\n| run | Gaussian fit to the VAE vs VAE, N samples | VAE std per dim | "
            "actor std per dim | mean abs(actor mean - VAE mean) per dim |"
        )
        print("|---|---:|---:|---:|---:|")
        print("\n".join(shapes))


if __name__ == "__main__":
    main()
