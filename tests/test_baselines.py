"""The defining piece of each baseline: BCQ's perturbation bound, TD3's target smoothing and
delay, DQfD's margin, KL-Control's temperature, and BC's fit. The shared checks (shapes, state,
training loop) are in test_algorithms.py."""

from __future__ import annotations

import math

import pytest
import torch

from bearl.algos.bc import BC, BCConfig
from bearl.algos.bcq import BCQ, BCQConfig
from bearl.algos.dqfd import DQfD, DQfDConfig, margin_loss
from bearl.algos.kl_control import KLControl, KLControlConfig
from bearl.algos.td3 import TD3, TD3Config
from bearl.config import resolve
from bearl.data.dataset import Batch

from conftest import random_batch

OBS, ACT = 4, 2
SMALL = {"actor_hidden": (16, 16), "critic_hidden": (16, 16), "batch_size": 16}


def batch(n=16, seed=0, terminals=None) -> Batch:
    return random_batch(n, OBS, ACT, seed, terminals)


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


# -- BCQ ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("phi", [0.05, 0.4])
def test_bcq_perturbation_is_bounded_by_phi_and_stays_in_range(phi):
    torch.manual_seed(0)
    algo = BCQ(BCQConfig(phi=phi, vae_hidden=(16, 16), **SMALL), OBS, ACT)
    with torch.no_grad():  # saturate tanh(f) so the perturbation reaches +-phi
        algo.actor.net[-1].bias.fill_(50.0)
        algo.actor.net[-1].bias[1] = -50.0
    obs = torch.randn(32, OBS)
    vae_a, _ = algo.vae.decode(obs, n=7)  # [32, 7, A]
    out = algo.actor(obs, vae_a)
    assert out.shape == (32, 7, ACT)
    assert torch.all((out - vae_a).abs() <= phi + 1e-6)
    assert torch.all(out.abs() <= 1.0)
    # away from the bounds the perturbation is exactly +phi / -phi
    inside = (vae_a[..., 0] < 1 - phi) & (vae_a[..., 1] > -1 + phi)
    assert inside.any()
    shift = out[inside] - vae_a[inside]
    torch.testing.assert_close(shift, torch.tensor([phi, -phi]).expand_as(shift))
    # near the bounds the clamp keeps actions in [-1, 1] and the perturbation smaller
    edge = torch.tensor([[[0.99, -0.99]]]).expand(32, 1, ACT)
    torch.testing.assert_close(algo.actor(obs, edge), torch.tensor([[[1.0, -1.0]]]).expand_as(edge))


def test_bcq_target_respects_terminals_and_act_picks_argmax_q1():
    torch.manual_seed(0)
    algo = BCQ(BCQConfig(vae_hidden=(16, 16), **SMALL), OBS, ACT)
    term = torch.tensor([1.0, 0.0] * 8)
    b = batch(terminals=term)
    y = algo._target(b)
    torch.testing.assert_close(y[term == 1], b.rewards[term == 1])
    assert not torch.allclose(y[term == 0], b.rewards[term == 0])

    obs = torch.randn(5, OBS)
    torch.manual_seed(3)
    a = algo.act(obs)
    torch.manual_seed(3)
    cand = algo.candidates(obs, algo.cfg.num_eval_samples)  # the same draws
    q1 = algo.critic(obs.unsqueeze(1), cand)[0]
    torch.testing.assert_close(a, cand[torch.arange(5), q1.argmax(-1)])


# -- TD3 ----------------------------------------------------------------------------------------
def test_td3_target_uses_a_smoothed_action_with_clipped_noise():
    torch.manual_seed(0)
    algo = TD3(TD3Config(policy_noise=5.0, noise_clip=0.3, **SMALL), OBS, ACT)
    with torch.no_grad():  # target actor outputs 0, so the smoothed action is the noise itself
        algo.actor_target.net[-1].weight.zero_()
        algo.actor_target.net[-1].bias.zero_()
    b = batch(n=256)
    noise = algo.smoothed_target_action(b.next_observations)
    assert torch.all(noise.abs() <= 0.3 + 1e-6)
    assert (noise.abs() > 0.3 - 1e-6).float().mean() > 0.9  # with std 5, nearly all are clipped

    torch.manual_seed(7)
    y = algo._target(b)
    torch.manual_seed(7)
    a2 = algo.smoothed_target_action(b.next_observations)  # the same draw as inside _target
    q2 = algo.critic_target(b.next_observations, a2).min(0).values
    torch.testing.assert_close(y, b.rewards + algo.cfg.gamma * q2)
    unsmoothed = algo.critic_target(b.next_observations, torch.zeros_like(a2)).min(0).values
    assert not torch.allclose(y, b.rewards + algo.cfg.gamma * unsmoothed)


def test_td3_actor_and_targets_update_every_policy_freq_steps():
    torch.manual_seed(0)
    algo = TD3(TD3Config(policy_freq=3, **SMALL), OBS, ACT)
    for step in range(7):
        actor, actor_t, critic_t = (
            params(algo.actor),
            params(algo.actor_target),
            params(algo.critic_target),
        )
        critic = params(algo.critic)
        metrics = algo.update(batch(seed=step))
        delayed = step % 3 == 0
        assert same(actor, params(algo.actor)) != delayed, step
        assert same(actor_t, params(algo.actor_target)) != delayed, step
        assert same(critic_t, params(algo.critic_target)) != delayed, step
        assert not same(critic, params(algo.critic))  # the critic learns every step
        assert {"policy_q", "q_data", "q_target", "action_mse", "actor_loss"} <= set(metrics)


# -- DQfD ---------------------------------------------------------------------------------------
def test_margin_loss_on_hand_built_values():
    q_pi = torch.tensor([0.0, 0.0, 1.0])
    assert margin_loss(q_pi, torch.tensor([10.0, 11.0, 11.0]), 10.0) == 0.0
    # violations: 0 + 10 - 9 = 1 and 1 + 10 - 5 = 6
    torch.testing.assert_close(
        margin_loss(q_pi, torch.tensor([10.0, 9.0, 5.0]), 10.0), torch.tensor(7.0 / 3.0)
    )


def test_dqfd_margin_with_a_hand_built_critic_and_actor():
    torch.manual_seed(0)
    algo = DQfD(
        DQfDConfig(actor_hidden=(4,), critic_hidden=(2,), margin_threshold=1.0, critic_lr=0.0),
        OBS,
        ACT,
    )
    with torch.no_grad():
        # Q_k(s, a) = 20 * a_0 for both critics: relu(a_0) * 20 - relu(-a_0) * 20
        hidden, out = algo.critic.hidden[0], algo.critic.out
        hidden.weight.zero_()
        hidden.bias.zero_()
        hidden.weight[:, OBS, 0] = 1.0
        hidden.weight[:, OBS, 1] = -1.0
        out.weight[:, :, 0] = torch.tensor([20.0, -20.0])
        out.bias.zero_()
        # mu(s) = (0.5, 0): Q_1(s, mu(s)) = 10
        algo.actor.net[-1].weight.zero_()
        algo.actor.net[-1].bias.copy_(torch.tensor([math.atanh(0.5), 0.0]))

    def margin_of(demo_a0: list[float]) -> float:
        acts = torch.tensor([[x, 0.0] for x in demo_a0])
        b = Batch(torch.randn(3, OBS), acts, torch.zeros(3), torch.randn(3, OBS), torch.ones(3))
        return float(algo._critic_step(b)["margin_loss"])

    # Q_1 of the demonstration is 18, 11, 12 >= 10 + 1: no margin violation
    assert margin_of([0.9, 0.55, 0.6]) == pytest.approx(0.0, abs=1e-5)
    # 18 -> 0, 10 -> 10 + 1 - 10 = 1, -10 -> 10 + 1 + 10 = 21: mean 22 / 3
    assert margin_of([0.9, 0.5, -0.5]) == pytest.approx(22.0 / 3.0, rel=1e-4)


def test_dqfd_vae_demonstrations_train_a_vae():
    torch.manual_seed(0)
    algo = DQfD(DQfDConfig(demo_action="vae", vae_hidden=(16, 16), **SMALL), OBS, ACT)
    m = algo.update(batch())
    assert "vae" in algo.nets and {"vae_loss", "margin_loss", "td_loss"} <= set(m)
    assert "vae" not in DQfD(DQfDConfig(**SMALL), OBS, ACT).nets


# -- KL-Control ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kl, grows", [(5.0, True), (-5.0, False)])
def test_kl_temperature_moves_towards_target(kl, grows):
    torch.manual_seed(0)
    algo = KLControl(KLControlConfig(target_kl=0.1, **SMALL), OBS, ACT)
    algo._log_ratio = lambda obs, pre: torch.full(pre.shape[:-1], kl)  # a fixed KL estimate
    before = float(algo.log_alpha.detach())
    m = algo._actor_step(batch())
    after = float(algo.log_alpha.detach())
    assert (after > before) == grows and after != before
    assert float(m["kl_estimate"]) == pytest.approx(kl)
    assert float(m["temperature"]) == pytest.approx(math.exp(after))


def test_kl_temperature_is_clamped():
    torch.manual_seed(0)
    algo = KLControl(KLControlConfig(log_alpha_max=0.0, **SMALL), OBS, ACT)
    algo._log_ratio = lambda obs, pre: torch.full(pre.shape[:-1], 100.0)
    for _ in range(3):
        algo._actor_step(batch())
    assert float(algo.log_alpha.detach()) == 0.0


def test_kl_target_has_no_correction_when_the_actor_is_the_behaviour_model():
    torch.manual_seed(0)
    algo = KLControl(KLControlConfig(**SMALL), OBS, ACT)
    algo.behavior.load_state_dict(algo.actor.state_dict())
    b = batch()
    torch.manual_seed(1)
    y = algo._target(b)
    torch.manual_seed(1)
    a, _ = algo.actor.sample(b.next_observations)
    q = algo.critic_target(b.next_observations, a).min(0).values
    torch.testing.assert_close(y, b.rewards + algo.cfg.gamma * q)


# -- BC -----------------------------------------------------------------------------------------
def linear_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([[0.3, -0.2], [0.1, 0.25], [-0.2, 0.1], [0.15, 0.05]])
    obs = torch.rand(n, OBS, generator=g) * 2 - 1
    return obs, obs @ w  # |a| <= 0.8


@pytest.mark.parametrize("bc_type", ["deterministic", "gaussian", "vae"])
def test_bc_fits_a_linear_policy(bc_type):
    torch.manual_seed(0)
    cfg = BCConfig(
        bc_type=bc_type, actor_hidden=(32, 32), vae_hidden=(32, 32), actor_lr=3e-3, vae_lr=3e-3
    )
    algo = BC(cfg, OBS, ACT)
    expected = {"vae": {"vae"}, "gaussian": {"actor"}, "deterministic": {"actor"}}[bc_type]
    assert set(algo.nets) == expected  # no critic or unused model is built
    losses = []
    for i in range(300):
        obs, act = linear_data(64, seed=i)
        losses.append(float(algo.update(Batch(obs, act, None, None, None))["bc_loss"]))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first - 0.5 * abs(first)
    obs, act = linear_data(256, seed=10_000)
    mse = float(((algo.act(obs, deterministic=True) - act) ** 2).mean())
    assert mse < {"deterministic": 1e-3, "gaussian": 1e-3, "vae": 2e-3}[bc_type], mse
    stochastic = algo.act(obs)
    assert stochastic.shape == act.shape and torch.all(stochastic.abs() <= 1.0)


# -- presets ------------------------------------------------------------------------------------
def test_presets_select_the_original_code_settings():
    base = {"dataset": "memory", "env": "Pendulum-v1"}
    _, bc = resolve({**base, "cloning": "true", "preset": "original"})
    assert isinstance(bc, BCConfig) and bc.bc_type == "vae" and bc.batch_size == 100
    _, bc = resolve({**base, "algo": "bc"})
    assert bc.bc_type == "gaussian"
    _, kl = resolve({**base, "algo": "klcontrol", "preset": "original"})
    assert kl.gamma == 0.98 and kl.actor_hidden == (400, 300) and kl.actor_noise_clip == 0.5
    _, dq = resolve({**base, "algo": "DQfD", "preset": "original"})
    assert dq.demo_action == "vae" and dq.lamda == 0.5 and dq.margin_threshold == 10.0
    _, td3 = resolve({**base, "algo": "TD3"})
    assert td3.actor_hidden == (256, 256) and td3.actor_lr == 3e-4
    _, bcq_paper = resolve({**base, "algo": "BCQ"})
    _, bcq_orig = resolve({**base, "algo": "BCQ", "preset": "original"})
    assert bcq_paper == bcq_orig == BCQConfig()
