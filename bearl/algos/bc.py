"""BC: behaviour cloning, supervised learning of the dataset's actions (no critic, no reward).

Three policy models (``bc_type``); only the one in use is built and trained:

* ``vae``: the original code's BC (``BCQ(cloning=True)``): a conditional VAE fit with
  reconstruction MSE + 0.5 KL; acting decodes one latent drawn from N(0, I) and clipped to
  +-``latent_clip_eval`` (0.25).
* ``gaussian``: a tanh-Gaussian policy fit by maximum likelihood,
  min -E log pi(a|s), with a = tanh(u) and u = atanh(a) for the dataset action (clamped to
  +-(1 - action_eps) so boundary actions have a finite likelihood). Acting: tanh(mu(s)).
* ``deterministic``: a = tanh(f(s)) fit by mean squared error to the dataset action.

``bc_loss`` is the fitted loss: the VAE loss, the negative log-likelihood (it can go below 0,
as any continuous density), or the MSE.

Differences from the original code (docs/algorithms.md): the original also trained BCQ's
critics and perturbation actor, which its BC never used; bearl trains only the policy model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bearl.algos.base import Algorithm
from bearl.algos.settings import ORIGINAL_VAE, ActorSettings, BatchSettings, VAESettings
from bearl.data.dataset import Batch
from bearl.nets import VAE, ActorAction, DeterministicActor, MeanAction, TanhGaussianActor

BC_TYPES = ("vae", "gaussian", "deterministic")


@dataclass
class BCConfig(BatchSettings, ActorSettings, VAESettings):
    """BC hyperparameters. Defaults are the ``paper`` preset (tanh-Gaussian maximum likelihood);
    ``original`` is the original code's VAE cloning."""

    bc_type: str = "gaussian"
    """Policy model: ``vae`` (original), ``gaussian`` (max likelihood) or ``deterministic``
    (MSE)."""
    latent_clip_eval: float = 0.25
    """bc_type=vae: clip of the N(0, I) latent when acting (the original's 0.25)."""
    action_eps: float = 1e-4
    """bc_type=gaussian: dataset actions are clamped to +-(1 - action_eps) before atanh."""
    # (batch_size, actor_lr, actor_hidden: the gaussian or deterministic policy's; vae_lr,
    # vae_hidden: bc_type=vae's; settings.py)
    vae_lr: float = 1e-3
    actor_log_std_bounds: tuple[float, float] | None = (-5.0, 2.0)
    """bc_type=gaussian: clamp of the policy's log-std (None: unclamped)."""

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        self.validate_vae()
        if self.bc_type not in BC_TYPES:
            raise ValueError(f"bc_type must be one of {', '.join(BC_TYPES)}, not {self.bc_type!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0.0 < self.action_eps < 1.0:
            raise ValueError("action_eps must be in (0, 1)")
        if self.latent_clip_eval < 0:
            raise ValueError("latent_clip_eval must be >= 0")


class VAEDecode(nn.Module):
    """BC-vae's action rule: decode a latent drawn from N(0, I) clipped to +-``clip``, or the
    latent z = 0 (``clip=None``: deterministic)."""

    def __init__(self, vae: VAE, clip: float | None) -> None:
        super().__init__()
        self.vae, self.clip = vae, clip
        self.description = (
            "the VAE decoding of z = 0"
            if clip is None
            else f"the VAE decoding of z ~ N(0, I) clipped to +-{clip:g} (random)"
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = obs.new_zeros(*obs.shape[:-1], self.vae.latent_dim)
        if self.clip is not None:
            z = torch.randn_like(z).clamp(-self.clip, self.clip)
        return self.vae.decode(obs, z)[0]


class BC(Algorithm):
    """Behaviour cloning with a VAE, a tanh-Gaussian or a deterministic policy."""

    name: ClassVar[str] = "BC"
    config_cls: ClassVar[type] = BCConfig
    preset_docs: ClassVar[dict] = {
        "paper": "tanh-Gaussian maximum likelihood, the D4RL paper's BC",
        "original": "the BEAR code's BC: BCQ's VAE cloning",
    }
    presets: ClassVar[dict] = {
        "paper": {},  # tanh-Gaussian maximum likelihood: the defaults
        "original": {  # BCQ(cloning=True): VAE cloning
            "bc_type": "vae",
            **ORIGINAL_VAE,
            "batch_size": 100,
        },
    }
    bench_settings: ClassVar[dict] = {  # d3rlpy's BC (deterministic, MSE)
        "batch_size": 100,
        "actor_hidden": (256, 256),
        "bc_type": "deterministic",
    }

    def __init__(self, config: BCConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        if c.bc_type == "vae":
            self.policy = VAE(obs_dim, act_dim, c.vae_hidden, kl_weight=c.vae_kl_weight)
            name, lr = "vae", c.vae_lr
        elif c.bc_type == "gaussian":
            self.policy = TanhGaussianActor(
                obs_dim, act_dim, c.actor_hidden, c.actor_log_std_bounds
            )
            name, lr = "actor", c.actor_lr
        else:
            self.policy = DeterministicActor(obs_dim, act_dim, c.actor_hidden)
            name, lr = "actor", c.actor_lr
        self.add_networks({name: self.policy}, {"policy": (self.policy, lr)})

    # -- the fitted loss ---------------------------------------------------------------------------
    def loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The ``bc_type``'s supervised loss on dataset pairs (s, a)."""
        c = self.cfg
        if c.bc_type == "vae":
            return self.policy.loss(obs, actions)
        if c.bc_type == "gaussian":
            pre_tanh = torch.atanh(actions.clamp(-1.0 + c.action_eps, 1.0 - c.action_eps))
            return -self.policy.log_prob(obs, pre_tanh).mean()
        return F.mse_loss(self.policy(obs), actions)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.loss(batch.observations, batch.actions)
        self.optimize("policy", loss)
        self.step += 1
        return {"bc_loss": loss.detach()}

    # -- acting ------------------------------------------------------------------------------------
    def action_rule(self, deterministic: bool = False) -> nn.Module:
        """vae: decode a latent drawn from N(0, I) clipped to +-latent_clip_eval (the original's
        rule), or the latent z = 0 with ``deterministic``; gaussian: the mean action
        tanh(mu(s)) either way (BC is evaluated at its mean); deterministic: tanh(f(s))."""
        c = self.cfg
        if c.bc_type == "vae":
            return VAEDecode(self.policy, None if deterministic else c.latent_clip_eval)
        if c.bc_type == "gaussian":
            return MeanAction(self.policy)
        return ActorAction(self.policy)
