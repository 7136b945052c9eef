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

from bearl.algos.base import Algorithm, adam
from bearl.data.dataset import Batch
from bearl.nets import VAE, DeterministicActor, TanhGaussianActor

BC_TYPES = ("vae", "gaussian", "deterministic")


@dataclass
class BCConfig:
    """BC hyperparameters. Defaults are the ``paper`` preset (tanh-Gaussian maximum likelihood);
    ``original`` is the original code's VAE cloning."""

    bc_type: str = "gaussian"
    """Policy model: ``vae`` (original), ``gaussian`` (max likelihood) or ``deterministic``
    (MSE)."""
    latent_clip_eval: float = 0.25
    """bc_type=vae: clip of the N(0, I) latent when acting (the original's 0.25)."""
    action_eps: float = 1e-4
    """bc_type=gaussian: dataset actions are clamped to +-(1 - action_eps) before atanh."""
    batch_size: int = 256
    """Transitions per gradient step."""
    actor_lr: float = 3e-4
    """Adam learning rate of the gaussian or deterministic policy."""
    vae_lr: float = 1e-3
    """Adam learning rate of the VAE (bc_type=vae)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of the gaussian or deterministic policy."""
    vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden layers of the VAE encoder and decoder (bc_type=vae)."""
    actor_log_std_bounds: tuple[float, float] | None = (-5.0, 2.0)
    """bc_type=gaussian: clamp of the policy's log-std (None: unclamped)."""

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        if self.bc_type not in BC_TYPES:
            raise ValueError(f"bc_type must be one of {', '.join(BC_TYPES)}, not {self.bc_type!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0.0 < self.action_eps < 1.0:
            raise ValueError("action_eps must be in (0, 1)")
        if self.latent_clip_eval < 0:
            raise ValueError("latent_clip_eval must be >= 0")


class BC(Algorithm):
    """Behaviour cloning with a VAE, a tanh-Gaussian or a deterministic policy."""

    name: ClassVar[str] = "BC"
    config_cls: ClassVar[type] = BCConfig

    def __init__(self, config: BCConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        if c.bc_type == "vae":
            self.policy = VAE(obs_dim, act_dim, c.vae_hidden)
            self.nets = {"vae": self.policy}
            lr = c.vae_lr
        elif c.bc_type == "gaussian":
            self.policy = TanhGaussianActor(
                obs_dim, act_dim, c.actor_hidden, c.actor_log_std_bounds
            )
            self.nets = {"actor": self.policy}
            lr = c.actor_lr
        else:
            self.policy = DeterministicActor(obs_dim, act_dim, c.actor_hidden)
            self.nets = {"actor": self.policy}
            lr = c.actor_lr
        self.policy.to(self.device)
        self.optims = {"policy": adam(self.policy, lr)}

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
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """vae: decode a latent drawn from N(0, I) clipped to +-latent_clip_eval (the original's
        rule), or the latent z = 0 with ``deterministic``; gaussian: the mean action
        tanh(mu(s)) either way (BC is evaluated at its mean); deterministic: tanh(f(s))."""
        c = self.cfg
        if c.bc_type == "vae":
            z = obs.new_zeros(*obs.shape[:-1], self.policy.latent_dim)
            if not deterministic:
                z = torch.randn_like(z).clamp(-c.latent_clip_eval, c.latent_clip_eval)
            return self.policy.decode(obs, z)[0]
        if c.bc_type == "gaussian":
            return self.policy.deterministic(obs)
        return self.policy(obs)
