"""BEAR's defining pieces: MMD kernels, the Lagrange multiplier, the actor objective, the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bearl.algos.bear import BEAR, BEARConfig
from bearl.data.dataset import Batch
from bearl.kernels import mmd

from conftest import random_batch

OBS, ACT = 5, 2


def numpy_mmd(x: np.ndarray, y: np.ndarray, kernel: str, sigma: float) -> float:
    """Direct double-loop V-statistic, the definition written out."""

    def k(a, b):
        if kernel == "gaussian":
            return np.exp(-np.sum((a - b) ** 2) / (2 * sigma))
        return np.exp(-np.sum(np.abs(a - b)) / (2 * sigma))

    kxx = np.mean([[k(a, b) for b in x] for a in x])
    kyy = np.mean([[k(a, b) for b in y] for a in y])
    kxy = np.mean([[k(a, b) for b in y] for a in x])
    return float(np.sqrt(kxx + kyy - 2 * kxy + 1e-6))


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
@pytest.mark.parametrize("sigma", [0.5, 20.0])
def test_mmd_matches_numpy(kernel, sigma):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5, 3))
    y = rng.normal(loc=0.7, size=(4, 7, 3))
    got = mmd(torch.tensor(x), torch.tensor(y), kernel, sigma).numpy()
    want = [numpy_mmd(x[b], y[b], kernel, sigma) for b in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mmd_is_small_for_same_samples_and_grows_with_shift():
    x = torch.randn(3, 6, 2)
    same = mmd(x, x.clone(), "laplacian", 1.0)
    far = mmd(x, x + 5.0, "laplacian", 1.0)
    assert torch.all(same < 1e-2) and torch.all(far > 0.5)


def batch(n=64, seed=0, terminals=None) -> Batch:
    return random_batch(n, OBS, ACT, seed, terminals)


def small(**kw) -> BEARConfig:
    base = dict(
        actor_hidden=(32, 32),
        critic_hidden=(32, 32),
        vae_hidden=(32, 32),
        batch_size=64,
        warm_start_steps=0,
        num_eval_samples=8,
    )
    base.update(kw)
    return BEARConfig(**base)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_lagrange_moves_towards_constraint_and_respects_clamp(direction):
    # threshold far below any MMD -> alpha must rise; far above -> alpha must fall
    thresh = -10.0 if direction == "up" else 10.0
    algo = BEAR(small(target_mmd_thresh=thresh, alpha_lr=0.5, lagrange_thresh=1.0), OBS, ACT)
    start = algo.log_alpha.item()
    for _ in range(30):
        algo.update(batch())
    end = algo.log_alpha.item()
    if direction == "up":
        assert end > start and end == pytest.approx(1.0)  # reached the upper clamp
    else:
        assert end < start and end == pytest.approx(-5.0)  # reached the lower clamp


def test_fixed_mode_keeps_alpha():
    algo = BEAR(small(mode="fixed", fixed_alpha=7.0), OBS, ACT)
    m = algo.update(batch())
    assert m["alpha"].item() == pytest.approx(7.0)
    assert algo.log_alpha.item() == 0.0


def test_alpha_update_does_not_change_the_actor_step():
    """The actor steps on -Q + alpha * D whether alpha is tuned (auto) or fixed at the same
    value: the dual step on alpha must not reach the actor's gradient (d3rlpy 2.8.1's BEAR
    cancels its MMD term that way; studies/hopper_suite/d3rlpy_bear_grad.py)."""

    def actor_after_one_step(**kw) -> torch.Tensor:
        torch.manual_seed(0)
        algo = BEAR(small(init_log_alpha=0.0, **kw), OBS, ACT)
        algo._actor_step(batch())
        return torch.cat([p.detach().flatten() for p in algo.actor.parameters()])

    auto = actor_after_one_step(mode="auto")
    torch.testing.assert_close(auto, actor_after_one_step(mode="fixed", fixed_alpha=1.0))
    # the constraint term does move the actor (so a cancelled one would be seen above)
    assert not torch.allclose(auto, actor_after_one_step(mode="fixed", fixed_alpha=0.0))


def _actor_loss(cfg: BEARConfig, q_values: torch.Tensor) -> float:
    """Run one actor step of a BEAR whose critic returns fixed per-member values."""
    torch.manual_seed(0)
    algo = BEAR(cfg, OBS, ACT)

    class FixedQ(torch.nn.Module):
        n = len(q_values)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, obs, act):
            shape = act.shape[:-1]
            return q_values.view(-1, *([1] * len(shape))).expand(len(q_values), *shape) + self.w

    algo.critic = FixedQ()
    algo.step = cfg.warm_start_steps  # past the warm start
    return algo._actor_step(batch())["actor_loss"].item(), algo


@pytest.mark.parametrize("version,expected", [(0, 1.0), (1, 5.0), (2, 3.0)])
def test_version_selects_min_max_mean(version, expected):
    q = torch.tensor([1.0, 5.0])
    cfg = small(version=version, mode="fixed", fixed_alpha=0.0)
    loss, _ = _actor_loss(cfg, q)
    assert loss == pytest.approx(-expected, abs=1e-5)


def test_ensemble_variance_penalty():
    q = torch.tensor([1.0, 5.0, 3.0])
    cfg = small(
        num_qs=3,
        version=2,
        mode="fixed",
        fixed_alpha=0.0,
        use_ensemble_variance=True,
        lamda=0.5,
        delta_conf=0.1,
    )
    loss, _ = _actor_loss(cfg, q)
    std = np.std([1.0, 5.0, 3.0])
    assert loss == pytest.approx(-3.0 + 0.5 * np.sqrt(0.9 / 0.1) * std, abs=1e-4)
    off, _ = _actor_loss(small(num_qs=3, version=2, mode="fixed", fixed_alpha=0.0, lamda=0.5), q)
    assert off == pytest.approx(-3.0, abs=1e-5)


def test_warm_start_uses_only_the_constraint():
    cfg = small(warm_start_steps=100, mode="fixed", fixed_alpha=2.0)
    algo = BEAR(cfg, OBS, ACT)
    m = algo._actor_step(batch())
    assert m["actor_loss"].item() == pytest.approx(2.0 * m["distance"].item(), rel=1e-5)


def test_target_uses_terminals_not_timeouts():
    algo = BEAR(small(gamma=0.5), OBS, ACT)
    b = batch()
    y_alive = algo._target(b)
    term = torch.zeros(len(b.rewards))
    term[:10] = 1.0
    torch.manual_seed(0)
    y_term = algo._target(b._replace(terminals=term))
    np.testing.assert_allclose(y_term[:10].numpy(), b.rewards[:10].numpy(), rtol=1e-6)
    # non-terminal rows bootstrap (a timeout is not a terminal: the loop never sets it)
    assert not torch.allclose(y_alive[10:], b.rewards[10:])


def test_kl_distance_and_update_are_finite():
    algo = BEAR(small(distance_type="KL"), OBS, ACT)
    for _ in range(3):
        m = algo.update(batch())
    assert all(torch.isfinite(v) for v in m.values())


def test_original_knobs_run():
    algo = BEAR(
        small(
            backup_with_target_actor=True,
            actor_noise_clip=0.5,
            actor_log_std_bounds=None,
            kernel_type="gaussian",
            num_qs=4,
        ),
        OBS,
        ACT,
    )
    m = algo.update(batch())
    assert all(torch.isfinite(v) for v in m.values())
    a = algo.act(torch.randn(3, OBS))
    assert a.shape == (3, ACT) and torch.all(a.abs() <= 1)


def test_act_picks_argmax_of_q1():
    algo = BEAR(small(num_eval_samples=16), OBS, ACT)
    obs = torch.randn(4, OBS)
    torch.manual_seed(3)
    chosen = algo.act(obs)
    torch.manual_seed(3)
    cand, _ = algo.actor.sample(obs, n=16)
    q1 = algo.critic(obs.unsqueeze(1), cand)[0]
    want = cand[torch.arange(4), q1.argmax(-1)]
    torch.testing.assert_close(chosen, want)


@pytest.mark.parametrize(
    "bad",
    [
        dict(version=3),
        dict(num_qs=1),
        dict(kernel_type="rbf"),
        dict(distance_type="JS"),
        dict(mode="manual"),
    ],
)
def test_invalid_config_rejected(bad):
    with pytest.raises(ValueError):
        small(**bad).validate()
