"""TD3+BC: TD3 with a behaviour-cloning term (Fujimoto & Gu; NeurIPS 2021, "A Minimalist
Approach to Offline Reinforcement Learning").

TD3 (td3.py) with two changes, read top to bottom:

0. States normalised with the dataset's per-dimension mean and std (Sec. 5, Eq. 5):
   s_i <- (s_i - mu_i) / (sigma_i + eps), eps = 1e-3. The statistics are fitted once on the
   whole dataset (``prepare``), kept as buffers of ``obs_norm`` (so checkpoints, resumed runs
   and exported policies have them) and applied to every state the networks see.
1. Critics: TD3's, unchanged (clipped double-Q target with target policy smoothing).
2. Actor (every ``policy_freq`` steps), Eq. 3 and 4:
   pi = argmax_pi E_(s,a)~D [ lambda * Q_1(s, pi(s)) - (pi(s) - a)^2 ],
   lambda = alpha / ((1/N) sum_i |Q(s_i, a_i)|) over the minibatch, not differentiated;
   alpha = 2.5. The paper writes Q at the pairs (s_i, a_i); the authors' code takes Q_1 at the
   policy's actions pi(s_i), the same Q_1(s, pi(s)) the term maximises: bearl follows the code.
3. Polyak averaging of both targets on the actor's steps, as TD3.

Acting: pi(s) on the normalised state, with or without ``deterministic``.

The paper's settings are its code's (github.com/sfujim/TD3_BC): TD3's defaults (256-256, lr
3e-4, batch 256) and alpha 2.5; ``original`` is the same. The squared error is averaged over
batch and action dimensions, as the authors' ``F.mse_loss`` (the paper writes a sum over action
dimensions; with lambda normalised by |Q| the difference is a constant factor act_dim on the BC
term, and the code's is what produced the paper's numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bearl.algos.td3 import TD3, TD3Config
from bearl.data.dataset import Batch
from bearl.nets import DeterministicActor, ObsNormalizer


@dataclass
class TD3BCConfig(TD3Config):
    """TD3+BC hyperparameters. Defaults are the paper's (= its code's): TD3's, with alpha 2.5
    and normalised states."""

    alpha: float = 2.5
    """Weight of the Q term against the BC term: lambda = alpha / mean |Q| (paper, Eq. 4)."""
    normalize_states: bool = True
    """Normalise states with the dataset's mean and std (+1e-3), fitted once before training."""

    def validate(self) -> None:
        super().validate()
        if self.alpha < 0:
            raise ValueError("alpha must be >= 0")


class NormalizedActorAction(nn.Module):
    """The actor's action pi((s - mu) / sigma) on the normalised state."""

    description = "the deterministic actor tanh(f(s)) on the normalised state"

    def __init__(self, norm: ObsNormalizer, actor: DeterministicActor) -> None:
        super().__init__()
        self.norm, self.actor = norm, actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.norm(obs))


class TD3BC(TD3):
    """TD3+BC on a fixed dataset; see the module docstring."""

    name: ClassVar[str] = "TD3BC"
    config_cls: ClassVar[type] = TD3BCConfig
    preset_docs: ClassVar[dict] = {
        "paper": "the TD3+BC paper's settings (alpha 2.5, state normalisation)",
        "original": "the authors' code (sfujim/TD3_BC)",
    }
    presets: ClassVar[dict] = {
        "paper": {},  # TD3's defaults with alpha 2.5 (paper, Sec. 5 and Table 5)
        "original": {},  # the authors' code (sfujim/TD3_BC main.py): the same values
    }
    bench_settings: ClassVar[dict] = {  # d3rlpy's TD3PlusBC defaults
        "batch_size": 256,
        "actor_hidden": (256, 256),
        "critic_hidden": (256, 256),
        "alpha": 2.5,
    }

    def __init__(self, config: TD3BCConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        self.obs_norm = ObsNormalizer(obs_dim)
        self.add_networks({"obs_norm": self.obs_norm})

    # -- 0. state normalisation -----------------------------------------------------------------
    def prepare(self, dataset) -> None:
        if self.cfg.normalize_states:
            self.obs_norm.fit(dataset.observations)

    def _normalized(self, b: Batch) -> Batch:
        return b._replace(
            observations=self.obs_norm(b.observations),
            next_observations=self.obs_norm(b.next_observations),
        )

    # -- 2. actor: lambda * Q - behaviour cloning ------------------------------------------------
    def _actor_step(self, b: Batch) -> dict[str, torch.Tensor]:
        pi = self.actor(b.observations)
        self.critic.requires_grad_(False)  # gradients flow through Q into the actor only
        q1 = self.critic(b.observations, pi, member=0)
        self.critic.requires_grad_(True)
        lmbda = self.cfg.alpha / q1.abs().mean().detach()
        bc = F.mse_loss(pi, b.actions)
        loss = -lmbda * q1.mean() + bc
        self.optimize("actor", loss)
        return {
            "actor_loss": loss.detach(),
            "lambda": lmbda,
            "policy_q": q1.detach().mean(),
            "action_mse": bc.detach(),
        }

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        return super().update(self._normalized(batch))  # 1.-3. TD3's steps, on normalised states

    # -- acting and diagnostics see raw states ---------------------------------------------------
    def action_rule(self, deterministic: bool = False) -> nn.Module:
        """pi(s) on the normalised state; ``deterministic`` changes nothing (as TD3)."""
        return NormalizedActorAction(self.obs_norm, self.actor)

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.critic(self.obs_norm(obs), act).min(0).values
