"""DQfD on a fixed dataset: TD3 with a large-margin demonstration loss in the critic (Hester et
al., AAAI 2018), in the continuous-action form of the BEAR repository.

Read top to bottom. Pieces:

1. (``demo_action=vae`` only) Behaviour model: a conditional VAE whose samples serve as the
   "demonstration" actions, as in the original code.
2. Critics: TD3's twin-critic target with target policy smoothing,
   y = r + gamma * (1 - terminal) * min_k Q'_k(s', clamp(mu'(s') + clip(eps, -c, c), -1, 1)),
   plus the large-margin loss that asks the demonstrated action to beat the policy's by a margin:
   L = sum_k MSE(Q_k(s, a), y) + lamda * mean( relu(Q_1(s, mu(s)) + margin - Q_1(s, a_demo)) ).
3. Actor (every ``policy_freq`` gradient steps): maximise Q_1(s, mu(s)).
4. Polyak averaging of both targets, on the actor's steps only.

Acting: mu(s).

``critic_loss`` is the whole critic objective, td_loss + lamda * margin_loss (as the original's
"Critic Loss"); ``td_loss`` alone is comparable with the other algorithms' critic losses.

Differences from the original code (docs/algorithms.md): the demonstration action defaults to
the dataset action (``demo_action=dataset``); the original used one VAE sample
(``demo_action=vae``, the ``original`` preset), which needs a VAE trained alongside.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from bearl.algos.base import Algorithm, adam, soft_update
from bearl.data.dataset import Batch
from bearl.nets import VAE, DeterministicActor, EnsembleCritic


def margin_loss(q_policy: torch.Tensor, q_demo: torch.Tensor, margin: float) -> torch.Tensor:
    """mean relu(Q(s, mu(s)) + margin - Q(s, a_demo)): zero once every demonstrated action is
    valued at least ``margin`` above the policy's action."""
    return F.relu(q_policy + margin - q_demo).mean()


@dataclass
class DQfDConfig:
    """DQfD hyperparameters. Defaults are the ``paper`` preset (TD3's paper preset plus the
    margin loss on dataset actions); ``original`` is the BEAR code's (400-300, lr 1e-3, batch
    100, VAE demonstrations, lamda 0.5)."""

    margin_threshold: float = 10.0
    """Margin by which Q_1 of the demonstrated action should exceed Q_1 of the policy's action
    (the original's --margin_threshold default, 10)."""
    lamda: float = 1.0
    """Weight of the margin loss in the critic loss (the original passed --lamda, default 0.5)."""
    demo_action: str = "dataset"
    """The demonstrated action: ``dataset`` (the transition's action) or ``vae`` (one sample of
    a VAE trained on the dataset, as the original)."""
    policy_noise: float = 0.2
    """Std of the Gaussian noise added to the target action (target policy smoothing)."""
    noise_clip: float = 0.5
    """The target noise is clipped to [-noise_clip, noise_clip] per action dimension."""
    policy_freq: int = 2
    """The actor and the targets are updated every this many gradient steps."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the critic and actor targets."""
    batch_size: int = 256
    """Transitions per gradient step."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    vae_lr: float = 1e-3
    """Adam learning rate of the VAE (demo_action=vae)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of the actor."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of each critic."""
    vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden layers of the VAE encoder and decoder (demo_action=vae)."""

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        if self.demo_action not in ("dataset", "vae"):
            raise ValueError(f"demo_action must be dataset or vae, not {self.demo_action!r}")
        if self.lamda < 0:
            raise ValueError("lamda must be >= 0")
        if self.policy_noise < 0 or self.noise_clip < 0:
            raise ValueError("policy_noise and noise_clip must be >= 0")
        for name in ("policy_freq", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class DQfD(Algorithm):
    """TD3 plus a large-margin loss towards demonstrated actions; see the module docstring."""

    name: ClassVar[str] = "DQfD"
    config_cls: ClassVar[type] = DQfDConfig

    def __init__(self, config: DQfDConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        self.actor = DeterministicActor(obs_dim, act_dim, c.actor_hidden)
        self.critic = EnsembleCritic(obs_dim, act_dim, c.critic_hidden, n=2)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.nets = {
            "actor": self.actor,
            "critic": self.critic,
            "actor_target": self.actor_target,
            "critic_target": self.critic_target,
        }
        self.optims = {
            "actor": adam(self.actor, c.actor_lr),
            "critic": adam(self.critic, c.critic_lr),
        }
        if c.demo_action == "vae":
            self.vae = VAE(obs_dim, act_dim, c.vae_hidden)
            self.nets["vae"] = self.vae
            self.optims["vae"] = adam(self.vae, c.vae_lr)
        for m in self.nets.values():
            m.to(self.device)
        # metrics of the latest actor step, reported on the steps in between
        self.actor_metrics: dict[str, torch.Tensor] = {}

    # -- 1. behaviour model (demo_action=vae) ------------------------------------------------------
    def _vae_step(self, b: Batch) -> torch.Tensor:
        loss = self.vae.loss(b.observations, b.actions)
        self.optimize("vae", loss)
        return loss.detach()

    @torch.no_grad()
    def demo_actions(self, b: Batch) -> torch.Tensor:
        """The demonstrated action per state: the dataset's, or one VAE sample."""
        if self.cfg.demo_action == "vae":
            return self.vae.decode(b.observations)[0]
        return b.actions

    # -- 2. critics with the margin loss ----------------------------------------------------------
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
        with torch.no_grad():
            pi = self.actor(b.observations)
        # one batched critic call on [dataset action, policy action (, VAE demonstration)]
        acts = [b.actions, pi] + ([self.demo_actions(b)] if self.cfg.demo_action == "vae" else [])
        q = self.critic(b.observations.unsqueeze(1), torch.stack(acts, 1))  # [2, B, 2 or 3]
        q_data = q[:, :, 0]  # [2, B]
        td = (q_data - y).pow(2).mean(1).sum()  # MSE(Q1, y) + MSE(Q2, y)
        q1_demo = q[0, :, 2] if len(acts) == 3 else q[0, :, 0]  # demo = dataset action: column 0
        margin = margin_loss(q[0, :, 1], q1_demo, self.cfg.margin_threshold)
        loss = td + self.cfg.lamda * margin
        self.optimize("critic", loss)
        return {
            "critic_loss": loss.detach(),
            "td_loss": td.detach(),
            "margin_loss": margin.detach(),
            "q_data": q_data.detach().mean(),
            "q_target": y.mean(),
        }

    # -- 3. delayed actor -----------------------------------------------------------------------
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
        metrics = {"vae_loss": self._vae_step(batch)} if self.cfg.demo_action == "vae" else {}
        metrics.update(self._critic_step(batch))
        if self.step % self.cfg.policy_freq == 0:
            self.actor_metrics = self._actor_step(batch)
            # -- 4. targets, on the actor's steps only (as TD3 and the original)
            soft_update(self.critic_target, self.critic, self.cfg.tau)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
        self.step += 1
        return {**metrics, **self.actor_metrics}

    # -- acting ------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """mu(s); ``deterministic`` changes nothing."""
        return self.actor(obs)

    def extra_state(self) -> dict:
        return {"actor_metrics": {k: v.clone() for k, v in self.actor_metrics.items()}}

    def load_extra_state(self, state: dict) -> None:
        self.actor_metrics = {
            k: v.to(self.device) for k, v in state.get("actor_metrics", {}).items()
        }
