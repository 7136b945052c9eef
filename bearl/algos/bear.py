"""BEAR: Bootstrapping Error Accumulation Reduction (Kumar, Fu, Tucker, Levine; NeurIPS 2019).

Read top to bottom. Pieces (paper section / equation in brackets):

1. Behaviour model: a conditional VAE pi_beta(a|s) fit to the dataset actions (Sec. 5).
2. Critics: an ensemble of K Q-functions trained on the soft-clipped double-Q target (Eq. 5 /
   BCQ):  y = r + gamma * (1 - terminal) * max_{a'_j ~ pi(.|s')} [ lmbda * min_k Q'_k(s', a'_j)
   + (1 - lmbda) * max_k Q'_k(s', a'_j) ].
3. Actor: maximise the ensemble's conservative Q subject to a support constraint (Eq. 1 / Alg. 1):
   min_pi  E_s[ -Q_agg(s, a~pi) + lamda * sqrt((1-delta)/delta) * std_k Q_k + alpha * (D - eps) ]
   with D = sampled MMD(pi(.|s), pi_beta(.|s)) (kernels.py) or a KL surrogate.
4. Lagrange multiplier alpha = exp(log_alpha) by dual gradient ascent on (D - eps), log_alpha
   clamped to [log_alpha_min, lagrange_thresh] (``mode="auto"``), or fixed (``mode="fixed"``).
5. During the first ``warm_start_steps`` gradient steps the actor only matches the behaviour
   support (loss = alpha * D); a preset's warm start takes at most 1/5 of a run's steps
   (``CappedWarmStart``).

Fixes of the original code (docs/bear.md lists every difference): each loss is
back-propagated before any optimizer step that changes what its graph depends on (the original
fails on PyTorch >= 1.5 with an in-place error); the warm start counts gradient steps; log_alpha
starts at a fixed value; the ensemble std has a small floor inside the square root so its
gradient is finite when the critics agree exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from bearl.algos.base import Algorithm, soft_update
from bearl.algos.settings import (
    ORIGINAL_CODE,
    ORIGINAL_VAE,
    ActorSettings,
    BatchSettings,
    BehaviorSettings,
    CriticSettings,
    VAESettings,
)
from bearl.data.dataset import Batch
from bearl.kernels import mmd
from bearl.nets import VAE, EnsembleCritic, MeanAction, TanhGaussianActor, pick_best


@dataclass
class BEARConfig(BatchSettings, ActorSettings, CriticSettings, VAESettings, BehaviorSettings):
    """BEAR hyperparameters. Defaults are the ``paper`` preset (the rlkit / D4RL-paper setup)."""

    # -- support constraint ----------------------------------------------------------------------
    distance_type: str = "MMD"
    """Constraint distance: ``MMD`` (sampled MMD to VAE samples) or ``KL`` (original's
    likelihood surrogate: -mean log pi(a_vae | s))."""
    kernel_type: str = "laplacian"
    """MMD kernel: ``gaussian`` or ``laplacian`` (the ``paper`` preset picks it per env)."""
    mmd_sigma: float = 20.0
    """Kernel bandwidth. Gaussian: exp(-||x-y||^2 / (2 sigma)), so sigma acts as a variance
    (the original's convention); laplacian: exp(-||x-y||_1 / (2 sigma))."""
    num_samples_match: int = 4
    """Samples per state from the actor and from the VAE for the MMD (and KL) estimate."""
    mode: str = "auto"
    """``auto``: tune alpha by dual gradient ascent towards the threshold; ``fixed``: constant
    weight ``fixed_alpha`` (the original's ``hardcoded``)."""
    target_mmd_thresh: float = 0.05
    """Constraint threshold eps for distance_type=MMD (hard-coded 0.05 in the original)."""
    target_kl_thresh: float = -2.0
    """Constraint threshold eps for distance_type=KL (hard-coded -2.0 in the original)."""
    lagrange_thresh: float = 10.0
    """Upper CLAMP of log alpha (not the constraint threshold; that is target_mmd_thresh)."""
    log_alpha_min: float = -5.0
    """Lower clamp of log alpha."""
    init_log_alpha: float = 0.0
    """Initial log alpha (the original drew it from N(0, 1); rlkit used 0)."""
    fixed_alpha: float = 100.0
    """Constraint weight in ``mode=fixed``."""
    actor_noise_clip: float | None = None
    """Clip the actor's standard-normal noise when sampling for the MMD (original: 0.5)."""

    # -- Q ensemble ------------------------------------------------------------------------------
    num_qs: int = 2
    """Number of Q-functions in the ensemble (>= 2)."""
    version: int = 0
    """Aggregation of the ensemble in the actor objective: 0 = min, 1 = max, 2 = mean."""
    use_ensemble_variance: bool = False
    """Add the ensemble-std penalty lamda * sqrt((1-delta_conf)/delta_conf) * std_k Q_k."""
    lamda: float = 0.0
    """Weight of the ensemble-std penalty (used only with use_ensemble_variance)."""
    delta_conf: float = 0.1
    """Confidence delta of the std penalty: factor sqrt((1 - delta) / delta)."""
    lmbda: float = 0.75
    """Soft clipping in the target: lmbda * min + (1 - lmbda) * max over the ensemble."""
    num_backup_samples: int = 10
    """Next actions sampled per next state in the target; the max over them is taken."""
    q_over_all_samples: bool = False
    """Average Q over all ``num_samples_match`` actor samples in the actor loss (original code)
    instead of using one sample per state (rlkit); both estimate the same expectation."""
    backup_with_target_actor: bool = False
    """Sample backup actions from a Polyak-averaged target actor (original) instead of the
    current actor (rlkit)."""

    # -- optimisation ----------------------------------------------------------------------------
    warm_start_steps: int = 40_000
    """Gradient steps at the start during which the actor only minimises alpha * distance."""
    # (gamma, tau, batch_size, the other learning rates, the hidden sizes: settings.py)
    actor_lr: float = 1e-4
    alpha_lr: float = 1e-3
    """Adam learning rate of log_alpha, the Lagrange multiplier (``mode="auto"``)."""
    actor_log_std_bounds: tuple[float, float] | None = (-5.0, 2.0)
    """Clamp of the actor's log-std (rlkit: [-5, 2]; the original: unclamped)."""

    # -- acting ----------------------------------------------------------------------------------
    num_eval_samples: int = 100
    """Candidate actions per state when acting; the one with the highest Q_1 is taken."""

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        self.validate_vae()
        if self.distance_type not in ("MMD", "KL"):
            raise ValueError(f"distance_type must be MMD or KL, not {self.distance_type!r}")
        if self.kernel_type not in ("gaussian", "laplacian"):
            raise ValueError(f"kernel_type must be gaussian or laplacian, not {self.kernel_type!r}")
        if self.mode not in ("auto", "fixed"):
            raise ValueError(f"mode must be auto or fixed, not {self.mode!r}")
        if self.version not in (0, 1, 2):
            raise ValueError(f"version must be 0 (min), 1 (max) or 2 (mean), not {self.version!r}")
        if self.num_qs < 2:
            raise ValueError(f"num_qs must be >= 2, not {self.num_qs}")
        for name in ("num_samples_match", "num_backup_samples", "num_eval_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0.0 < self.delta_conf < 1.0:
            raise ValueError("delta_conf must be in (0, 1)")
        self.validate_behavior()


# -- presets (docs/bear.md): overrides of BEARConfig's defaults ----------------------------------
PRESETS: dict[str, dict] = {
    # rlkit / D4RL paper: the dataclass defaults, with the author's per-env kernel (BEAR issue #8)
    "paper": {"kernel_type": "laplacian", "mmd_sigma": 20.0},
    "original": {  # the NeurIPS 2019 code and its README command
        **ORIGINAL_CODE,
        **ORIGINAL_VAE,
        "alpha_lr": 1e-3,
        "num_samples_match": 5,
        "backup_with_target_actor": True,
        "q_over_all_samples": True,
        "actor_log_std_bounds": None,
        "actor_noise_clip": 0.5,
        "warm_start_steps": 20_000,
        "num_eval_samples": 10,
        "kernel_type": "gaussian",
        "mmd_sigma": 20.0,
    },
}
ENV_PRESETS: dict[str, dict[str, dict]] = {"paper": {"halfcheetah": {"kernel_type": "gaussian"}}}
# `bearl bench`: d3rlpy 2.8's BEAR defaults, so that both sides compute the same update
BENCH_SETTINGS: dict = {
    "batch_size": 256,
    "actor_hidden": (256, 256),
    "critic_hidden": (256, 256),
    "vae_hidden": (256, 256),
    "num_samples_match": 4,
    "num_backup_samples": 10,
    "warm_start_steps": 0,
    "q_over_all_samples": False,
}


# -- a run's length (docs/bear.md): a preset's warm start takes at most 1/5 of a run's steps -----
WARM_START_MAX_FRACTION = 5


class CappedWarmStart:
    """BEAR's rule for a preset's ``warm_start_steps`` (CQL follows it too): a short run would
    be all warm start, so a preset's value is capped at 1/WARM_START_MAX_FRACTION of the run's
    steps; a value given is never capped. Mixed into an Algorithm, it provides the hooks the
    configuration calls (base.py: ``run_preset``, ``extension_note``, ``default_text``)."""

    @classmethod
    def run_preset(cls, preset: str, family: str | None, steps: int) -> dict:
        values = cls.preset(preset, family)
        warm = values.get("warm_start_steps", cls.config_cls.warm_start_steps)
        if warm > steps // WARM_START_MAX_FRACTION:
            values["warm_start_steps"] = steps // WARM_START_MAX_FRACTION
        return values

    @classmethod
    def extension_note(
        cls, config, preset: str, family: str | None, started: int, steps: int
    ) -> str | None:
        """Extending a run whose warm start was capped for its first length keeps that warm
        start; a new run of the new length would warm up for longer."""
        warm = config.warm_start_steps
        if steps <= started:
            return None
        full = cls.preset(preset, family).get("warm_start_steps", cls.config_cls.warm_start_steps)
        if warm != started // WARM_START_MAX_FRACTION or full <= warm:
            return None  # not capped (or set by hand): a new run would warm up as long
        new = min(full, steps // WARM_START_MAX_FRACTION)
        return (
            f"extending to {steps} steps keeps the run's warm start of {warm} steps (the "
            f"preset's {full}, capped at 1/{WARM_START_MAX_FRACTION} of the {started} steps it "
            f"started with); a new {steps}-step run would warm up for {new}, so the two differ "
            f"from step {warm + 1} on"
        )

    @classmethod
    def default_text(cls, name: str, steps: int) -> str | None:
        """The presets' warm starts and their cap (the dataclass default is one preset's)."""
        if name != "warm_start_steps":
            return None
        default = cls.config_cls.warm_start_steps
        per = " or ".join(
            f"{cls.preset(p).get(name, default)} ({p})" for p in ("paper", "original")
        )
        return (
            f"the preset's, {per}, capped at 1/{WARM_START_MAX_FRACTION} of --steps: "
            f"{steps // WARM_START_MAX_FRACTION} at the default --steps {steps}; a value given "
            "is never capped"
        )


class BestOfSampled(nn.Module):
    """BEAR's action rule (the original's): ``n`` samples of the actor per state, and the one
    with the highest Q_1."""

    def __init__(self, actor: TanhGaussianActor, critic: EnsembleCritic, n: int) -> None:
        super().__init__()
        self.actor, self.critic, self.n = actor, critic, int(n)
        self.description = f"argmax of Q_1 over {self.n} tanh-Gaussian samples per state (random)"

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        cand, _ = self.actor.sample(obs, n=self.n)  # [B, K, A]
        return pick_best(cand, self.critic(obs.unsqueeze(1), cand, member=0))  # by Q_1 [B, K]


class BEAR(CappedWarmStart, Algorithm):
    """BEAR with every knob of the original work; see the module docstring."""

    name: ClassVar[str] = "BEAR"
    config_cls: ClassVar[type] = BEARConfig
    preset_docs: ClassVar[dict] = {
        "paper": "the D4RL paper's settings (rlkit's re-implementation)",
        "original": "the NeurIPS 2019 code's settings",
    }
    presets: ClassVar[dict] = PRESETS
    env_presets: ClassVar[dict] = ENV_PRESETS
    bench_settings: ClassVar[dict] = BENCH_SETTINGS
    bench_peer_flags: ClassVar[dict] = {
        "num_samples_match": "--n-mmd",
        "num_backup_samples": "--n-target",
    }

    def __init__(self, config: BEARConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        self.actor = TanhGaussianActor(obs_dim, act_dim, c.actor_hidden, c.actor_log_std_bounds)
        self.critic = EnsembleCritic(obs_dim, act_dim, c.critic_hidden, n=c.num_qs)
        self.vae = VAE(obs_dim, act_dim, c.vae_hidden, kl_weight=c.vae_kl_weight)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        nets = {
            "actor": self.actor,
            "critic": self.critic,
            "vae": self.vae,
            "critic_target": self.critic_target,
        }
        if c.backup_with_target_actor:
            self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
            nets["actor_target"] = self.actor_target
        self.log_alpha = torch.tensor(
            float(c.init_log_alpha), device=self.device, requires_grad=True
        )
        optims = {
            "actor": (self.actor, c.actor_lr),
            "critic": (self.critic, c.critic_lr),
            "vae": (self.vae, c.vae_lr),
            "alpha": ([self.log_alpha], c.alpha_lr),
        }
        self.add_networks(nets, optims)
        self.eps = c.target_mmd_thresh if c.distance_type == "MMD" else c.target_kl_thresh
        self.std_factor = (
            c.lamda * ((1.0 - c.delta_conf) / c.delta_conf) ** 0.5
            if c.use_ensemble_variance
            else 0.0
        )

    # -- 1. behaviour model ------------------------------------------------------------------------
    def _vae_step(self, b: Batch) -> torch.Tensor:
        loss = self.vae.loss(b.observations, b.actions)
        self.optimize("vae", loss)
        return loss.detach()

    # -- 2. critics ---------------------------------------------------------------------------
    @torch.no_grad()
    def _target(self, b: Batch) -> torch.Tensor:
        c = self.cfg
        policy = self.actor_target if c.backup_with_target_actor else self.actor
        next_a, _ = policy.sample(b.next_observations, n=c.num_backup_samples)  # [B, K, A]
        q = self.critic_target(b.next_observations.unsqueeze(1), next_a)  # [Q, B, K]
        soft = c.lmbda * q.min(0).values + (1.0 - c.lmbda) * q.max(0).values  # [B, K]
        next_v = soft.max(-1).values  # max over sampled next actions
        return b.rewards + c.gamma * (1.0 - b.terminals) * next_v

    def _critic_step(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self._target(b)
        q = self.critic(b.observations, b.actions)  # [Q, B]
        loss = (q - y).pow(2).mean(1).sum()  # sum over the ensemble of each critic's MSE
        self.optimize("critic", loss)
        return loss.detach(), q.detach().mean(), y.mean()

    # -- 3. actor with the support constraint ---------------------------------------------------
    def _distance(self, obs: torch.Tensor, pre_tanh_pi: torch.Tensor) -> torch.Tensor:
        """Per-state constraint distance D(pi, pi_beta) [B]."""
        c = self.cfg
        with torch.no_grad():
            _, raw_beta = self.vae.decode(obs, n=c.num_samples_match)  # [B, N, A] pre-tanh
        if c.distance_type == "MMD":
            return mmd(raw_beta, pre_tanh_pi, c.kernel_type, c.mmd_sigma)
        # KL surrogate: -E_{a ~ pi_beta} log pi(a | s)
        return -self.actor.log_prob(obs, raw_beta).mean(-1)

    def _actor_step(self, b: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        obs = b.observations
        pi_a, pi_pre = self.actor.sample(obs, n=c.num_samples_match, noise_clip=c.actor_noise_clip)
        dist = self._distance(obs, pi_pre)  # [B]
        alpha = (
            self.log_alpha.exp().detach() if c.mode == "auto" else torch.as_tensor(c.fixed_alpha)
        )

        if self.step < c.warm_start_steps:  # support matching only: no Q needed
            loss = (alpha * dist).mean()
            q_agg = std_q = dist.new_zeros(())
        else:
            self.critic.requires_grad_(False)  # gradients flow through Q into the actor only
            q_in = pi_a if c.q_over_all_samples else pi_a[:, :1]
            q_all = self.critic(obs.unsqueeze(1), q_in).mean(-1)  # [Q, B], mean over samples
            self.critic.requires_grad_(True)
            if c.version == 0:
                q_agg = q_all.min(0).values
            elif c.version == 1:
                q_agg = q_all.max(0).values
            else:
                q_agg = q_all.mean(0)
            # population std over the ensemble; the 1e-8 floor keeps its gradient finite
            std_q = (q_all.var(0, unbiased=False) + 1e-8).sqrt()
            loss = (-q_agg + self.std_factor * std_q + alpha * dist).mean()
        self.optimize("actor", loss)

        # -- 4. dual ascent on alpha, from the detached distance (no second pass through the actor)
        dist_mean = dist.detach().mean()
        if c.mode == "auto":
            alpha_loss = -(self.log_alpha.exp() * (dist_mean - self.eps))
            self.optimize("alpha", alpha_loss)
            with torch.no_grad():
                self.log_alpha.clamp_(c.log_alpha_min, c.lagrange_thresh)
        return {
            "actor_loss": loss.detach(),
            "distance": dist_mean,
            "alpha": alpha.detach()
            if c.mode == "auto"
            else self.log_alpha.new_tensor(c.fixed_alpha),
            "policy_q": q_agg.detach().mean(),
            "std_q": std_q.detach().mean(),
        }

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        behavior = {} if self.behavior_frozen else {"vae_loss": self._vae_step(batch)}
        critic_loss, q_data, q_target = self._critic_step(batch)
        metrics = self._actor_step(batch)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        if self.cfg.backup_with_target_actor:
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
        """Argmax of Q_1 over ``num_eval_samples`` actor samples per state (the original's rule);
        ``deterministic=True``: the actor's mean action tanh(mu(s))."""
        if deterministic:
            return MeanAction(self.actor)
        return BestOfSampled(self.actor, self.critic, self.cfg.num_eval_samples)

    def extra_state(self) -> dict:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def load_extra_state(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
