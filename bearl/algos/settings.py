"""Settings that mean the same in every algorithm, each defined once.

An algorithm's config dataclass inherits the groups it uses and sets its own defaults by
declaring a field again with another default (its help text stays the one written here unless
the algorithm writes its own under it, for a meaning of its own). The docstring under a field is
its ``--help`` text (bearl.config reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The original NeurIPS 2019 BEAR repository ran all its algorithms with the same networks and
# optimisers: 400-300 actor and critics, every Adam at lr 1e-3, batch 100, a 750-750 VAE. Each
# algorithm's ``original`` preset starts from these.
ORIGINAL_CODE: dict[str, Any] = {
    "actor_hidden": (400, 300),
    "critic_hidden": (400, 300),
    "actor_lr": 1e-3,
    "critic_lr": 1e-3,
    "batch_size": 100,
}
ORIGINAL_VAE: dict[str, Any] = {"vae_hidden": (750, 750), "vae_lr": 1e-3}


@dataclass
class BatchSettings:
    batch_size: int = 256
    """Transitions per gradient step."""


@dataclass
class ActorSettings:
    actor_lr: float = 3e-4
    """Adam learning rate of the actor (the policy network)."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of the actor."""


@dataclass
class CriticSettings:
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of each critic."""


@dataclass
class VAESettings:
    vae_lr: float = 3e-4
    """Adam learning rate of the conditional VAE that models the behaviour policy."""
    vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden layers of the VAE encoder and decoder."""
    vae_kl_weight: float = 0.5
    """Weight of the KL term in the VAE's loss, both terms averaged over their elements (0.5:
    BCQ's and BEAR's). At 0.5 the VAE decodes about one action per state on data whose
    actions spread less than ~0.35 per state (studies/bear_200k/README.md, "The behaviour model is a
    point per state"); smaller keeps more of the spread."""

    def validate_vae(self) -> None:
        if not self.vae_kl_weight >= 0.0:
            raise ValueError(f"vae_kl_weight must be >= 0, not {self.vae_kl_weight}")


BEHAVIOR_MODELS = ("joint", "pretrained", "prefit")


@dataclass
class BehaviorSettings:
    behavior_model: str = "joint"
    """How the behaviour VAE is fitted: ``joint``, alongside everything else at every gradient
    step (the paper's and the original code's way); ``pretrained``: alone, for
    ``behavior_steps`` steps before training, cached per (dataset, VAE settings, seed, precision)
    so that later runs of any algorithm load it, and frozen while training (docs/bear.md);
    ``prefit``: the same cached fit to start from, then fitted at every step as ``joint`` (no
    cheaper than joint: it tells a head start from freezing, docs/performance.md)."""
    behavior_steps: int = 50_000
    """behavior_model=pretrained or prefit: gradient steps of the VAE's fit alone (chosen from
    its loss curve: docs/performance.md)."""

    def validate_behavior(self) -> None:
        if self.behavior_model not in BEHAVIOR_MODELS:
            raise ValueError(
                f"behavior_model must be one of {', '.join(BEHAVIOR_MODELS)}, "
                f"not {self.behavior_model!r}"
            )
        if self.behavior_steps < 1:
            raise ValueError("behavior_steps must be >= 1")
