"""Fitted Q Evaluation (Le, Voloshin & Yue, ICML 2019) of many policies at once.

FQE fits Q^pi to a fixed dataset by regressing Q(s, a) on r + gamma * (1 - d) * Q'(s', a'),
a' ~ pi(s') drawn with the policy's own action rule, Q' a slowly following target network. The
policy's value is then the mean of Q(s0, pi(s0)) over the dataset's episode starts.

The critics of every policy (a run's snapshots, or the snapshots of several runs on one dataset)
train together as one batched ensemble of small MLPs: one minibatch, one matmul per layer for
all of them. Each policy gets ``heads`` critics, each fitted to its own bootstrap resample of the
dataset's episodes (Poisson(1) weights per episode, the same for every policy, so that policies
are compared on the same resamples); the spread of the heads' estimates gives the interval.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bearl.data.dataset import Dataset
from bearl.nets import EnsembleLinear
from bearl.progress import StepBar


@dataclass
class FQEConfig:
    """Settings of the FQE fit (defaults chosen from measurements: studies/offline_selection)."""

    steps: int = 20_000
    """Gradient steps of every critic."""
    batch_size: int = 256
    """Transitions per minibatch (the same minibatch for every critic)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each critic."""
    lr: float = 1e-4
    """Adam learning rate."""
    tau: float = 0.005
    """Soft update rate of the target critics."""
    gamma: float | None = None
    """Discount; None: the run's own ``gamma``."""
    heads: int = 5
    """Critics per policy, each on its own bootstrap resample of the episodes (1: no interval)."""
    start_samples: int = 10
    """Actions drawn per episode start for the estimate (the action rule may be random)."""
    seed: int = 0
    """Seed of the critics' initialisation, the resamples and the minibatches."""


class FQECritics(nn.Module):
    """``n`` independent MLP critics Q_i(s, a); inputs shared ``[B, S+A]`` or per critic
    ``[n, B, S+A]``; output ``[n, B]``."""

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        dims = [in_dim, *hidden]
        self.layers = nn.ModuleList(EnsembleLinear(n, i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.out = EnsembleLinear(n, dims[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x).relu_()
        return self.out(x).squeeze(-1)


@dataclass
class FQEResult:
    """Per policy: the estimate (mean over heads), its interval, and each head's estimate;
    discounted returns at the dataset's episode starts."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    heads: np.ndarray  # [policies, heads]
    seconds: float
    steps: int
    trace: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (step, estimates)


Rule = Callable[[torch.Tensor], torch.Tensor]


def fit_fqe(
    rules: Sequence[Rule],
    dataset: Dataset,
    cfg: FQEConfig,
    gamma: float,
    progress: bool = False,
    device: str | torch.device = "cpu",
    trace_every: int = 0,
) -> FQEResult:
    """FQE of every policy in ``rules`` (each maps observations ``[B, S]`` to actions ``[B, A]``
    in the dataset's action space) on ``dataset``; returns the value at its episode starts
    (and, with ``trace_every``, the estimates every that many steps, to see them converge)."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)  # the critics' initialisation, without moving the caller's RNG
    try:
        p, h = len(rules), max(1, int(cfg.heads))
        n = p * h
        s_dim, a_dim = dataset.obs_dim, dataset.act_dim
        critic = FQECritics(n, s_dim + a_dim, cfg.hidden).to(device)
        target = copy.deepcopy(critic).requires_grad_(False)
        opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr)

        sampler = dataset.sampler(cfg.batch_size, device, seed=cfg.seed)
        episode = torch.as_tensor(_episode_of_rows(dataset), device=device)
        weights = _bootstrap_weights(dataset.num_episodes, h, gen).to(device)  # [h, episodes]

        bar = StepBar(cfg.steps, 0, f"FQE of {p} policies", disable=not progress)
        trace: list[tuple[int, np.ndarray]] = []
        t0 = time.perf_counter()
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(len(dataset), (cfg.batch_size,), generator=gen).to(device)
            b = sampler.rows(idx)
            with torch.no_grad():
                nxt = torch.stack([rule(b.next_observations) for rule in rules])  # [p, B, A]
                nxt = nxt.repeat_interleave(h, dim=0)  # [n, B, A]: policy-major, heads inside
                s2 = b.next_observations.expand(n, -1, -1)
                q2 = target(torch.cat([s2, nxt], -1))
                y = b.rewards + gamma * (1.0 - b.terminals) * q2  # [n, B]
                w = weights[:, episode[idx]].repeat(p, 1)  # [n, B]
            q = critic(torch.cat([b.observations, b.actions], -1))  # shared input -> [n, B]
            loss = (w * (q - y).pow(2)).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for t, c in zip(target.parameters(), critic.parameters()):
                    t.lerp_(c, cfg.tau)
            if step % 100 == 0 or step == cfg.steps:
                bar.advance(step)
            if trace_every and step % trace_every == 0:
                values = _start_values(critic, rules, dataset, cfg.start_samples, h, device)
                trace.append((step, values.mean(1)))
        bar.finish()
        seconds = time.perf_counter() - t0
        per_head = _start_values(critic, rules, dataset, cfg.start_samples, h, device)
    finally:
        torch.random.set_rng_state(torch_state)
    est = per_head.mean(1)
    if h > 1:  # normal interval from the bootstrap heads' spread
        half = 1.96 * per_head.std(1, ddof=1)
    else:
        half = np.full(p, np.nan)
    return FQEResult(est, est - half, est + half, per_head, seconds, cfg.steps, trace)


@torch.no_grad()
def _start_values(critic, rules, dataset, samples, h, device) -> np.ndarray:
    """Mean over the episode starts of Q_i(s0, a0), a0 drawn ``samples`` times: ``[p, h]``."""
    s0 = torch.as_tensor(dataset.observations[dataset.episode_starts], device=device)
    p = len(rules)
    total = torch.zeros(p * h, dtype=torch.float64, device=device)
    for _ in range(samples):
        a0 = torch.stack([rule(s0) for rule in rules]).repeat_interleave(h, dim=0)
        q = critic(torch.cat([s0.expand(p * h, -1, -1), a0], -1))
        total += q.double().mean(1)
    return (total / samples).reshape(p, h).cpu().numpy()


def _episode_of_rows(dataset: Dataset) -> np.ndarray:
    """The episode index of every transition."""
    marks = np.zeros(len(dataset), dtype=np.int64)
    marks[dataset.episode_starts[1:]] = 1
    return np.cumsum(marks)


def _bootstrap_weights(episodes: int, heads: int, gen: torch.Generator) -> torch.Tensor:
    """Poisson(1) weight of every episode for each head (head 0 of one head: all ones)."""
    if heads == 1:
        return torch.ones(1, episodes)
    rate = torch.ones(heads, episodes)
    return torch.poisson(rate, generator=gen)


def discounted_reference(score: float, gamma: float, horizon: int = 1000) -> float:
    """A return per episode of ``horizon`` steps as the discounted return of the same reward
    spread evenly over the steps: ``score / horizon * (1 - gamma^horizon) / (1 - gamma)``."""
    return score / horizon * (1.0 - gamma**horizon) / (1.0 - gamma)


def normalized_value(value: float, ref_min: float, ref_max: float, gamma: float) -> float:
    """A discounted value on the dataset's normalized-score scale, with the references turned
    into discounted returns by :func:`discounted_reference` (an approximation: it assumes
    episodes of the full horizon with an even reward)."""
    lo, hi = discounted_reference(ref_min, gamma), discounted_reference(ref_max, gamma)
    return 100.0 * (value - lo) / (hi - lo) if math.isfinite(value) else math.nan
