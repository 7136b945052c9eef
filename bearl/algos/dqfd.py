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

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bearl.algos.settings import ORIGINAL_CODE, ORIGINAL_VAE, BehaviorSettings, VAESettings
from bearl.algos.td3 import TD3, TD3Config
from bearl.data.dataset import Batch
from bearl.nets import VAE


def margin_loss(q_policy: torch.Tensor, q_demo: torch.Tensor, margin: float) -> torch.Tensor:
    """mean relu(Q(s, mu(s)) + margin - Q(s, a_demo)): zero once every demonstrated action is
    valued at least ``margin`` above the policy's action."""
    return F.relu(q_policy + margin - q_demo).mean()


@dataclass
class DQfDConfig(TD3Config, VAESettings, BehaviorSettings):
    """DQfD hyperparameters: TD3's (see TD3Config) plus the margin loss. Defaults are the
    ``paper`` preset (TD3's paper preset plus the margin loss on dataset actions); ``original``
    is the BEAR code's (400-300, lr 1e-3, batch 100, VAE demonstrations, lamda 0.5)."""

    margin_threshold: float = 10.0
    """Margin by which Q_1 of the demonstrated action should exceed Q_1 of the policy's action
    (the original's --margin_threshold default, 10)."""
    lamda: float = 1.0
    """Weight of the margin loss in the critic loss (the original passed --lamda, default 0.5)."""
    demo_action: str = "dataset"
    """The demonstrated action: ``dataset`` (the transition's action) or ``vae`` (one sample of
    a VAE trained on the dataset, as the original)."""
    vae_lr: float = 1e-3  # (vae_lr, vae_hidden: the VAE of demo_action=vae; settings.py)

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        super().validate()
        self.validate_vae()
        if self.demo_action not in ("dataset", "vae"):
            raise ValueError(f"demo_action must be dataset or vae, not {self.demo_action!r}")
        if self.lamda < 0:
            raise ValueError("lamda must be >= 0")
        self.validate_behavior()
        if self.behavior_model != "joint" and self.demo_action != "vae":
            raise ValueError(
                f"behavior_model={self.behavior_model} needs demo_action=vae (no VAE otherwise)"
            )


class DQfD(TD3):
    """TD3 plus a large-margin loss towards demonstrated actions; see the module docstring.
    Only the critic step differs from TD3 (and the optional VAE)."""

    name: ClassVar[str] = "DQfD"
    config_cls: ClassVar[type] = DQfDConfig
    preset_docs: ClassVar[dict] = {
        "paper": "TD3's paper settings with the margin loss on dataset actions",
        "original": "the BEAR repository's settings (VAE demo actions)",
    }
    presets: ClassVar[dict] = {
        "paper": {},  # TD3's paper settings plus the margin loss on dataset actions: the defaults
        "original": {
            **ORIGINAL_CODE,
            **ORIGINAL_VAE,
            "demo_action": "vae",
            "lamda": 0.5,  # main.py's --lamda default, passed to DQfD
        },
    }
    bench_settings: ClassVar[dict] = {}

    def __init__(self, config: DQfDConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        if config.demo_action == "vae":
            self.vae = VAE(obs_dim, act_dim, config.vae_hidden, kl_weight=config.vae_kl_weight)
            self.add_networks({"vae": self.vae}, {"vae": (self.vae, config.vae_lr)})

    # -- 1. behaviour model (demo_action=vae) ------------------------------------------------------
    @torch.no_grad()
    def demo_actions(self, b: Batch) -> torch.Tensor:
        """The demonstrated action per state: the dataset's, or one VAE sample."""
        if self.cfg.demo_action == "vae":
            return self.vae.decode(b.observations)[0]
        return b.actions

    # -- 2. critics with the margin loss (TD3's target) -------------------------------------------
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

    # -- 3. actor and targets: TD3's ---------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = {}
        if self.cfg.demo_action == "vae" and not self.behavior_frozen:
            vae_loss = self.vae.loss(batch.observations, batch.actions)
            self.optimize("vae", vae_loss)
            metrics["vae_loss"] = vae_loss.detach()
        return {**metrics, **super().update(batch)}

    def behavior_vae(self) -> nn.Module | None:
        return self.vae if self.cfg.demo_action == "vae" else None
