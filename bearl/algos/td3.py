"""TD3: Twin Delayed DDPG (Fujimoto, van Hoof, Meger; ICML 2018), run offline and unchanged.

TD3 has no defence against actions outside the data, which is the point of running it here:
its Q-values on its own actions (``policy_q``) drift away from those on dataset actions
(``q_data``) and its actions drift from the data (``action_mse``), the extrapolation error BEAR
is designed to avoid. Read top to bottom:

1. Critics: twin Q-functions on the clipped double-Q target with target policy smoothing,
   y = r + gamma * (1 - terminal) * min_k Q'_k(s', clamp(mu'(s') + clip(eps, -c, c), -1, 1)),
   eps ~ N(0, policy_noise^2), c = noise_clip.
2. Actor (every ``policy_freq`` gradient steps): maximise Q_1(s, mu(s)).
3. Polyak averaging of both targets, on the actor's steps only.

Acting: mu(s), with or without ``deterministic``.

Differences from the original code (docs/algorithms.md): no VAE is trained (the original
trained one only to log an action divergence; ``action_mse`` measures the divergence from the
dataset action instead).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bearl.algos.base import Algorithm, soft_update
from bearl.algos.settings import ORIGINAL_CODE, ActorSettings, BatchSettings, CriticSettings
from bearl.data.dataset import Batch
from bearl.nets import ActorAction, DeterministicActor, EnsembleCritic


@dataclass
class TD3Config(BatchSettings, ActorSettings, CriticSettings):
    """TD3 hyperparameters. Defaults are the ``paper`` preset (the TD3 author's current
    settings: 256-256 networks, lr 3e-4, batch 256); ``original`` is the BEAR code's copy
    (400-300, lr 1e-3, batch 100)."""

    policy_noise: float = 0.2
    """Std of the Gaussian noise added to the target action (target policy smoothing)."""
    noise_clip: float = 0.5
    """The target noise is clipped to [-noise_clip, noise_clip] per action dimension."""
    policy_freq: int = 2
    """The actor and the targets are updated every this many gradient steps."""
    # (gamma, tau, batch_size, learning rates, hidden sizes: settings.py, at their defaults)

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        if self.policy_noise < 0 or self.noise_clip < 0:
            raise ValueError("policy_noise and noise_clip must be >= 0")
        for name in ("policy_freq", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class TD3(Algorithm):
    """TD3 on a fixed dataset; see the module docstring."""

    name: ClassVar[str] = "TD3"
    config_cls: ClassVar[type] = TD3Config
    preset_docs: ClassVar[dict] = {
        "paper": "the TD3 author's current settings",
        "original": "the BEAR code's copy of TD3",
    }
    presets: ClassVar[dict] = {
        "paper": {},  # the TD3 author's current settings: the defaults
        "original": ORIGINAL_CODE,  # the BEAR code's copy of TD3
    }
    bench_settings: ClassVar[dict] = {  # d3rlpy's TD3 defaults
        "batch_size": 256,
        "actor_hidden": (256, 256),
        "critic_hidden": (256, 256),
    }

    def __init__(self, config: TD3Config, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        self.actor = DeterministicActor(obs_dim, act_dim, c.actor_hidden)
        self.critic = EnsembleCritic(obs_dim, act_dim, c.critic_hidden, n=2)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        nets = {
            "actor": self.actor,
            "critic": self.critic,
            "actor_target": self.actor_target,
            "critic_target": self.critic_target,
        }
        self.add_networks(
            nets, {"actor": (self.actor, c.actor_lr), "critic": (self.critic, c.critic_lr)}
        )
        # metrics of the latest actor step, reported on the steps in between
        self.actor_metrics: dict[str, torch.Tensor] = {}

    # -- 1. critics ---------------------------------------------------------------------------
    @torch.no_grad()
    def smoothed_target_action(self, next_obs: torch.Tensor) -> torch.Tensor:
        """mu'(s') plus Gaussian noise clipped to +-noise_clip, clamped to [-1, 1]."""
        c = self.cfg
        a = self.actor_target(next_obs)
        noise = (torch.randn_like(a) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
        return (a + noise).clamp(-1.0, 1.0)

    @torch.no_grad()
    def _target(self, b: Batch) -> torch.Tensor:
        next_a = self.smoothed_target_action(b.next_observations)
        q = self.critic_target(b.next_observations, next_a)  # [2, B]
        return b.rewards + self.cfg.gamma * (1.0 - b.terminals) * q.min(0).values

    def _critic_step(self, b: Batch) -> dict[str, torch.Tensor]:
        y = self._target(b)
        q = self.critic(b.observations, b.actions)  # [2, B]
        loss = (q - y).pow(2).mean(1).sum()  # MSE(Q1, y) + MSE(Q2, y)
        self.optimize("critic", loss)
        return {"critic_loss": loss.detach(), "q_data": q.detach().mean(), "q_target": y.mean()}

    # -- 2. delayed actor -----------------------------------------------------------------------
    def _actor_step(self, b: Batch) -> dict[str, torch.Tensor]:
        pi = self.actor(b.observations)
        self.critic.requires_grad_(False)  # gradients flow through Q into the actor only
        q1 = self.critic(b.observations, pi, member=0)
        self.critic.requires_grad_(True)
        loss = -q1.mean()
        self.optimize("actor", loss)
        return {
            "actor_loss": loss.detach(),
            "policy_q": q1.detach().mean(),
            "action_mse": F.mse_loss(pi.detach(), b.actions),
        }

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = self._critic_step(batch)
        if self.step % self.cfg.policy_freq == 0:
            self.actor_metrics = self._actor_step(batch)
            # -- 3. targets, on the actor's steps only (as TD3)
            soft_update(self.critic_target, self.critic, self.cfg.tau)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
        self.step += 1
        return {**metrics, **self.actor_metrics}

    # -- acting ------------------------------------------------------------------------------------
    def action_rule(self, deterministic: bool = False) -> nn.Module:
        """mu(s); TD3 evaluates without exploration noise, so ``deterministic`` changes nothing."""
        return ActorAction(self.actor)

    def extra_state(self) -> dict:
        return {"actor_metrics": {k: v.clone() for k, v in self.actor_metrics.items()}}

    def load_extra_state(self, state: dict) -> None:
        self.actor_metrics = {
            k: v.to(self.device) for k, v in state.get("actor_metrics", {}).items()
        }
