"""IQL's own pieces on hand-built cases: the expectile loss, the clipped advantage weights (through
``update``, with networks set by hand), the reward scale of ``prepare`` and its survival in the
state, and the actor's cosine learning-rate decay. The shared harness (test_algorithms.py,
test_policy.py, test_precision.py) runs IQL through everything else."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from bearl.algos.iql import IQL, IQLConfig, expectile_loss
from bearl.data.dataset import Batch, Dataset, DatasetInfo

BETA, MAX_WEIGHT, Q_CONST = 3.0, 100.0, 1.0


def test_expectile_loss_weighs_positive_residuals_by_tau():
    diff = torch.tensor([2.0, -2.0, 0.5, -0.5, 0.0])
    got = expectile_loss(diff, 0.7)
    want = torch.tensor([0.7 * 4.0, 0.3 * 4.0, 0.7 * 0.25, 0.3 * 0.25, 0.0])
    torch.testing.assert_close(got, want)
    # tau = 0.5 is half the squared error
    torch.testing.assert_close(expectile_loss(diff, 0.5), 0.5 * diff.pow(2))


def _hand_built(**over) -> IQL:
    """IQL on 1-d states where Q'(s, a) = Q_CONST for every (s, a) and V(s) = s exactly, and V
    does not move in the update (value_lr = 0): the advantage of a transition at state s is
    Q_CONST - s."""
    cfg = IQLConfig(
        actor_hidden=(8, 8),
        critic_hidden=(4, 4),
        value_hidden=(2, 2),
        beta=BETA,
        max_weight=MAX_WEIGHT,
        value_lr=0.0,
        **over,
    )
    torch.manual_seed(0)
    algo = IQL(cfg, 1, 1)
    with torch.no_grad():
        for p in algo.critic_target.parameters():
            p.zero_()
        algo.critic_target.out.bias.fill_(Q_CONST)  # both members: Q'_k = Q_CONST
        first, second, out = algo.value.net[0], algo.value.net[2], algo.value.net[4]
        first.weight.copy_(torch.tensor([[1.0], [-1.0]]))  # h = relu([s, -s])
        first.bias.zero_()
        second.weight.copy_(torch.eye(2))
        second.bias.zero_()
        out.weight.copy_(torch.tensor([[1.0, -1.0]]))  # V = relu(s) - relu(-s) = s
        out.bias.zero_()
    return algo


def _batch(states, rewards=None, terminals=None) -> Batch:
    s = torch.tensor(states).reshape(-1, 1)
    n = len(s)
    return Batch(
        s,
        torch.linspace(-0.5, 0.5, n).reshape(-1, 1),
        torch.zeros(n) if rewards is None else torch.as_tensor(rewards, dtype=torch.float32),
        s.clone(),
        torch.ones(n) if terminals is None else torch.as_tensor(terminals, dtype=torch.float32),
    )


def test_hand_built_networks_are_what_the_tests_assume():
    algo = _hand_built()
    s = torch.tensor([[-2.0], [0.5], [3.0]])
    torch.testing.assert_close(algo.value(s), s.squeeze(-1))
    q = algo.critic_target(s, torch.zeros(3, 1))
    torch.testing.assert_close(q, torch.full((2, 3), Q_CONST))


def test_value_loss_is_the_expectile_loss_of_the_target_minus_v():
    algo = _hand_built()
    states = [2.0, 1.0, 0.5, -1.0]  # residuals Q' - V = -1, 0, 0.5, 2
    m = algo.update(_batch(states))
    resid = [Q_CONST - s for s in states]
    want = np.mean([(0.7 if u > 0 else 0.3) * u * u for u in resid])
    assert float(m["value_loss"]) == pytest.approx(want, rel=1e-6)


def test_advantage_weights_are_exp_beta_a_clipped_through_update():
    algo = _hand_built()
    states = [2.0, 1.0, 0.5, -1.0]  # advantages A = Q' - V = -1, 0, 0.5, 2
    adv = torch.tensor([Q_CONST - s for s in states])
    weights = torch.tensor([math.exp(-3.0), 1.0, math.exp(1.5), MAX_WEIGHT])  # exp(6) clipped
    b = _batch(states)
    with torch.no_grad():
        log_prob = algo.actor.log_prob(b.observations, b.actions)  # before the actor's step
    m = algo.update(b)
    assert float(m["adv"]) == pytest.approx(float(adv.mean()), rel=1e-6)
    assert float(m["weight"]) == pytest.approx(float(weights.mean()), rel=1e-6)
    assert float(m["weight_clipped"]) == 0.25
    # each transition's log-likelihood is multiplied by its own weight
    want = -(weights * log_prob).mean()
    assert float(m["actor_loss"]) == pytest.approx(float(want), rel=1e-5)


def _episodes_dataset(episode_rewards, last_open: bool = False) -> Dataset:
    """One-dimensional transitions, one episode per list of rewards, each ending terminal (the
    last one not, with ``last_open``: the data stop inside it)."""
    rewards = np.concatenate([np.asarray(r, np.float32) for r in episode_rewards])
    n = len(rewards)
    ends = np.cumsum([len(r) for r in episode_rewards]) - 1
    terminals = np.zeros(n, bool)
    terminals[ends[:-1] if last_open else ends] = True
    obs = np.arange(n, dtype=np.float32).reshape(-1, 1)
    return Dataset(
        obs,
        np.zeros((n, 1), np.float32),
        rewards,
        obs + 1,
        terminals,
        np.zeros(n, bool),
        DatasetInfo(source="memory:episodes"),
    )


def test_prepare_sets_the_reward_scale_from_the_episode_returns():
    ds = _episodes_dataset([[1.0, 1.0], [5.0, 5.0, 0.0], [-1.0, -1.0]])  # returns 2, 10, -2
    np.testing.assert_allclose(ds.episode_returns, [2.0, 10.0, -2.0])
    algo = _hand_built()
    assert float(algo.reward_scale) == 1.0  # before prepare: rewards as they are
    algo.prepare(ds)
    assert float(algo.reward_scale) == pytest.approx(1000.0 / 12.0)

    off = _hand_built(normalize_rewards=False)
    off.prepare(ds)
    assert float(off.reward_scale) == 1.0
    # the end of the data cuts the last episode: returns 2, 10, -2, 20
    algo.prepare(_episodes_dataset([[1.0, 1.0], [5.0, 5.0, 0.0], [-1.0, -1.0], [20.0]], True))
    assert float(algo.reward_scale) == pytest.approx(1000.0 / 22.0)
    same = _hand_built()
    same.prepare(_episodes_dataset([[1.0, 2.0], [3.0]]))  # every return 3: no scale
    assert float(same.reward_scale) == 1.0


def test_the_reward_scale_is_applied_to_the_rewards_and_logged_in_dataset_units():
    """Non-terminal transitions at s = 1 (V(s') = 1): the target is scale * r + gamma * 1 in
    the networks' units; q_target reports it divided by the scale."""
    algo = _hand_built()
    algo.prepare(_episodes_dataset([[1.0, 1.0], [5.0, 5.0, 0.0], [-1.0, -1.0]]))
    scale = 1000.0 / 12.0
    r = torch.tensor([0.5, -1.0, 2.0, 0.0])
    m = algo.update(_batch([1.0] * 4, rewards=r, terminals=torch.zeros(4)))
    want = float(r.mean()) + algo.cfg.gamma * 1.0 / scale
    assert float(m["q_target"]) == pytest.approx(want, rel=1e-6)


def test_the_reward_scale_survives_the_state_round_trip():
    algo = _hand_built()
    algo.prepare(_episodes_dataset([[1.0, 1.0], [5.0, 5.0, 0.0], [-1.0, -1.0]]))
    state = copy.deepcopy(algo.state_dict())
    other = _hand_built()
    other.load_state_dict(state)
    assert float(other.reward_scale) == pytest.approx(1000.0 / 12.0)
    # and a resumed update is the same update
    b = _batch([1.0, 0.5, -1.0], rewards=[1.0, 2.0, 3.0], terminals=[0.0, 1.0, 0.0])
    torch.manual_seed(1)
    m1 = algo.update(b)
    torch.manual_seed(1)
    m2 = other.update(b)
    assert all(torch.equal(m1[k], m2[k]) for k in m1)


def test_the_actor_lr_follows_a_cosine_to_zero():
    algo = _hand_built(actor_lr=1e-3, actor_lr_decay_steps=4)
    b = _batch([1.0, 0.5])
    lrs = []
    for _ in range(6):
        algo.update(b)
        lrs.append(algo.optims["actor"].param_groups[0]["lr"])
    want = [1e-3 * 0.5 * (1 + math.cos(math.pi * min(t, 4) / 4)) for t in range(6)]
    np.testing.assert_allclose(lrs, want, atol=1e-12)
    assert lrs[0] == 1e-3 and lrs[2] == pytest.approx(5e-4) and lrs[4] == lrs[5] == 0.0
    assert _hand_built().cfg.actor_lr_decay_steps == 0  # paper preset: constant
    assert IQL.preset("original")["actor_lr_decay_steps"] == 1_000_000


def test_the_action_rules():
    algo = _hand_built()
    obs = torch.randn(64, 1)
    mean = algo.act(obs, deterministic=True)
    torch.testing.assert_close(mean, algo.actor.deterministic(obs))
    torch.manual_seed(0)
    a = algo.act(obs)
    assert a.abs().max() <= 1.0 and not torch.equal(a, mean)


def test_a_resumed_run_keeps_the_reward_scale(tmp_path):
    """prepare() runs on a new run only: a run resumed from its checkpoint logs the same rows as
    an uninterrupted one (the scale, here != 1, and the lr schedule come from the checkpoint)."""
    import csv

    from bearl.config import resolve
    from bearl.training.loop import MACHINE_COLUMNS, train

    from conftest import make_random_dataset

    small = {
        "algo": "IQL",
        "dataset": "memory",
        "env": "Pendulum-v1",
        "eval_every": 20,
        "eval_episodes": 1,
        "actor_hidden": "16,16",
        "critic_hidden": "16,16",
        "value_hidden": "16,16",
        "batch_size": 16,
        "actor_lr_decay_steps": 50,
        "progress": False,
        "log_dir": str(tmp_path),
    }

    def rows(name):
        with open(tmp_path / name / "progress.csv", newline="") as f:
            return [
                {k: v for k, v in r.items() if k not in MACHINE_COLUMNS} for r in csv.DictReader(f)
            ]

    ds = make_random_dataset()
    assert ds.episode_returns.max() - ds.episode_returns.min() > 0
    train(*resolve({**small, "steps": 60, "run_name": "full"}), dataset=ds)
    train(*resolve({**small, "steps": 40, "run_name": "part"}), dataset=ds)
    cfg, _ = resolve({**small, "steps": 60, "run_name": "part"})
    train(cfg, resume=tmp_path / "part", dataset=make_random_dataset())
    saved = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    span = float(ds.episode_returns.max() - ds.episode_returns.min())
    assert float(saved["algo"]["extra"]["reward_scale"]) == pytest.approx(1000.0 / span)
    assert len(rows("full")) == 3 and rows("full") == rows("part")
