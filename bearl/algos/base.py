"""The small protocol every algorithm follows (the registry is ``bearl/algos/__init__.py``).

An algorithm knows nothing about files, loggers or environments:

- ``__init__(config, obs_dim, act_dim, device)``
- ``prepare(dataset)``: statistics of the dataset it needs before the first update (TD3+BC's
  state normalisation, IQL's reward scale); called once on a new run, kept in the networks'
  buffers or ``extra_state`` so that a resumed run and an exported policy have them too;
- ``update(batch) -> dict[str, Tensor]``: one gradient step; returns 0-d metric tensors
  (kept on the device; the training loop averages them between log rows);
- ``action_rule(deterministic) -> nn.Module``: its action selection as a module over its live
  networks, mapping observations ``[B, obs_dim]`` to actions in [-1, 1]. ``act`` runs it, and
  ``bearl export`` traces the same module into TorchScript / ONNX, so there is one rule;
- ``state_dict()`` / ``load_state_dict()``: every network, optimizer and counter;
- ``q_value(obs, act) -> Tensor [B] | None``: the algorithm's Q estimate (default: the min over
  a ``critic`` EnsembleCritic; None without a critic), used by the diagnostics.

And as data, on the class: ``config_cls`` (a dataclass of its settings, see settings.py),
``presets`` (``paper`` / ``original`` overrides of the config's defaults), ``preset_docs`` (what
each preset is, in words: the start line of a run says it), ``env_presets``
(per preset, per env family), ``bench_settings`` (what ``bearl bench`` runs, matched to the
d3rlpy peer) and ``bench_peer_flags`` (how those settings are spelled for the peer). Three
class methods let an algorithm fit its preset to a run's length (``run_preset``), say what
extending such a run keeps (``extension_note``) and what ``--help`` states as the default
(``default_text``); configuration calls them for every algorithm alike.

Subclasses build their networks (in their own order: building one draws its initial weights)
and hand them to ``add_networks``, which lists them in ``self.nets``, moves them to the device
and gives each optimizer its Adam in ``self.optims`` (plain dicts); any extra tensors/counters go
in ``self.extra_state()``. The base class saves and restores them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from bearl.data.dataset import Batch
from bearl.nets import MATMUL_DTYPES, EnsembleCritic, set_matmul_dtype


class Algorithm:
    """Base class: state handling and Polyak updates shared by all algorithms."""

    name: ClassVar[str] = "?"
    config_cls: ClassVar[type]
    presets: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "original": {}}
    preset_docs: ClassVar[dict[str, str]] = {
        "paper": "the settings of its paper",
        "original": "the settings of its authors' code",
    }
    env_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    bench_settings: ClassVar[dict[str, Any]] = {}
    bench_peer_flags: ClassVar[dict[str, str]] = {}

    @classmethod
    def preset(cls, preset: str, family: str | None = None) -> dict[str, Any]:
        """The config values of ``preset`` (``paper`` or ``original``) for an env family."""
        return {**cls.presets.get(preset, {}), **cls.env_presets.get(preset, {}).get(family, {})}

    @classmethod
    def run_preset(cls, preset: str, family: str | None, steps: int) -> dict[str, Any]:
        """The config values ``preset`` gives a run of ``steps`` gradient steps (the values of
        ``preset()``; an algorithm that scales a setting to the run's length overrides it:
        BEAR's and CQL's warm start, bear.py)."""
        return cls.preset(preset, family)

    @classmethod
    def extension_note(
        cls, config: Any, preset: str, family: str | None, started: int, steps: int
    ) -> str | None:
        """What a run of ``config`` (``preset``, env ``family``) that started for ``started``
        steps keeps when extended to ``steps``, where a new ``steps``-step run would be set
        otherwise (``run_preset``); None when the two would not differ."""
        return None

    @classmethod
    def default_text(cls, name: str, steps: int) -> str | None:
        """``--help``'s default of setting ``name`` when a run's is not the config's default
        (a setting ``run_preset`` scales; ``steps``: the default ``--steps``); None: the
        config's default."""
        return None

    def __init__(self, config: Any, obs_dim: int, act_dim: int, device: str | torch.device) -> None:
        self.cfg = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.step = 0  # gradient steps taken

    def add_networks(
        self,
        nets: dict[str, nn.Module],
        optims: dict[str, tuple[nn.Module | list[torch.Tensor], float]] | None = None,
    ) -> None:
        """List ``nets`` in ``self.nets`` by name (after any listed before), move them to the
        device, then give each of ``optims`` (name -> (a network or a list of tensors, learning
        rate)) its Adam in ``self.optims``. Nothing here draws a random number: the networks'
        initial weights are drawn where the caller builds them."""
        for name, net in nets.items():
            self.nets[name] = net.to(self.device)
        for name, (params, lr) in (optims or {}).items():
            self.optims[name] = adam(params, lr)

    def prepare(self, dataset: Any) -> None:
        """Read what the algorithm needs from the whole dataset (a ``bearl.data.Dataset``)
        before its first update; called once by the training loop on a new run, never on
        resume (what it sets is restored from the checkpoint). Default: nothing."""

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def behavior_vae(self) -> nn.Module | None:
        """The conditional VAE of the behaviour policy this algorithm fits, if any: what
        ``behavior_model=pretrained`` fits once, caches and freezes (training/behavior_vae.py)."""
        return None

    @property
    def behavior_frozen(self) -> bool:
        """Whether the behaviour VAE is pretrained and frozen (no VAE step in ``update``)."""
        return getattr(self.cfg, "behavior_model", "joint") == "pretrained"

    @property
    def behavior_prefitted(self) -> bool:
        """Whether the behaviour VAE starts from its fit alone (``pretrained``, frozen after
        it, or ``prefit``, fitted on at every step)."""
        return getattr(self.cfg, "behavior_model", "joint") in ("pretrained", "prefit")

    def set_precision(self, precision: str) -> None:
        """``fp32`` or ``bf16``: the dtype of every network's hidden-layer matmuls (nets.py)."""
        dtype = MATMUL_DTYPES[precision]
        for net in self.nets.values():
            set_matmul_dtype(net, dtype)

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """One gradient step of optimizer ``name`` on ``loss``."""
        opt = self.optims[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def action_rule(self, deterministic: bool = False) -> nn.Module:
        """The action selection as a module over this algorithm's live networks."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions in [-1, 1] for observations ``[B, obs_dim]``: ``action_rule`` run eagerly
        (``deterministic``: the algorithm's deterministic variant)."""
        rules = self.__dict__.setdefault("_rules", {})
        if deterministic not in rules:
            rules[deterministic] = self.action_rule(deterministic)
        return rules[deterministic](obs)

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor | None:
        """Q(s, a) [B] for actions in [-1, 1]: the minimum over the ensemble when the algorithm
        has a ``critic`` EnsembleCritic, else None (algorithms without a critic, e.g. BC)."""
        critic = getattr(self, "critic", None)
        if not isinstance(critic, EnsembleCritic):
            return None
        return critic(obs, act).min(0).values

    # -- state ---------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {
            "algo": self.name,
            "step": self.step,
            "nets": {k: m.state_dict() for k, m in self.nets.items()},
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        for k, m in self.nets.items():
            m.load_state_dict(state["nets"][k])
        for k, o in self.optims.items():  # a snapshot has no optimizers: they stay as built
            if "optims" in state:
                o.load_state_dict(state["optims"][k])
        self.load_extra_state(state["extra"])


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) * target + tau * source``, fused over parameters."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def adam(module_or_params, lr: float) -> torch.optim.Adam:
    """Adam with the fastest available implementation for the parameters' device: the fused
    kernel on CPU and CUDA (one pass over all parameters; on CPU against ``foreach``: BC +17 %,
    BEAR +4 %, TD3 +2-5 % updates/s, studies/speed/adam_impl.py), ``foreach`` elsewhere."""
    params = (
        list(module_or_params.parameters())
        if isinstance(module_or_params, nn.Module)
        else list(module_or_params)
    )
    if params and params[0].device.type in ("cpu", "cuda"):
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr, foreach=True)
