"""CQL's pieces, each on a case small enough to know the answer: the importance-sampled
log-sum-exp, the conservative term's push on Q, the entropy temperature and alpha'."""

from __future__ import annotations

import math

import pytest
import torch

from bearl.algos.cql import CQL, CQLConfig, importance_sampled_logsumexp
from bearl.data.dataset import Batch

OBS, ACT = 4, 2
SMALL = {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 64}


def make(**over) -> CQL:
    torch.manual_seed(0)
    return CQL(CQLConfig(**{**SMALL, **over}), OBS, ACT, "cpu")


def fixed_batch(n: int = 64) -> Batch:
    """States at random, every action near (0.7, 0.7), zero reward, all terminal: the target is
    0 and only the conservative term tells data actions from the others."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(n, OBS, generator=g)
    actions = (0.7 + 0.05 * torch.randn(n, ACT, generator=g)).clamp(-1, 1)
    return Batch(obs, actions, torch.zeros(n), obs + 0.1, torch.ones(n))


@pytest.mark.parametrize("temp", [1.0, 0.5])
def test_logsumexp_is_the_importance_sampled_sum(temp):
    act_dim = 3  # uniform density on [-1, 1]^3: 1/8
    q_random = torch.tensor([[1.0, -2.0]])
    q_policy = torch.tensor([[0.5, 3.0, -1.0]], requires_grad=True)
    log_prob = torch.tensor([[-1.0, 0.2, 2.0]], requires_grad=True)
    got = importance_sampled_logsumexp(q_random, q_policy, log_prob, act_dim, temp)
    # sum of exp(Q / temp) / density^(1 / temp) over the samples, written out
    terms = [math.exp(q / temp) * 8.0 ** (1 / temp) for q in (1.0, -2.0)]
    terms += [math.exp((q - lp) / temp) for q, lp in ((0.5, -1.0), (3.0, 0.2), (-1.0, 2.0))]
    assert got.shape == (1,)
    assert float(got.detach()) == pytest.approx(temp * math.log(sum(terms)), rel=1e-6)
    # the densities are weights, not something the critic's loss may move
    got.sum().backward()
    assert q_policy.grad is not None and log_prob.grad is None


def test_logsumexp_reduces_the_last_dim_per_critic():
    q_random, q_policy = torch.randn(2, 5, 10), torch.randn(2, 5, 20)
    log_prob = torch.randn(5, 20)
    got = importance_sampled_logsumexp(q_random, q_policy, log_prob, ACT)
    want = torch.logsumexp(torch.cat([q_random + ACT * math.log(2), q_policy - log_prob], -1), -1)
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, want)


def q_at(algo: CQL, obs: torch.Tensor, action: float) -> float:
    """Mean over states and both critics of Q(s, (action, action))."""
    with torch.no_grad():
        return float(algo.critic(obs, torch.full((obs.shape[0], ACT), action)).mean())


def test_the_conservative_term_lowers_other_actions_and_raises_data_actions():
    b = fixed_batch()
    runs = {}
    for weight in (0.0, 5.0):
        algo = make(cql_alpha=weight, critic_lr=1e-3, warm_start_steps=0)
        for _ in range(60):
            algo.update(b)
        runs[weight] = (q_at(algo, b.observations, 0.7), q_at(algo, b.observations, -0.7))
    (data0, far0), (data5, far5) = runs[0.0], runs[5.0]
    assert data5 > data0 + 0.2, runs  # up on the data's actions
    assert far5 < far0 - 0.5, runs  # down away from them
    assert data5 - far5 > 1.0, runs


@pytest.mark.parametrize("target, direction", [(5.0, 1), (-5.0, -1)])
def test_the_entropy_temperature_moves_towards_the_target(target, direction):
    # 2-D actions in [-1, 1]: the entropy is at most log 4 < 5, and the initial policy's is
    # far above -5; alpha must grow in the first case and shrink in the second
    algo = make(target_entropy=target, alpha_lr=1e-2, actor_lr=1e-6, warm_start_steps=0)
    alphas = [float(algo.update(fixed_batch())["alpha"]) for _ in range(10)]
    entropy = float(algo.update(fixed_batch())["entropy"])
    assert (entropy < target) == (direction > 0)
    steps = [direction * (later - earlier) for earlier, later in zip(alphas, alphas[1:])]
    assert all(s > 0 for s in steps), alphas


@pytest.mark.parametrize("gap, direction", [(1e3, -1), (-1e3, 1)])
def test_the_lagrange_multiplier_follows_the_action_gap(gap, direction):
    # weighted gap (about 5 x 5 here) far below / above target_action_gap: alpha' must shrink /
    # grow; the critics' term is alpha' * (weighted gap - target_action_gap)
    algo = make(lagrange=True, target_action_gap=gap, alpha_prime_lr=1e-2, warm_start_steps=0)
    values = [float(algo.update(fixed_batch())["alpha_prime"]) for _ in range(6)]
    assert values[0] == pytest.approx(1.0)  # exp(init_log_alpha_prime), before its first step
    steps = [direction * (later - earlier) for earlier, later in zip(values, values[1:])]
    assert all(s > 0 for s in steps), values
    assert "alpha_prime" not in make().update(fixed_batch())


def test_warm_start_clones_the_data_actions():
    b = fixed_batch()
    algo = make(warm_start_steps=100, actor_lr=3e-3)
    before = (algo.act(b.observations, deterministic=True) - b.actions).abs().mean()
    for _ in range(100):
        algo.update(b)
    after = (algo.act(b.observations, deterministic=True) - b.actions).abs().mean()
    assert after < 0.25 * before, (float(before), float(after))
