"""How well the behaviour model (the conditional VAE of BEAR and BCQ) matches the policy that
made the data, and whether its latent variable still carries anything.

    python studies/bear_200k/behavior_fit.py studies/bear_200k/runs/BCQ_walker2d-medium_seed1 ...
    python studies/bear_200k/behavior_fit.py --fit walker2d-medium --steps 50000 --every 10000
    python studies/bear_200k/behavior_fit.py --fit walker2d-medium --steps 20000 --kl-weight 0.005

A bearl medium or expert dataset is rolled out from ONE shipped tanh-Gaussian policy
(docs/datasets.md), so the behaviour distribution pi_beta(a|s) is known exactly there. On 2,048
states of the dataset (a fixed draw) this prints, for each run folder's final checkpoint (it
needs the run's ``checkpoint.pt``, which the repository does not store), or for BEAR's VAE
fitted alone (``--fit``: BEAR's paper settings, 750-750, lr 3e-4, batch 256, as
``behavior_curve.py`` (studies/cheaper_runs); the VAE step of a joint BEAR run depends on
nothing else in the update, so this is the VAE such a run has at that step, up to its random draws):

* the behaviour policy's spread: the standard deviation of its actions per state and action
  dimension, averaged (in [-1, 1], 100 actions per state);
* the VAE's spread the same way, from 100 decodings per state with z ~ N(0, I) clipped to
  +-0.5, as BEAR's constraint and BCQ's candidates draw them;
* how far the VAE's per-state mean action is from the behaviour's (mean absolute difference per
  dimension), and for BEAR runs the actor's spread (on any data) and mean gap likewise;
* one distance between the two distributions that counts both: the Wasserstein-1 distance
  between 100 VAE decodings and 100 behaviour actions, per state and action dimension (sorted
  samples), averaged; beside it the same between two independent draws of the behaviour (what
  sampling alone gives);
* the encoder's KL to the prior, KL(q(z|s,a) || N(0, I)) summed over latent dimensions and
  averaged over the dataset's (state, action) pairs: near 0 the encoder says the same thing for
  every input (its posterior collapsed to the prior) and the decoder cannot use z;
* dead units: per hidden layer of the encoder (on the dataset's pairs) and of the decoder (on
  prior draws), the fraction of ReLU units that are zero for every input.

``--kl-weight`` changes the KL term's weight in the fitted VAE's loss (BCQ's and BEAR's is
0.5), to see which weight keeps the behaviour's spread (docs/results.md, "The behaviour model
is a point per state").

Without a single behaviour policy (random, medium-replay, medium-expert data) the behaviour
columns are left empty.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn

from bearl.data import load_dataset
from bearl.errors import BearlError
from bearl.nets import VAE, TanhGaussianActor

STATES = 2048
SAMPLES = 100


def behavior_policy(dataset: str) -> TanhGaussianActor | None:
    """The shipped policy that rolled out a bearl ``medium`` or ``expert`` dataset, else None."""
    from bearl.data.suite import load_shipped_policy, parse_name

    try:
        family, kind = parse_name(dataset)
    except BearlError:
        return None
    if kind not in ("medium", "expert"):
        return None
    return load_shipped_policy(family, kind)[0]


def dead_units(seq: nn.Sequential, x: torch.Tensor) -> list[float]:
    """Per hidden layer of an ``mlp`` (Linear, ReLU, ..., Linear): the fraction of its units
    that are zero for every row of ``x``."""
    out = []
    for layer in list(seq)[:-1]:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            out.append(float((x.amax(0) <= 0).float().mean()))
    return out


@torch.no_grad()
def diagnostics(
    vae: VAE,
    obs: torch.Tensor,
    act: torch.Tensor,
    behavior: TanhGaussianActor | None = None,
    actor: TanhGaussianActor | None = None,
    n: int = SAMPLES,
) -> dict[str, float | list[float]]:
    """The measures of the module docstring on states ``obs`` and the data's actions ``act``."""
    enc = vae.encoder(torch.cat([obs, act], -1))
    mean, log_std = enc.chunk(2, -1)
    std = log_std.clamp(-4.0, 15.0).exp()  # as VAE.forward
    kl = 0.5 * (mean.pow(2) + std.pow(2) - 1.0 - 2.0 * std.log()).sum(-1)
    z = torch.randn(obs.shape[0], vae.latent_dim).clamp(-vae.latent_clip, vae.latent_clip)
    vae_a = vae.decode(obs, n=n)[0]  # [B, n, A] in [-1, 1]
    out: dict[str, float | list[float]] = {
        "vae_std": float(vae_a.std(1).mean()),
        "kl": float(kl.mean()),
        "dead_encoder": dead_units(vae.encoder, torch.cat([obs, act], -1)),
        "dead_decoder": dead_units(vae.decoder, torch.cat([obs, z], -1)),
    }
    pi_a = None if actor is None else actor.sample(obs, n=n)[0]
    if pi_a is not None:
        out["actor_std"] = float(pi_a.std(1).mean())
    if behavior is not None:
        beh_a = behavior.sample(obs, n=n)[0]
        out["behavior_std"] = float(beh_a.std(1).mean())
        out["vae_mean_gap"] = float((vae_a.mean(1) - beh_a.mean(1)).abs().mean())
        out["vae_w1"] = w1(vae_a, beh_a)
        out["w1_floor"] = w1(behavior.sample(obs, n=n)[0], beh_a)
        if pi_a is not None:
            out["actor_mean_gap"] = float((pi_a.mean(1) - beh_a.mean(1)).abs().mean())
    return out


def w1(x: torch.Tensor, y: torch.Tensor) -> float:
    """Wasserstein-1 between the samples ``x`` and ``y`` [B, n, A] of each state and action
    dimension (equal n: the mean gap of the sorted samples), averaged over states and
    dimensions."""
    return float((x.sort(1).values - y.sort(1).values).abs().mean())


def states(dataset, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(len(dataset), (STATES,), generator=torch.Generator().manual_seed(seed))
    pick = idx.numpy()
    return torch.as_tensor(dataset.observations[pick]), torch.as_tensor(dataset.actions[pick])


HEAD = (
    "| {what} | behaviour std | VAE std | VAE mean gap | W1 VAE to behaviour (floor) | "
    "actor std | actor mean gap | encoder KL | dead encoder units | dead decoder units |"
)
COLUMNS = 10


def row(name: str, d: dict) -> str:
    def f(key: str) -> str:
        return f"{d[key]:.3f}" if key in d else ""

    def pct(xs: list[float]) -> str:
        return " / ".join(f"{x:.0%}" for x in xs)

    floor = f" ({d['w1_floor']:.3f})" if "w1_floor" in d else ""
    return (
        f"| {name} | {f('behavior_std')} | {f('vae_std')} | {f('vae_mean_gap')} | "
        f"{f('vae_w1')}{floor} | "
        f"{f('actor_std')} | {f('actor_mean_gap')} | {d['kl']:.3f} | "
        f"{pct(d['dead_encoder'])} | {pct(d['dead_decoder'])} |"
    )


def of_run(run: Path) -> str:
    from bearl.policy.load import load_policy

    if not run.is_dir():
        return f"| {run} | (no such run folder) |||||||||"
    if not (run / "checkpoint.pt").is_file():
        return f"| {run.name} | (no checkpoint.pt: rerun it to measure) |||||||||"
    policy = load_policy(run, "final")
    algo = policy.algo
    vae = algo.behavior_vae()
    if vae is None:
        return f"| {run.name} | ({algo.name} has no behaviour VAE) |||||||||"
    name = str(policy.config["train"]["dataset"])
    obs, act = states(load_dataset(name))
    torch.manual_seed(0)
    actor = getattr(algo, "actor", None)
    actor = actor if isinstance(actor, TanhGaussianActor) else None
    return row(
        f"{run.name} (step {algo.step:,})", diagnostics(vae, obs, act, behavior_policy(name), actor)
    )


def fit(dataset: str, steps: int, every: int, seed: int, kl_weight: float = 0.5) -> None:
    """BEAR's VAE alone (paper settings; ``kl_weight`` 0.5 is BCQ's and BEAR's), measured
    every ``every`` steps."""
    from bearl.algos.base import adam
    from bearl.algos.bear import BEARConfig

    torch.manual_seed(seed)
    cfg = BEARConfig()
    ds = load_dataset(dataset)
    obs, act = states(ds, seed=123)
    behavior = behavior_policy(dataset)
    vae = VAE(ds.obs_dim, ds.act_dim, cfg.vae_hidden, kl_weight=kl_weight)
    opt = adam(vae, cfg.vae_lr)
    sampler = ds.sampler(cfg.batch_size, "cpu", seed=seed)
    print(HEAD.format(what="VAE steps"))
    print("|---" * COLUMNS + "|")
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step % every == 0:
            state = torch.get_rng_state()
            torch.manual_seed(step)
            print(row(f"{step:,}", diagnostics(vae, obs, act, behavior)), flush=True)
            torch.set_rng_state(state)
        if step == steps:
            break
        b = sampler.sample()
        loss = vae.loss(b.observations, b.actions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(f"\n{steps:,} steps in {time.perf_counter() - t0:.0f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="run folders of BEAR or BCQ")
    p.add_argument("--fit", metavar="DATASET", help="fit BEAR's VAE alone on this dataset")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kl-weight",
        type=float,
        default=0.5,
        help="with --fit: the KL term's weight in the VAE's loss (0.5: BCQ's and BEAR's)",
    )
    a = p.parse_args()
    torch.set_num_threads(1)
    if not a.runs and not a.fit:
        p.error("give run folders, or --fit DATASET")
    if a.runs:
        print(HEAD.format(what="run"))
        print("|---" * COLUMNS + "|")
        for run in a.runs:
            print(of_run(run), flush=True)
    if a.fit:
        if a.runs:
            print()
        fit(a.fit, a.steps, a.every, a.seed, a.kl_weight)


if __name__ == "__main__":
    main()
