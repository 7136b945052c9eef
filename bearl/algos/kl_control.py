"""KL-Control: actor-critic with a KL penalty towards the behaviour policy (Jaques et al., 2019),
in the continuous-action form of the BEAR repository.

Read top to bottom. Pieces (alpha = exp(log_alpha), beta = behaviour model, pi = actor):

1. Behaviour model beta(a|s): a tanh-Gaussian policy fit by maximum likelihood on the dataset
   actions (the same architecture as the actor).
2. Critics: twin Q-functions on a KL-regularised target with one action a' ~ pi(.|s'):
   y = r + gamma * (1 - terminal) * [ min_k Q'_k(s', a') + alpha * (log beta - log pi)(a'|s') ].
3. Actor (every ``policy_freq`` gradient steps), reparameterised a ~ pi(.|s):
   min_pi E_s[ -Q_1(s, a) + alpha * (log pi(a|s) - log beta(a|s)) ].
4. Temperature: one gradient step on log_alpha with loss alpha * (target_kl - KL_hat), so alpha
   grows while the estimated KL_hat = E[log pi - log beta] is above ``target_kl`` and shrinks
   below it; then log_alpha is clamped to [log_alpha_min, log_alpha_max].
5. Polyak averaging of the critic target on the actor's steps.

Acting: a sample from pi; ``deterministic=True``: tanh(mu(s)).

Differences from the original code (docs/algorithms.md): log_alpha starts at ``init_log_alpha``
(original: N(0, 1)) and is clamped (original: no clamp); no unused target actor is kept (the
original maintained one but sampled a' from the current actor).
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
from bearl.nets import EnsembleCritic, MeanAction, SampledAction, TanhGaussianActor


@dataclass
class KLControlConfig(BatchSettings, ActorSettings, CriticSettings):
    """KL-Control hyperparameters. Defaults are the ``paper`` preset (no published continuous
    setup: bearl uses 256-256 networks, lr 3e-4, batch 256, gamma 0.99); ``original`` is the
    BEAR code's (400-300, lr 1e-3, batch 100, gamma 0.98)."""

    target_kl: float = 0.1
    """KL(pi || beta) the temperature is tuned towards (the original's 0.1)."""
    init_log_alpha: float = 0.0
    """Initial log temperature (the original drew it from N(0, 1))."""
    log_alpha_min: float = -5.0
    """Lower clamp of log alpha (the original has no clamp)."""
    log_alpha_max: float = 10.0
    """Upper clamp of log alpha (the original has no clamp)."""
    policy_freq: int = 2
    """The actor, the temperature and the critic target are updated every this many steps."""
    gamma: float = 0.99
    """Discount factor (the original code used 0.98)."""
    # (tau, batch_size, actor_lr, critic_lr, critic_hidden: settings.py, at their defaults)
    behavior_lr: float = 3e-4
    """Adam learning rate of the behaviour model."""
    alpha_lr: float = 1e-3
    """Adam learning rate of log alpha."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of the actor and of the behaviour model."""
    actor_log_std_bounds: tuple[float, float] | None = (-5.0, 2.0)
    """Clamp of the log-std of the actor and the behaviour model (original: unclamped)."""
    actor_noise_clip: float | None = None
    """Clip the actor's standard-normal noise when sampling in training (original: 0.5)."""
    action_eps: float = 1e-4
    """Dataset actions are clamped to +-(1 - action_eps) before atanh in the behaviour fit."""

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        if self.log_alpha_min > self.log_alpha_max:
            raise ValueError("log_alpha_min must be <= log_alpha_max")
        for name in ("policy_freq", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0.0 < self.action_eps < 1.0:
            raise ValueError("action_eps must be in (0, 1)")


class KLControl(Algorithm):
    """KL-regularised actor-critic; see the module docstring."""

    name: ClassVar[str] = "KLControl"
    config_cls: ClassVar[type] = KLControlConfig
    preset_docs: ClassVar[dict] = {
        "paper": "bearl's defaults (no published continuous-action setup)",
        "original": "the BEAR repository's settings",
    }
    presets: ClassVar[dict] = {
        "paper": {},  # no published continuous setup: bearl's defaults
        "original": {  # the BEAR repository's
            **ORIGINAL_CODE,
            "behavior_lr": 1e-3,
            "gamma": 0.98,
            "actor_log_std_bounds": None,
            "actor_noise_clip": 0.5,
        },
    }

    def __init__(self, config: KLControlConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        self.actor = TanhGaussianActor(obs_dim, act_dim, c.actor_hidden, c.actor_log_std_bounds)
        self.behavior = TanhGaussianActor(obs_dim, act_dim, c.actor_hidden, c.actor_log_std_bounds)
        self.critic = EnsembleCritic(obs_dim, act_dim, c.critic_hidden, n=2)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        nets = {
            "actor": self.actor,
            "behavior": self.behavior,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }
        self.log_alpha = torch.tensor(
            float(c.init_log_alpha), device=self.device, requires_grad=True
        )
        optims = {
            "actor": (self.actor, c.actor_lr),
            "behavior": (self.behavior, c.behavior_lr),
            "critic": (self.critic, c.critic_lr),
            "alpha": ([self.log_alpha], c.alpha_lr),
        }
        self.add_networks(nets, optims)
        # metrics of the latest actor step, reported on the steps in between
        self.actor_metrics: dict[str, torch.Tensor] = {}

    # -- 1. behaviour model ------------------------------------------------------------------------
    def _behavior_step(self, b: Batch) -> torch.Tensor:
        eps = self.cfg.action_eps
        pre_tanh = torch.atanh(b.actions.clamp(-1.0 + eps, 1.0 - eps))
        loss = -self.behavior.log_prob(b.observations, pre_tanh).mean()
        self.optimize("behavior", loss)
        return loss.detach()

    def _log_ratio(self, obs: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) - log beta(a|s) for a = tanh(pre_tanh); the tanh Jacobians cancel."""
        return self.actor.log_prob(obs, pre_tanh) - self.behavior.log_prob(obs, pre_tanh)

    # -- 2. critics ---------------------------------------------------------------------------
    @torch.no_grad()
    def _target(self, b: Batch) -> torch.Tensor:
        c = self.cfg
        s2 = b.next_observations
        next_a, next_pre = self.actor.sample(s2, noise_clip=c.actor_noise_clip)
        q = self.critic_target(s2, next_a).min(0).values  # [B]
        soft_v = q - self.log_alpha.exp() * self._log_ratio(s2, next_pre)
        return b.rewards + c.gamma * (1.0 - b.terminals) * soft_v

    def _critic_step(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self._target(b)
        q = self.critic(b.observations, b.actions)  # [2, B]
        loss = (q - y).pow(2).mean(1).sum()  # MSE(Q1, y) + MSE(Q2, y)
        self.optimize("critic", loss)
        return loss.detach(), q.detach().mean(), y.mean()

    # -- 3. actor and 4. temperature ------------------------------------------------------------
    def _actor_step(self, b: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        obs = b.observations
        alpha = self.log_alpha.exp().detach()
        a, pre = self.actor.sample(obs, noise_clip=c.actor_noise_clip)
        # gradients flow through Q and beta into the actor's action only
        self.critic.requires_grad_(False)
        self.behavior.requires_grad_(False)
        q1 = self.critic(obs, a, member=0)
        log_ratio = self._log_ratio(obs, pre)
        self.critic.requires_grad_(True)
        self.behavior.requires_grad_(True)
        loss = (-q1 + alpha * log_ratio).mean()
        self.optimize("actor", loss)

        kl = log_ratio.detach().mean()
        alpha_loss = self.log_alpha.exp() * (c.target_kl - kl)  # descent: alpha up if kl > target
        self.optimize("alpha", alpha_loss)
        with torch.no_grad():
            # a deviation: the original leaves log alpha unbounded
            self.log_alpha.clamp_(c.log_alpha_min, c.log_alpha_max)
        return {
            "actor_loss": loss.detach(),
            "policy_q": q1.detach().mean(),
            "kl_estimate": kl,
            "temperature": self.log_alpha.detach().exp(),
            "action_mse": F.mse_loss(a.detach(), b.actions),
        }

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        behavior_loss = self._behavior_step(batch)
        critic_loss, q_data, q_target = self._critic_step(batch)
        if self.step % self.cfg.policy_freq == 0:
            self.actor_metrics = self._actor_step(batch)
            # -- 5. target, on the actor's steps (as the original)
            soft_update(self.critic_target, self.critic, self.cfg.tau)
        self.step += 1
        return {
            "critic_loss": critic_loss,
            "behavior_loss": behavior_loss,
            "q_data": q_data,
            "q_target": q_target,
            **self.actor_metrics,
        }

    # -- acting ------------------------------------------------------------------------------------
    def action_rule(self, deterministic: bool = False) -> nn.Module:
        """A sample from pi (the original's rule, unclipped noise); ``deterministic=True``
        returns the mean action tanh(mu(s))."""
        return MeanAction(self.actor) if deterministic else SampledAction(self.actor)

    def extra_state(self) -> dict:
        return {
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_metrics": {k: v.clone() for k, v in self.actor_metrics.items()},
        }

    def load_extra_state(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_metrics = {
            k: v.to(self.device) for k, v in state.get("actor_metrics", {}).items()
        }
