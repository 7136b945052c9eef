"""One harness for every registered algorithm: shapes, finite metrics, state round trip,
learning on a trivial problem, and a short run through the training loop."""

from __future__ import annotations

import copy

import pytest
import torch

from bearl.algos import ALGORITHMS, algorithm_class
from bearl.config import resolve
from bearl.data.dataset import Batch

from conftest import random_batch

OBS, ACT = 4, 2
TINY = {
    "actor_hidden": (32, 32),
    "critic_hidden": (32, 32),
    "vae_hidden": (32, 32),
    "batch_size": 32,
    "warm_start_steps": 5,
    "num_eval_samples": 4,
}


def make(name: str, device: str = "cpu", **over):
    cls = algorithm_class(name)
    fields = cls.config_cls.__dataclass_fields__
    cfg = cls.config_cls(**{k: v for k, v in {**TINY, **over}.items() if k in fields})
    torch.manual_seed(0)
    return cls(cfg, OBS, ACT, device)


def batch(n=32, seed=0, device: str = "cpu") -> Batch:
    b = random_batch(n, OBS, ACT, seed, terminal_rate=0.1)
    return Batch(*(t.to(device) for t in b))


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_update_and_act_shapes(name):
    algo = make(name)
    for i in range(8):
        metrics = algo.update(batch(seed=i))
    assert metrics and all(v.dim() == 0 and torch.isfinite(v) for v in metrics.values())
    assert algo.step == 8
    for det in (False, True):
        a = algo.act(torch.randn(5, OBS), deterministic=det)
        assert a.shape == (5, ACT) and torch.all(a.abs() <= 1.0)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_state_round_trip(name):
    algo = make(name)
    for i in range(3):
        algo.update(batch(seed=i))
    state = copy.deepcopy(algo.state_dict())
    other = make(name)
    other.load_state_dict(state)
    obs = torch.randn(6, OBS)
    assert torch.equal(algo.act(obs, deterministic=True), other.act(obs, deterministic=True))
    torch.manual_seed(5)
    m1 = algo.update(batch(seed=9))
    torch.manual_seed(5)
    m2 = other.update(batch(seed=9))
    assert all(torch.equal(m1[k], m2[k]) for k in m1)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_critic_or_model_loss_decreases_on_a_trivial_problem(name):
    # one fixed minibatch, zero reward, all terminal: every loss the algorithm fits must drop.
    # DQfD's margin loss is >= margin_threshold whenever the actor maximises Q_1, so its critic
    # loss can only reach 0 (Q = 0 everywhere) with a zero margin.
    algo = make(name, critic_lr=3e-3, vae_lr=3e-3, actor_lr=3e-3, margin_threshold=0.0)
    b = batch()
    b = b._replace(rewards=torch.zeros_like(b.rewards), terminals=torch.ones_like(b.terminals))
    first = algo.update(b)
    for _ in range(150):
        last = algo.update(b)
    losses = [k for k in first if k in ("critic_loss", "vae_loss", "bc_loss")]
    assert losses, "the harness expects at least one fitted loss"
    for k in losses:
        assert last[k] < 0.5 * first[k], (k, float(first[k]), float(last[k]))


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_short_training_run(name, tmp_path):
    from bearl.training.loop import train

    from conftest import make_random_dataset

    values = {
        "algo": name,
        "dataset": "memory",
        "env": "Pendulum-v1",
        "steps": 20,
        "eval_every": 10,
        "eval_episodes": 1,
        "progress": False,
        "log_dir": str(tmp_path),
        "run_name": "r",
    }
    cfg, algo_cfg = resolve(
        {
            **values,
            **{
                k: v
                for k, v in TINY.items()
                if k in algorithm_class(name).config_cls.__dataclass_fields__
            },
        }
    )
    result = train(cfg, algo_cfg, dataset=make_random_dataset())
    assert result["steps"] == 20 and result["final_return"] is not None
    assert (tmp_path / "r" / "checkpoint.pt").exists()


def test_critic_member_matches_the_full_ensemble():
    from bearl.nets import EnsembleCritic

    critic = EnsembleCritic(OBS, ACT, (16, 16), n=3)
    obs, act = torch.randn(5, OBS), torch.randn(5, 4, ACT)
    full = critic(obs.unsqueeze(1), act)
    for i in range(3):
        torch.testing.assert_close(critic(obs.unsqueeze(1), act, member=i), full[i])
    torch.testing.assert_close(critic(obs, act[:, 0], member=1), critic(obs, act[:, 0])[1])


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_critic_with_shared_states_matches_repeated_states(dtype):
    """A state given once for K actions (the backups' and CQL's sampled actions) gives the same
    Q values and gradients as the state repeated K times (the plain path)."""
    from bearl.nets import EnsembleCritic

    torch.manual_seed(0)
    critic = EnsembleCritic(OBS, ACT, (16, 16), n=2)
    critic.matmul_dtype = dtype
    obs, act = torch.randn(5, 1, OBS, requires_grad=True), torch.randn(5, 4, ACT)
    shared = critic(obs, act)
    g = torch.randn_like(shared)
    got = torch.autograd.grad(shared, [obs, *critic.parameters()], g)
    repeated = critic(obs.expand(5, 4, OBS), act)
    want = torch.autograd.grad(repeated, [obs, *critic.parameters()], g)
    tol = {} if dtype is None else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(shared, repeated, **tol)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("out", [1, 7])
@pytest.mark.parametrize("shared_input", [True, False])
def test_ensemble_linear_is_n_independent_layers(out, shared_input):
    """Both paths (batched matmul, and multiply-sum for one output) compute x @ W_i + b_i for
    each member, with the same gradients."""
    from bearl.nets import EnsembleLinear

    torch.manual_seed(0)
    layer = EnsembleLinear(3, 5, out)
    x = torch.randn(4, 5) if shared_input else torch.randn(3, 4, 5)
    x.requires_grad_(True)
    y = layer(x)
    ref = torch.stack(
        [(x if shared_input else x[i]) @ layer.weight[i] + layer.bias[i] for i in range(3)]
    )
    assert y.shape == (3, 4, out)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, layer.weight, layer.bias], g)
    want = torch.autograd.grad(ref, [x, layer.weight, layer.bias], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    sub = x if shared_input else x[1:2]  # per-member input holds only the selected members
    torch.testing.assert_close(layer(sub, slice(1, 2)), y[1:2])


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_acts_better_than_random_on_a_one_step_problem(name):
    """On a generated one-step problem with mostly good data (conftest.bandit_dataset), every
    algorithm's policy, sampled and deterministic, closes at least half the gap between a
    uniform random policy and the best action."""
    from conftest import bandit_dataset, bandit_reward

    ds, w = bandit_dataset()
    algo = make(
        name,
        **{k: (64, 64) for k in ("actor_hidden", "critic_hidden", "vae_hidden")},
        actor_lr=1e-3,
        critic_lr=1e-3,
        vae_lr=1e-3,
        batch_size=64,
        warm_start_steps=50,
    )
    algo.prepare(ds)
    sampler = ds.sampler(64, "cpu", seed=0)
    for _ in range(BANDIT_STEPS):
        algo.update(sampler.sample())
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(1000, OBS, generator=g)
    random = bandit_reward(obs, torch.rand(1000, ACT, generator=g) * 2 - 1, w)
    for det in (False, True):
        got = bandit_reward(obs, algo.act(obs, deterministic=det), w)
        assert got > 0.5 * random, (det, float(got), float(random))


BANDIT_STEPS = 400
