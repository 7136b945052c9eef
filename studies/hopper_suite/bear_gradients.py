"""Which term of BEAR's actor loss moves the actor in a trained run: the support constraint
alpha * MMD or the Q term?

    python studies/hopper_suite/bear_gradients.py studies/bear_200k/runs/BEAR_walker2d-medium_seed0

Needs the run's ``checkpoint.pt`` (not committed: rerun the run to get it). On 256 states of the
run's dataset, draws each term's gradient with respect to the actor's parameters 20 times (new
actor and VAE samples each time, as 20 minibatch updates would) and prints, per term, the norm
of the mean gradient, the mean norm of a draw's deviation from it (the sampling noise) and
their ratio, and the cosine between the two mean gradients. The Q term is the actor loss's
(version 0: the minimum over the ensemble, on one actor sample per state).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bearl.data import load_dataset
from bearl.kernels import mmd
from bearl.policy.load import load_policy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--states", type=int, default=256)
    p.add_argument("--draws", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = load_policy(a.run, "final")
    algo, c = policy.algo, policy.algo.cfg
    data = load_dataset(str(policy.config["train"]["dataset"]))
    idx = torch.randint(len(data), (a.states,), generator=torch.Generator().manual_seed(0))
    obs = torch.as_tensor(data.observations[idx.numpy()])
    params = list(algo.actor.parameters())
    alpha = algo.log_alpha.exp().detach()

    def gradient(term: str) -> torch.Tensor:
        pi_a, pi_pre = algo.actor.sample(obs, n=c.num_samples_match)
        if term == "alpha * MMD":
            with torch.no_grad():
                beta = algo.vae.decode(obs, n=c.num_samples_match)[1]
            loss = (alpha * mmd(beta, pi_pre, c.kernel_type, c.mmd_sigma)).mean()
        else:
            loss = -algo.critic(obs.unsqueeze(1), pi_a[:, :1]).mean(-1).min(0).values.mean()
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    print(f"alpha = {float(alpha):.0f}")
    print("| term | norm of the mean gradient | sampling noise per draw | ratio |")
    print("|---|---:|---:|---:|")
    means = {}
    for term in ("alpha * MMD", "-Q"):
        g = torch.stack([gradient(term) for _ in range(a.draws)])
        means[term] = m = g.mean(0)
        noise = (g - m).norm(dim=1).mean()
        size, ratio = float(m.norm()), float(m.norm() / noise)
        print(f"| {term} | {size:.3g} | {float(noise):.3g} | {ratio:.2f} |")
    cos = torch.nn.functional.cosine_similarity(means["alpha * MMD"], means["-Q"], dim=0)
    print(f"\ncosine between the two mean gradients: {float(cos):.3f}")


if __name__ == "__main__":
    main()
