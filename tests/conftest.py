"""Shared fixtures: tiny datasets built in memory (no files, no downloads); another process
holding run folders."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bearl.data.dataset import Batch, Dataset, DatasetInfo

# A BEAR run of a few steps on make_random_dataset(): small networks, 2 evaluation episodes.
TINY_RUN = {
    "dataset": "memory",
    "env": "Pendulum-v1",
    "eval_every": 20,
    "eval_episodes": 2,
    "actor_hidden": "32,32",
    "critic_hidden": "32,32",
    "vae_hidden": "32,32",
    "warm_start_steps": 10,
    "batch_size": 32,
    "num_eval_samples": 4,
    "progress": False,
}


def make_random_dataset(
    n: int = 600,
    obs_dim: int = 3,
    act_dim: int = 1,
    episode_len: int = 50,
    seed: int = 0,
    env_name: str | None = "Pendulum-v1",
    action_scale: float = 2.0,
) -> Dataset:
    """A dataset of consistent episodes (next_obs[t] == obs[t+1] inside an episode)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    next_obs = obs[1:].copy()
    obs = obs[:-1]
    ends = np.zeros(n, bool)
    ends[episode_len - 1 :: episode_len] = True
    terminals = ends & (rng.random(n) < 0.5)
    timeouts = ends & ~terminals
    actions = rng.uniform(-action_scale, action_scale, size=(n, act_dim)).astype(np.float32)
    rewards = (-np.square(actions).sum(1) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return Dataset(
        obs,
        actions,
        rewards,
        next_obs,
        terminals,
        timeouts,
        DatasetInfo(
            source="memory:random", env_name=env_name, ref_min_score=-1500.0, ref_max_score=0.0
        ),
    )


def small_arrays(n: int = 8, obs_dim: int = 3, act_dim: int = 1) -> dict[str, np.ndarray]:
    """The six D4RL fields of ``n`` valid transitions (one terminal at row 3), to be broken
    on purpose by the bad-input tests."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    return {
        "observations": obs,
        "next_observations": obs + 1,
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.eye(1, n, 3, dtype=bool)[0],
        "timeouts": np.zeros(n, bool),
    }


def random_batch(
    n: int, obs_dim: int, act_dim: int, seed: int = 0, terminals=None, terminal_rate: float = 0.0
) -> Batch:
    """A minibatch of random transitions (actions in [-1, 1]); ``terminals`` given, or drawn
    with probability ``terminal_rate`` (0: none)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, obs_dim, generator=g)
    act = torch.rand(n, act_dim, generator=g) * 2 - 1
    rew = torch.randn(n, generator=g)
    nxt = torch.randn(n, obs_dim, generator=g)
    if terminals is None:
        terminals = (torch.rand(n, generator=g) < terminal_rate).float() if terminal_rate else None
    return Batch(obs, act, rew, nxt, terminals if terminals is not None else torch.zeros(n))


@pytest.fixture
def tiny_dataset() -> Dataset:
    return make_random_dataset()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


_HOLDER = """
import sys, time
from contextlib import ExitStack
from pathlib import Path
from bearl.training.run_folder import claim
with ExitStack() as stack:
    for path in sys.argv[1:]:
        stack.enter_context(claim(Path(path)))
    print("held", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def run_folders_held(*paths: Path) -> Iterator[None]:
    """Inside: another process holds ``paths`` as ``bearl train`` holds its run folder."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, *map(str, paths)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def bandit_dataset(
    n: int = 2000, obs_dim: int = 4, act_dim: int = 2, seed: int = 0, offset: float = 0.0
) -> tuple[Dataset, torch.Tensor]:
    """A one-step problem with a known best action: ``a*(s) = tanh(s @ W)``, reward
    ``-||a - a*(s)||^2``, every transition terminal. The data are the best action plus noise
    for 70 % of rows and uniform random actions for the rest; ``offset`` is added to the state
    (to test algorithms that normalise states). Returns the dataset and W."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(obs_dim, act_dim)).astype(np.float32)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    best = np.tanh(obs @ w)
    actions = np.clip(best + 0.1 * rng.normal(size=best.shape), -1, 1)
    rand = rng.random(n) < 0.3
    actions[rand] = rng.uniform(-1, 1, size=(int(rand.sum()), act_dim))
    rewards = -np.square(actions - best).sum(1)
    ones = np.ones(n, bool)
    ds = Dataset(
        obs + offset,
        actions.astype(np.float32),
        rewards.astype(np.float32),
        obs + offset,
        ones,
        np.zeros(n, bool),
        DatasetInfo(source="memory:bandit", env_name=None),
    )
    return ds, torch.as_tensor(w)


def bandit_reward(obs: torch.Tensor, act: torch.Tensor, w: torch.Tensor, offset: float = 0.0):
    """The mean reward of actions ``act`` in states ``obs`` of :func:`bandit_dataset`."""
    return -(act - torch.tanh((obs - offset) @ w)).pow(2).sum(-1).mean()
