"""IQL: Implicit Q-Learning (Kostrikov, Nair, Levine; ICLR 2022).

IQL never evaluates a Q-function on an action outside the data: the maximum over actions in
the Bellman backup is replaced by an upper expectile of Q over the dataset's actions, and the
policy is extracted afterwards by advantage-weighted regression. Read top to bottom. Pieces
(paper equation in brackets):

1. Value function by expectile regression (Eq. 5):
   L_V = E_(s,a)~D [ L2_tau(Q'(s, a) - V(s)) ],  L2_tau(u) = |tau - 1(u < 0)| * u^2,
   with Q' = min_k Q'_k over the twin TARGET critics and tau = ``expectile`` (0.7).
2. Critics on the value of the next state (Eq. 6):
   L_Q = sum_k E [ (r + gamma * (1 - terminal) * V(s') - Q_k(s, a))^2 ].
3. Actor by advantage-weighted regression (Eq. 7):
   L_pi = -E_(s,a)~D [ min(exp(beta * (Q'(s, a) - V(s))), max_weight) * log pi(a|s) ],
   beta the inverse temperature (3.0 for locomotion), max_weight the clip of the weights (100).
4. Polyak averaging of the target critics (tau 0.005).

The steps run in the authors' order on one minibatch: V first (from the target critics), then
the critics and the actor, both with the V just updated, then the Polyak step.

Rewards: ``prepare(dataset)`` sets ``reward_scale = 1000 / (max - min episode return)`` (the
authors' locomotion normalisation; ``normalize_rewards``) and every update multiplies the
batch's rewards by it, so the networks learn in scaled units. Every logged value (``v``,
``q_data``, ``q_target``, ``adv``) is divided back into the dataset's reward units and the two
squared-error losses by its square, so they read like the other algorithms'; so does
``q_value`` (the diagnostics). ``weight`` is unitless: exp(beta * reward_scale * adv).

Acting: ``deterministic=True`` the mean tanh(f(s)) (how the authors evaluate); otherwise one
sample of the Gaussian, clamped to [-1, 1].

Differences from the paper and the authors' code (docs/algorithms.md lists them): the policy is
the authors' Gaussian N(tanh(f(s)), exp(log_std)^2) with a state-independent log-std; their
cosine decay of the actor's learning rate runs over ``actor_lr_decay_steps`` (their run length,
1M, in the ``original`` preset), because an algorithm does not know the run's ``--steps``; the
networks keep PyTorch's default initialisation (theirs: orthogonal).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bearl.algos.base import Algorithm, soft_update
from bearl.algos.settings import ActorSettings, BatchSettings, CriticSettings
from bearl.data.dataset import Batch
from bearl.nets import EnsembleCritic, GaussianActor, MeanAction, ValueNet


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """L2_tau(u) = |tau - 1(u < 0)| * u^2 elementwise: a positive residual (the target above the
    prediction) weighs ``expectile``, a negative one ``1 - expectile``."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff.pow(2)


def cosine_lr(lr: float, step: int, decay_steps: int) -> float:
    """``lr * (1 + cos(pi * t / T)) / 2`` at gradient step t (0 on the first), 0 from T on."""
    t = min(step, decay_steps) / decay_steps
    return lr * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class IQLConfig(BatchSettings, ActorSettings, CriticSettings):
    """IQL hyperparameters. Defaults are the ``paper`` preset (Kostrikov et al., Appendix:
    256-256 networks, Adam at lr 3e-4, batch 256, the locomotion expectile and temperature)."""

    expectile: float = 0.7
    """Expectile tau of the value regression: a residual Q' - V > 0 weighs tau, one < 0 weighs
    1 - tau (0.5: V is the mean of Q' over the data's actions; towards 1: their maximum)."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights exp(beta * (Q' - V)) (the authors'
    ``temperature``, d3rlpy's ``weight_temp``)."""
    max_weight: float = 100.0
    """Clip of the advantage weights: min(exp(beta * A), max_weight)."""
    normalize_rewards: bool = True
    """Multiply rewards by 1000 / (max - min episode return of the dataset), computed once by
    prepare() and kept in the checkpoint (the authors' locomotion normalisation). The logged
    values and losses are converted back to the dataset's reward units."""
    value_lr: float = 3e-4
    """Adam learning rate of the state-value network V(s)."""
    value_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of the state-value network V(s)."""
    actor_lr_decay_steps: int = 0
    """Decay the actor's learning rate to 0 along a cosine over this many gradient steps, and
    keep it at 0 after them (the authors' code: over its whole 1M-step run); 0: constant. To
    decay over a whole run, set it to the run's --steps."""
    actor_log_std_bounds: tuple[float, float] | None = (-5.0, 2.0)
    """Clamp of the policy's state-independent log-std (the authors' code: [-5, 2])."""
    # (gamma, tau, batch_size, actor_lr, critic_lr, the hidden sizes: settings.py)

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), not {self.expectile}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, not {self.beta}")
        if self.max_weight <= 0:
            raise ValueError(f"max_weight must be > 0, not {self.max_weight}")
        if self.actor_lr_decay_steps < 0:
            raise ValueError("actor_lr_decay_steps must be >= 0")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


# -- presets: overrides of IQLConfig's defaults ----------------------------------------------------
PRESETS: dict[str, dict] = {
    # the paper's appendix (locomotion): the dataclass defaults; lr 3e-4 for all three networks
    "paper": {},
    "original": {  # ikostrikov/implicit_q_learning, configs/mujoco_config.py + learner.py
        # learner.py: cosine decay of the actor lr over the run, train_offline.py's 1M max_steps
        "actor_lr_decay_steps": 1_000_000,
    },
}
# `bearl bench`: d3rlpy 2.8's IQLConfig defaults, so that both sides compute the same update
BENCH_SETTINGS: dict = {
    "batch_size": 256,
    "actor_hidden": (256, 256),
    "critic_hidden": (256, 256),
    "value_hidden": (256, 256),
    "expectile": 0.7,
    "beta": 3.0,  # d3rlpy's weight_temp
    "max_weight": 100.0,
}


class ClampedSample(nn.Module):
    """IQL's stochastic action rule: one Gaussian sample per state, clamped to [-1, 1]."""

    description = "one sample of the Gaussian policy N(tanh(f(s)), std), clamped (random)"

    def __init__(self, actor: GaussianActor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs)


class IQL(Algorithm):
    """Implicit Q-Learning; see the module docstring."""

    name: ClassVar[str] = "IQL"
    config_cls: ClassVar[type] = IQLConfig
    preset_docs: ClassVar[dict] = {
        "paper": "the IQL paper's locomotion settings (expectile 0.7, temperature 3.0)",
        "original": "the authors' code (ikostrikov/implicit_q_learning: cosine actor-lr decay)",
    }
    presets: ClassVar[dict] = PRESETS
    bench_settings: ClassVar[dict] = BENCH_SETTINGS

    def __init__(self, config: IQLConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        self.actor = GaussianActor(obs_dim, act_dim, c.actor_hidden, c.actor_log_std_bounds)
        self.critic = EnsembleCritic(obs_dim, act_dim, c.critic_hidden, n=2)
        self.value = ValueNet(obs_dim, c.value_hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        nets = {
            "actor": self.actor,
            "critic": self.critic,
            "value": self.value,
            "critic_target": self.critic_target,
        }
        optims = {
            "actor": (self.actor, c.actor_lr),
            "critic": (self.critic, c.critic_lr),
            "value": (self.value, c.value_lr),
        }
        self.add_networks(nets, optims)
        # rewards are multiplied by this in every update; set by prepare(), kept in extra_state
        self.reward_scale = torch.ones((), device=self.device)

    # -- the dataset's reward scale --------------------------------------------------------------
    def prepare(self, dataset: Any) -> None:
        """reward_scale = 1000 / (max - min episode return) (1 when ``normalize_rewards`` is off
        or every episode has the same return). Episodes end at terminals and timeouts, and the
        data's end cuts the last one (bearl.data.Dataset), as in the authors' code."""
        scale = 1.0
        returns = np.asarray(dataset.episode_returns, dtype=np.float64)
        if self.cfg.normalize_rewards and returns.size:
            span = float(returns.max() - returns.min())
            if span > 0 and math.isfinite(span):
                scale = 1000.0 / span
        self.reward_scale = torch.tensor(scale, device=self.device)

    # -- 1. value function by expectile regression -------------------------------------------------
    def _value_step(self, b: Batch, q_t: torch.Tensor) -> torch.Tensor:
        v = self.value(b.observations)
        loss = expectile_loss(q_t - v, self.cfg.expectile).mean()
        self.optimize("value", loss)
        return loss.detach()

    # -- 2. critics on r + gamma * (1 - terminal) * V(s') ---------------------------------------
    def _critic_step(self, b: Batch, rewards: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            y = rewards + self.cfg.gamma * (1.0 - b.terminals) * self.value(b.next_observations)
        q = self.critic(b.observations, b.actions)  # [2, B]
        loss = (q - y).pow(2).mean(1).sum()  # MSE(Q1, y) + MSE(Q2, y)
        self.optimize("critic", loss)
        s = self.reward_scale
        return {
            "critic_loss": loss.detach() / s.square(),
            "q_data": q.detach().mean() / s,
            "q_target": y.mean() / s,
        }

    # -- 3. actor by advantage-weighted regression ----------------------------------------------
    def _actor_step(self, b: Batch, q_t: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.cfg
        with torch.no_grad():
            v = self.value(b.observations)  # the V just updated, as the authors
            adv = q_t - v
            weight = torch.exp(c.beta * adv).clamp(max=c.max_weight)
        loss = -(weight * self.actor.log_prob(b.observations, b.actions)).mean()
        if c.actor_lr_decay_steps:
            lr = cosine_lr(c.actor_lr, self.step, c.actor_lr_decay_steps)
            for group in self.optims["actor"].param_groups:
                group["lr"] = lr
        self.optimize("actor", loss)
        s = self.reward_scale
        return {
            "actor_loss": loss.detach(),
            "v": v.mean() / s,
            "adv": adv.mean() / s,
            "weight": weight.mean(),
            "weight_clipped": (weight >= c.max_weight).float().mean(),
        }

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        rewards = batch.rewards * self.reward_scale
        with torch.no_grad():  # Q'(s, a): min over the target critics, used by V and the actor
            q_t = self.critic_target(batch.observations, batch.actions).min(0).values
        value_loss = self._value_step(batch, q_t)
        metrics = self._critic_step(batch, rewards)
        metrics.update(self._actor_step(batch, q_t))
        # -- 4. Polyak averaging of the target critics
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        self.step += 1
        return {"value_loss": value_loss / self.reward_scale.square(), **metrics}

    # -- acting ------------------------------------------------------------------------------------
    def action_rule(self, deterministic: bool = False) -> nn.Module:
        """One sample of the Gaussian policy, clamped to [-1, 1]; ``deterministic=True``: its
        mean tanh(f(s)) (the authors evaluate with the mean)."""
        if deterministic:
            return MeanAction(self.actor)
        return ClampedSample(self.actor)

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """min_k Q_k(s, a) in the dataset's reward units (the critics learn scaled rewards)."""
        return self.critic(obs, act).min(0).values / self.reward_scale

    def extra_state(self) -> dict:
        return {"reward_scale": self.reward_scale.detach().clone()}

    def load_extra_state(self, state: dict) -> None:
        self.reward_scale = torch.as_tensor(state["reward_scale"], device=self.device).float()
