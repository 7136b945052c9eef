"""CQL: Conservative Q-Learning (Kumar, Zhou, Tucker, Levine; NeurIPS 2020), the CQL(H) variant.

Read top to bottom. Pieces (paper section / equation in brackets):

1. Actor: SAC's tanh-Gaussian policy (Sec. 4, App. F):
   min_pi E_s[ alpha * log pi(a|s) - min_k Q_k(s, a) ],  a ~ pi(.|s) reparameterised,
   with automatic entropy tuning of alpha = exp(log_alpha) towards the target entropy
   -act_dim: one Adam step on -log_alpha * (log pi(a|s) + target_entropy). During the first
   ``warm_start_steps`` gradient steps the actor is cloned instead (the authors' code's
   ``policy_eval_start``): min E[ alpha * log pi(a|s) - log pi(a_data|s) ]; a preset's warm
   start is capped at 1/5 of a run's steps, as BEAR's (``CappedWarmStart``, bear.py).
2. Critics: twin Q-functions on the clipped double-Q target (the B^pi of Eq. 4),
   y = r + gamma * (1 - terminal) * min_k Q'_k(s', a'),  a' ~ pi(.|s')  (``backup="sample"``).
   Eq. 4's backup has no entropy term and the authors' MuJoCo command runs without one
   (``--deterministic_backup=True``, its default); ``backup="soft"`` subtracts alpha * log pi(a'|s')
   (SAC's), ``"mean"`` takes a' = tanh(mu(s')) (d3rlpy's default), ``"max"`` takes
   min_k max_j Q'_k(s', a'_j) over ``n_action_samples`` policy samples (the code's max-backup).
3. The conservative term of CQL(H) (Eq. 4), added to each critic's squared Bellman error:
   alpha_cql * ( temp * log sum_a exp(Q_k(s, a) / temp) - Q_k(s, a_data) ),
   the log-sum-exp estimated by importance sampling (App. F) over N uniform actions
   (density 0.5^act_dim), N policy actions at s and N policy actions at s' (each weighted by
   its detached density pi(a|.)), all evaluated at s: ``importance_sampled_logsumexp``.
   Lagrange variant (App. F, ``lagrange=True``): the term is alpha' * (term - target_action_gap),
   alpha' = exp(log_alpha') clamped to [0, 1e6], with one Adam step of dual ascent on
   alpha' * (term - target_action_gap) per update, so alpha' grows while the weighted action gap
   exceeds ``target_action_gap`` and shrinks below it.
4. Polyak averaging (``tau``) of the target critics on every step.

Acting: the mean action tanh(mu(s)) with ``deterministic`` (the authors' evaluation policy,
``MakeDeterministic``), else one sample of pi.

Paper against the released code (aviralkumar2907/CQL, d4rl/rlkit/torch/sac/cql.py and
examples/cql_mujoco_new.py with the README's MuJoCo command); ``paper`` follows the paper and
fills in from the code where it is silent, ``original`` is the README command:
policy lr 3e-5 (paper, App. F) against 1e-4 (README); alpha_cql 5.0, fixed (paper; the README's
"5.0 or 10.0", no Lagrange, 5.0 taken for every env); 3 hidden layers of 256, N = 10 samples,
temperature 1 and a backup without entropy in both; the BC warm start (40k steps) and the
temperature's lr (the policy's) come from the code. Update order: critics, then actor and
temperature (d3rlpy's and BEAR's order; the authors' code steps actor and critics on the same
networks' values). Differences from the code: docs/algorithms.md.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from bearl.algos.base import Algorithm, soft_update
from bearl.algos.bear import CappedWarmStart
from bearl.algos.settings import ActorSettings, BatchSettings, CriticSettings
from bearl.data.dataset import Batch
from bearl.nets import EnsembleCritic, MeanAction, SampledAction, TanhGaussianActor

BACKUPS = ("sample", "soft", "mean", "max")
ACTION_EPS = 1e-4  # dataset actions are clamped to +-(1 - ACTION_EPS) before atanh (warm start)
ALPHA_PRIME_MAX = 1e6  # clamp of alpha' (the authors' code and d3rlpy)


@dataclass
class CQLConfig(BatchSettings, ActorSettings, CriticSettings):
    """CQL hyperparameters. Defaults are the ``paper`` preset (see the module docstring)."""

    # -- the conservative term ---------------------------------------------------------------------
    cql_alpha: float = 5.0
    """Weight alpha of the conservative term (the code's ``min_q_weight``); 0 turns CQL off
    (plain SAC on the data)."""
    n_action_samples: int = 10
    """N: uniform actions, policy actions at s and policy actions at s' per state in the
    log-sum-exp (3N terms; the code's ``num_random``); also the samples of ``backup="max"``."""
    cql_temp: float = 1.0
    """Temperature of the log-sum-exp: temp * log sum exp(Q / temp)."""
    lagrange: bool = False
    """Tune a multiplier alpha' of the conservative term by dual ascent towards
    ``target_action_gap`` (the code's ``with_lagrange``, on when ``lagrange_thresh`` >= 0)."""
    target_action_gap: float = 5.0
    """lagrange=True: the value tau of alpha_cql * (log-sum-exp - Q(s, a_data)) that alpha' aims
    at (the code's ``lagrange_thresh``)."""
    alpha_prime_lr: float = 3e-4
    """lagrange=True: Adam learning rate of log alpha' (the code: the critics' learning rate)."""
    init_log_alpha_prime: float = 0.0
    """lagrange=True: initial log alpha' (the code: 0, alpha' = 1)."""

    # -- the backup --------------------------------------------------------------------------------
    backup: str = "sample"
    """Next-state value in the target: ``sample`` min_k Q'_k(s', a'), a' ~ pi (no entropy: Eq. 4
    and the code's default deterministic_backup); ``soft`` the same minus alpha * log pi(a'|s')
    (SAC); ``mean`` a' = tanh(mu(s')) (d3rlpy); ``max`` min_k max_j Q'_k(s', a'_j) over
    n_action_samples policy samples (the code's max_q_backup)."""

    # -- SAC's actor and entropy temperature -------------------------------------------------------
    warm_start_steps: int = 40_000
    """Gradient steps at the start during which the actor is cloned from the data: min
    E[alpha * log pi(a|s) - log pi(a_data|s)] (the code's ``policy_eval_start``)."""
    auto_alpha: bool = True
    """Tune the entropy temperature alpha towards ``target_entropy`` (SAC); False keeps it at
    exp(init_log_alpha)."""
    target_entropy: float | None = None
    """Entropy the temperature aims at (None: -act_dim, SAC's and the code's)."""
    init_log_alpha: float = 0.0
    """Initial log of the entropy temperature (the code: 0, alpha = 1)."""
    alpha_lr: float = 3e-5
    """Adam learning rate of log alpha, the entropy temperature (the code: the policy's)."""
    # (gamma, tau, batch_size, the other learning rates, the hidden sizes: settings.py)
    actor_lr: float = 3e-5
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    actor_log_std_bounds: tuple[float, float] | None = (-20.0, 2.0)
    """Clamp of the actor's log-std (rlkit's TanhGaussianPolicy and d3rlpy: [-20, 2])."""

    def validate(self) -> None:
        """Raise ValueError for values outside their domain."""
        if self.backup not in BACKUPS:
            raise ValueError(f"backup must be one of {', '.join(BACKUPS)}, not {self.backup!r}")
        for name in ("n_action_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.cql_alpha < 0:
            raise ValueError("cql_alpha must be >= 0")
        if self.cql_temp <= 0:
            raise ValueError("cql_temp must be > 0")
        if self.warm_start_steps < 0:
            raise ValueError("warm_start_steps must be >= 0")


# -- presets (docs/algorithms.md): overrides of CQLConfig's defaults -----------------------------
PRESETS: dict[str, dict] = {
    "paper": {},  # the dataclass defaults: the paper's App. F, the code where it is silent
    "original": {  # the README's MuJoCo command on examples/cql_mujoco_new.py
        "actor_lr": 1e-4,  # --policy_lr=1e-4
        "alpha_lr": 1e-4,  # the temperature's Adam uses policy_lr
        "cql_alpha": 5.0,  # --min_q_weight=(5.0 or 10.0), --lagrange_thresh=-1.0: no Lagrange
    },
}
# `bearl bench`: d3rlpy 2.8's CQLConfig defaults, so that both sides compute the same update
BENCH_SETTINGS: dict = {
    "batch_size": 256,
    "actor_hidden": (256, 256),  # VectorEncoderFactory's default
    "critic_hidden": (256, 256),
    "actor_lr": 1e-4,
    "critic_lr": 3e-4,
    "alpha_lr": 1e-4,  # temp_learning_rate
    "cql_alpha": 5.0,  # conservative_weight
    "n_action_samples": 10,
    "lagrange": True,  # alpha_learning_rate 1e-4 > 0 turns d3rlpy's alpha' on
    "alpha_prime_lr": 1e-4,
    "target_action_gap": 50.0,  # d3rlpy: 5 * (gap - 10) = 5 * gap - 50 (alpha_threshold 10)
    "backup": "mean",  # soft_q_backup=False, max_q_backup=False: Q'(s', tanh(mu(s')))
    "warm_start_steps": 0,
}


def importance_sampled_logsumexp(
    q_random: torch.Tensor,
    q_policy: torch.Tensor,
    log_prob_policy: torch.Tensor,
    act_dim: int,
    temp: float = 1.0,
) -> torch.Tensor:
    """``temp * log sum_j exp(x_j / temp)`` over the sampled actions of each state, the
    estimate of log sum_a exp Q(s, a) of CQL(H) (App. F; like the authors' code, without the
    constant 1 / (number of samples)): x = Q - log density, with density 0.5^act_dim for the
    uniform actions on [-1, 1]^act_dim and the (detached) policy density for the policy's.

    ``q_random [..., Nr]``, ``q_policy [..., Np]`` and ``log_prob_policy`` (broadcasting against
    ``q_policy``) -> ``[...]``, computed in float32."""
    log_uniform = act_dim * math.log(0.5)
    x = torch.cat(
        [q_random.float() - log_uniform, q_policy.float() - log_prob_policy.detach().float()], -1
    )
    return temp * torch.logsumexp(x / temp, dim=-1)


class CQL(CappedWarmStart, Algorithm):
    """CQL(H) on SAC, with the Lagrange variant and the backups of the authors' code; see the
    module docstring."""

    name: ClassVar[str] = "CQL"
    config_cls: ClassVar[type] = CQLConfig
    preset_docs: ClassVar[dict] = {
        "paper": "the CQL paper's settings (CQL(H), alpha 5.0; its code where the paper is silent)",
        "original": "the authors' README command for MuJoCo (actor lr 1e-4)",
    }
    presets: ClassVar[dict] = PRESETS
    bench_settings: ClassVar[dict] = BENCH_SETTINGS
    bench_peer_flags: ClassVar[dict] = {"n_action_samples": "--n-action-samples"}

    def __init__(self, config: CQLConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        config.validate()
        c = config
        self.actor = TanhGaussianActor(obs_dim, act_dim, c.actor_hidden, c.actor_log_std_bounds)
        self.critic = EnsembleCritic(obs_dim, act_dim, c.critic_hidden, n=2)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        nets = {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target}
        self.target_entropy = float(-act_dim if c.target_entropy is None else c.target_entropy)
        self.log_alpha = torch.tensor(
            float(c.init_log_alpha), device=self.device, requires_grad=True
        )
        self.log_alpha_prime = torch.tensor(
            float(c.init_log_alpha_prime), device=self.device, requires_grad=True
        )
        optims = {
            "actor": (self.actor, c.actor_lr),
            "critic": (self.critic, c.critic_lr),
            "alpha": ([self.log_alpha], c.alpha_lr),
        }
        if c.lagrange:
            optims["alpha_prime"] = ([self.log_alpha_prime], c.alpha_prime_lr)
        self.add_networks(nets, optims)

    # -- 2. critics ---------------------------------------------------------------------------
    @torch.no_grad()
    def _target(self, b: Batch) -> torch.Tensor:
        c, s2 = self.cfg, b.next_observations
        if c.backup == "max":
            a2, _ = self.actor.sample(s2, n=c.n_action_samples)  # [B, N, A]
            next_v = self.critic_target(s2.unsqueeze(1), a2).max(-1).values.min(0).values
        elif c.backup == "mean":
            next_v = self.critic_target(s2, self.actor.deterministic(s2)).min(0).values
        else:
            a2, logp2 = self.actor.sample_log_prob(s2)
            next_v = self.critic_target(s2, a2).min(0).values
            if c.backup == "soft":
                next_v = next_v - self.log_alpha.exp() * logp2
        return b.rewards + c.gamma * (1.0 - b.terminals) * next_v

    # -- 3. the conservative term ---------------------------------------------------------------
    @torch.no_grad()
    def _sampled_actions(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-sum-exp's actions per state, ``[B, 3N, A]`` (N uniform, N from pi(.|s), N
        from pi(.|s')), and the log densities of the 2N policy ones ``[B, 2N]``."""
        n, bsz = self.cfg.n_action_samples, b.observations.shape[0]
        both = torch.cat([b.observations, b.next_observations])  # one actor pass for s and s'
        a_pi, logp = self.actor.sample_log_prob(both, n=n)  # [2B, N, A], [2B, N]
        uniform = torch.rand(bsz, n, self.act_dim, device=self.device) * 2.0 - 1.0
        actions = torch.cat([uniform, a_pi[:bsz], a_pi[bsz:]], 1)
        return actions, torch.cat([logp[:bsz], logp[bsz:]], 1)

    def _critic_step(self, b: Batch) -> dict[str, torch.Tensor]:
        c, n = self.cfg, self.cfg.n_action_samples
        y = self._target(b)
        sampled, logp = self._sampled_actions(b)
        # Q on the dataset action and on the 3N sampled actions, all at s, in one critic pass
        q = self.critic(
            b.observations.unsqueeze(1), torch.cat([b.actions.unsqueeze(1), sampled], 1)
        )
        q_data, q_random, q_policy = q[..., 0], q[..., 1 : 1 + n], q[..., 1 + n :]  # [2, B, .]
        td = (q_data - y).pow(2).mean(1).sum()  # MSE(Q1, y) + MSE(Q2, y)
        lse = importance_sampled_logsumexp(q_random, q_policy, logp, self.act_dim, c.cql_temp)
        gap = (lse - q_data).mean(1)  # [2]: per critic, the action gap
        term = c.cql_alpha * gap
        metrics = {}
        if c.lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, ALPHA_PRIME_MAX)
            term = alpha_prime.detach() * (term - c.target_action_gap)
            # dual ascent: alpha' grows while the weighted gap exceeds target_action_gap
            dual = -(alpha_prime * (c.cql_alpha * gap.detach() - c.target_action_gap)).mean()
            self.optimize("alpha_prime", dual)
            metrics["alpha_prime"] = alpha_prime.detach()
        cql_loss = term.sum()
        loss = td + cql_loss
        self.optimize("critic", loss)
        return {
            "critic_loss": loss.detach(),
            "td_loss": td.detach(),
            "cql_loss": cql_loss.detach(),
            "action_gap": gap.detach().mean(),
            "q_data": q_data.detach().mean(),
            "q_random": q_random.detach().mean(),
            "q_target": y.mean(),
            **metrics,
        }

    # -- 1. actor and entropy temperature -------------------------------------------------------
    def _actor_step(self, b: Batch) -> dict[str, torch.Tensor]:
        c, obs = self.cfg, b.observations
        a, logp = self.actor.sample_log_prob(obs)  # [B, A], [B]
        if c.auto_alpha:  # the temperature first, as the code: the actor uses the new alpha
            self.optimize("alpha", -(self.log_alpha * (logp.detach() + self.target_entropy)).mean())
        alpha = self.log_alpha.detach().exp()
        self.critic.requires_grad_(False)  # gradients flow through Q into the actor only
        q_pi = self.critic(obs, a).min(0).values
        self.critic.requires_grad_(True)
        if self.step < c.warm_start_steps:  # behaviour cloning, with the entropy term
            u = torch.atanh(b.actions.clamp(-1.0 + ACTION_EPS, 1.0 - ACTION_EPS))
            loss = (alpha * logp - self.actor.log_prob(obs, u)).mean()
        else:
            loss = (alpha * logp - q_pi).mean()
        self.optimize("actor", loss)
        return {
            "actor_loss": loss.detach(),
            "alpha": alpha,
            "entropy": -logp.detach().mean(),
            "policy_q": q_pi.detach().mean(),
        }

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = self._critic_step(batch)
        metrics.update(self._actor_step(batch))
        # -- 4. target critics
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        self.step += 1
        return metrics

    # -- acting ------------------------------------------------------------------------------------
    def action_rule(self, deterministic: bool = False) -> nn.Module:
        """One sample of pi; ``deterministic=True``: the mean action tanh(mu(s)) (the authors'
        evaluation policy)."""
        return MeanAction(self.actor) if deterministic else SampledAction(self.actor)

    def extra_state(self) -> dict:
        return {
            "log_alpha": self.log_alpha.detach().clone(),
            "log_alpha_prime": self.log_alpha_prime.detach().clone(),
        }

    def load_extra_state(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
            self.log_alpha_prime.copy_(state["log_alpha_prime"])
