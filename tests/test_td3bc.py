"""TD3+BC's distinctive pieces: lambda = alpha / mean |Q| (which makes the actor's step blind to
the scale of Q), the BC term, and the state normalisation fitted once and carried everywhere."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bearl.algos.td3bc import TD3BC, TD3BCConfig
from bearl.config import resolve
from bearl.nets import ObsNormalizer

from conftest import bandit_dataset, bandit_reward, random_batch

OBS, ACT = 4, 2


def make(**over) -> TD3BC:
    torch.manual_seed(0)
    cfg = TD3BCConfig(
        **{"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 32, **over}
    )
    return TD3BC(cfg, OBS, ACT, "cpu")


def actor_gradient(algo: TD3BC, batch) -> tuple[torch.Tensor, dict]:
    """The actor's gradient of one actor step (the optimizer is not stepped)."""
    grads = []

    def record(name, loss):
        params = list(algo.nets[name].parameters())
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))

    algo.optimize = record
    metrics = algo._actor_step(batch)
    del algo.optimize
    return grads[0], metrics


def test_lambda_is_alpha_over_the_mean_absolute_q_of_the_policy_actions():
    algo = make(alpha=2.5)
    b = random_batch(32, OBS, ACT, seed=1)
    with torch.no_grad():
        q1 = algo.critic(b.observations, algo.actor(b.observations), member=0)
    _, m = actor_gradient(algo, b)
    assert float(m["lambda"]) == pytest.approx(2.5 / float(q1.abs().mean()), rel=1e-6)
    assert float(m["policy_q"]) == pytest.approx(float(q1.mean()), rel=1e-6)


def test_the_actor_step_does_not_depend_on_the_scale_of_q():
    """Q scaled by 10 (the critic's output layer): lambda shrinks by 10 and the actor's gradient
    is unchanged. A fixed weight on Q (no normalisation) would scale the Q part of it by 10."""
    algo = make()
    b = random_batch(32, OBS, ACT, seed=2)
    g1, _ = actor_gradient(algo, b)
    scaled = copy.deepcopy(algo)
    with torch.no_grad():
        for p in scaled.critic.out.parameters():  # Q = out(h): weight and bias times 10
            p.mul_(10.0)
    g10, m10 = actor_gradient(scaled, b)
    torch.testing.assert_close(g10, g1, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        q = scaled.critic(b.observations, scaled.actor(b.observations), member=0)
    assert float(m10["lambda"]) == pytest.approx(2.5 / float(q.abs().mean()), rel=1e-6)


def test_alpha_zero_is_behaviour_cloning():
    algo = make(alpha=0.0)
    b = random_batch(32, OBS, ACT, seed=3)
    g, m = actor_gradient(algo, b)
    pi = algo.actor(b.observations)
    params = list(algo.actor.parameters())
    bc = torch.cat(
        [x.flatten() for x in torch.autograd.grad(((pi - b.actions) ** 2).mean(), params)]
    )
    torch.testing.assert_close(g, bc)
    assert float(m["actor_loss"]) == pytest.approx(float(m["action_mse"]), rel=1e-6)


def test_the_normaliser_is_fitted_once_and_used_by_update_act_and_q():
    ds, w = bandit_dataset(n=500, offset=5.0)
    algo = make()
    algo.prepare(ds)
    np.testing.assert_allclose(algo.obs_norm.mean.numpy(), ds.observations.mean(0), rtol=1e-5)
    np.testing.assert_allclose(algo.obs_norm.std.numpy(), ds.observations.std(0) + 1e-3, rtol=1e-4)
    obs = torch.as_tensor(ds.observations[:7])
    norm = (obs - algo.obs_norm.mean) / algo.obs_norm.std
    torch.testing.assert_close(algo.act(obs), algo.actor(norm))
    act = torch.rand(7, ACT) * 2 - 1
    torch.testing.assert_close(algo.q_value(obs, act), algo.critic(norm, act).min(0).values)
    # kept by the state (checkpoints, resume) ...
    other = make()
    other.load_state_dict(copy.deepcopy(algo.state_dict()))
    torch.testing.assert_close(other.obs_norm.std, algo.obs_norm.std)
    # ... and off when asked
    off = make(normalize_states=False)
    off.prepare(ds)
    assert torch.equal(off.obs_norm.mean, ObsNormalizer(OBS).mean)


def test_it_learns_the_one_step_problem_with_offset_states():
    """States around 50 with spread 1: without the normaliser the networks' inputs are far from
    where they were initialised; TD3+BC still closes most of the gap to the best action."""
    offset = 50.0
    ds, w = bandit_dataset(offset=offset)
    algo = make(actor_lr=1e-3, critic_lr=1e-3, batch_size=64)
    algo.prepare(ds)
    sampler = ds.sampler(64, "cpu", seed=0)
    for _ in range(400):
        algo.update(sampler.sample())
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(1000, OBS, generator=g) + offset
    random = bandit_reward(obs, torch.rand(1000, ACT, generator=g) * 2 - 1, w, offset)
    got = bandit_reward(obs, algo.act(obs), w, offset)
    assert got > 0.5 * random, (float(got), float(random))


def test_the_training_loop_fits_the_normaliser_and_the_checkpoint_keeps_it(tmp_path):
    from bearl.policy.load import load_policy
    from bearl.training.loop import train

    ds, _ = bandit_dataset(n=400, offset=3.0)
    cfg, algo_cfg = resolve(
        {
            "algo": "TD3BC",
            "dataset": "memory",
            "steps": 10,
            "eval_every": 10,
            "eval_episodes": 0,
            "progress": False,
            "log_dir": str(tmp_path),
            "run_name": "r",
            "actor_hidden": (16, 16),
            "critic_hidden": (16, 16),
            "batch_size": 16,
        }
    )
    train(cfg, algo_cfg, dataset=ds)
    policy = load_policy(tmp_path / "r", checkpoint="final")
    np.testing.assert_allclose(
        policy.algo.obs_norm.mean.numpy(), ds.observations.mean(0), rtol=1e-5
    )
