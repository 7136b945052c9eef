"""BCQ: Batch-Constrained deep Q-learning (Fujimoto, Meger, Precup; ICML 2019), continuous.

Read top to bottom. Pieces:

1. Behaviour model: a conditional VAE G(a|s) fit to the dataset actions.
2. Perturbation actor xi(s, a) = phi * tanh(f(s, a)): the policy is a VAE sample moved by at
   most phi, ``pi(s) = clamp(a_vae + xi(s, a_vae), -1, 1)`` (actions live in [-1, 1] here, so
   phi is the original's phi * max_action).
3. Twin critics on the soft-clipped double-Q target over n perturbed VAE samples:
   y = r + gamma * (1 - terminal) * max_j [ lmbda * min_k Q'_k(s', a'_j)
   + (1 - lmbda) * max_k Q'_k(s', a'_j) ],  a'_j = xi'(s', G(s')) perturbed by the TARGET actor.
4. Actor: maximise Q_1(s, pi(s)) (deterministic policy gradient through the perturbation).
5. Polyak averaging of the critic and actor targets every step.

Acting: the argmax of Q_1 over ``num_eval_samples`` perturbed VAE samples per state.

Differences from the original code (docs/algorithms.md): the target respects ``terminals``
(the BEAR repository's copy ignored them until May 2020; the BCQ author's code always did).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bearl.algos.base import Algorithm, soft_update
from bearl.algos.settings import (
    ActorSettings,
    BatchSettings,
    BehaviorSettings,
    CriticSettings,
    VAESettings,
)
from bearl.data.dataset import Batch
from bearl.nets import VAE, EnsembleCritic, PerturbationActor, pick_best


@dataclass
class BCQConfig(BatchSettings, ActorSettings, CriticSettings, VAESettings, BehaviorSettings):
    """BCQ hyperparameters. Defaults are the original code's (its paper used the same), so the
    ``paper`` and ``original`` presets coincide."""

    phi: float = 0.05
    """Largest perturbation of a VAE action, per action dimension (actions in [-1, 1])."""
    lmbda: float = 0.75
    """Soft clipping in the target: lmbda * min + (1 - lmbda) * max over the twin critics."""
    num_backup_samples: int = 10
    """Perturbed VAE actions per next state in the target; the max over them is taken."""
    num_eval_samples: int = 10
    """Perturbed VAE candidates per state when acting; the one with the highest Q_1 is taken."""
    batch_size: int = 100  # (gamma, tau, vae_hidden: settings.py)
    actor_lr: float = 1e-3
    """Adam learning rate of the perturbation actor."""
    critic_lr: float = 1e-3
    vae_lr: float = 1e-3
    actor_hidden: tuple[int, ...] = (400, 300)
    """Hidden layers of the perturbation actor f(s, a)."""
    critic_hidden: tuple[int, ...] = (400, 300)

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        self.validate_vae()
        if self.phi < 0:
            raise ValueError(f"phi must be >= 0, not {self.phi}")
        if not 0.0 <= self.lmbda <= 1.0:
            raise ValueError(f"lmbda must be in [0, 1], not {self.lmbda}")
        for name in ("num_backup_samples", "num_eval_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        self.validate_behavior()


class PerturbedBest(nn.Module):
    """BCQ's action rule: ``n`` perturbed VAE samples per state and the one with the highest
    Q_1; with ``n=None`` (deterministic) the perturbed decoding of the latent z = 0."""

    def __init__(self, vae: VAE, actor: PerturbationActor, critic: EnsembleCritic, n) -> None:
        super().__init__()
        self.vae, self.actor, self.critic, self.n = vae, actor, critic, n
        self.description = (
            "the perturbed VAE decoding of z = 0"
            if n is None
            else f"argmax of Q_1 over {n} perturbed VAE samples per state (random)"
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.n is None:
            z = obs.new_zeros(*obs.shape[:-1], self.vae.latent_dim)
            return self.actor(obs, self.vae.decode(obs, z)[0])
        cand = self.actor(obs, self.vae.decode(obs, n=self.n)[0])  # [B, K, A]
        return pick_best(cand, self.critic(obs.unsqueeze(1), cand, member=0))  # by Q_1 [B, K]


class BCQ(Algorithm):
    """BCQ for continuous actions; see the module docstring."""

    name: ClassVar[str] = "BCQ"
    config_cls: ClassVar[type] = BCQConfig
    # BCQ's paper used its code's settings: the two presets are the defaults
    bench_settings: ClassVar[dict] = {  # d3rlpy's BCQ at the same sizes (`bearl bench`)
        "batch_size": 100,
        "actor_hidden": (256, 256),
        "critic_hidden": (256, 256),
        "vae_hidden": (256, 256),
        "num_backup_samples": 10,
    }
    bench_peer_flags: ClassVar[dict] = {"num_backup_samples": "--n-action-samples"}

    def __init__(self, config: BCQConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        self.vae = VAE(obs_dim, act_dim, c.vae_hidden, kl_weight=c.vae_kl_weight)
        self.actor = PerturbationActor(obs_dim, act_dim, c.actor_hidden, phi=c.phi)
        self.critic = EnsembleCritic(obs_dim, act_dim, c.critic_hidden, n=2)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        nets = {
            "vae": self.vae,
            "actor": self.actor,
            "critic": self.critic,
            "actor_target": self.actor_target,
            "critic_target": self.critic_target,
        }
        optims = {
            "vae": (self.vae, c.vae_lr),
            "actor": (self.actor, c.actor_lr),
            "critic": (self.critic, c.critic_lr),
        }
        self.add_networks(nets, optims)

    # -- 1. behaviour model ------------------------------------------------------------------------
    def _vae_step(self, b: Batch) -> torch.Tensor:
        loss = self.vae.loss(b.observations, b.actions)
        self.optimize("vae", loss)
        return loss.detach()

    # -- 2. perturbed VAE samples -----------------------------------------------------------------
    def candidates(self, obs: torch.Tensor, n: int, target: bool = False) -> torch.Tensor:
        """``n`` perturbed VAE actions per state, ``[B, n, A]``, from one batched call each."""
        with torch.no_grad():
            vae_a, _ = self.vae.decode(obs, n=n)  # latent clipped to +-0.5
        actor = self.actor_target if target else self.actor
        return actor(obs, vae_a)

    # -- 3. critics -----------------------------------------------------------------------------
    @torch.no_grad()
    def _target(self, b: Batch) -> torch.Tensor:
        c = self.cfg
        next_a = self.candidates(b.next_observations, c.num_backup_samples, target=True)
        q = self.critic_target(b.next_observations.unsqueeze(1), next_a)  # [2, B, K]
        soft = c.lmbda * q.min(0).values + (1.0 - c.lmbda) * q.max(0).values  # [B, K]
        return b.rewards + c.gamma * (1.0 - b.terminals) * soft.max(-1).values

    def _critic_step(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self._target(b)
        q = self.critic(b.observations, b.actions)  # [2, B]
        loss = (q - y).pow(2).mean(1).sum()  # MSE(Q1, y) + MSE(Q2, y)
        self.optimize("critic", loss)
        return loss.detach(), q.detach().mean(), y.mean()

    # -- 4. perturbation actor ------------------------------------------------------------------
    def _actor_step(self, b: Batch) -> dict[str, torch.Tensor]:
        obs = b.observations
        pi = self.candidates(obs, 1).squeeze(1)  # [B, A]
        self.critic.requires_grad_(False)  # gradients flow through Q into the actor only
        q1 = self.critic(obs, pi, member=0)
        self.critic.requires_grad_(True)
        loss = -q1.mean()
        self.optimize("actor", loss)
        return {
            "actor_loss": loss.detach(),
            "policy_q": q1.detach().mean(),
            "action_mse": F.mse_loss(pi.detach(), b.actions),
        }

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        behavior = {} if self.behavior_frozen else {"vae_loss": self._vae_step(batch)}
        critic_loss, q_data, q_target = self._critic_step(batch)
        metrics = self._actor_step(batch)
        # -- 5. targets
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        soft_update(self.actor_target, self.actor, self.cfg.tau)
        self.step += 1
        return {
            "critic_loss": critic_loss,
            **behavior,
            "q_data": q_data,
            "q_target": q_target,
            **metrics,
        }

    def behavior_vae(self) -> nn.Module:
        return self.vae

    # -- acting ------------------------------------------------------------------------------------
    def action_rule(self, deterministic: bool = False) -> nn.Module:
        """Argmax of Q_1 over ``num_eval_samples`` perturbed VAE samples per state (the
        original's rule). ``deterministic=True`` perturbs the VAE decoding of the latent z = 0
        instead, one candidate per state with no randomness."""
        n = None if deterministic else self.cfg.num_eval_samples
        return PerturbedBest(self.vae, self.actor, self.critic, n)
