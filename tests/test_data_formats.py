"""Loaders and writers of every dataset format, on small files built here."""

from __future__ import annotations

import gzip
import os
import pickle
import sys
import types

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from bearl.data import Dataset, DatasetInfo, load_dataset
from bearl.data.d4rl import read_d4rl, write_d4rl
from bearl.data.legacy import read_legacy
from bearl.data.load import describe
from bearl.data.minari_io import read_minari, write_minari
from bearl.envs import D4RL_REF_SCORES
from bearl.errors import DatasetError

# -- D4RL ---------------------------------------------------------------------------------------
# 11 rows: episode A = rows 0-2 (terminal at 2); D = row 3 alone (timeout); B = rows 4-7
# (timeout at 7); C = rows 8-10 (cut off by the end of the file, no flag).
N = 11
TERMINALS = np.zeros(N, bool)
TERMINALS[2] = True
TIMEOUTS = np.zeros(N, bool)
TIMEOUTS[[3, 7]] = True


def _obs(n: int) -> np.ndarray:
    """Row i observes (i, 10 i): every row is distinct and identifies itself."""
    return np.stack([np.arange(n), 10 * np.arange(n)], axis=1).astype(np.float32)


def _write_h5(path, **arrays) -> None:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


def _d4rl_arrays(with_next: bool = False, with_timeouts: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "observations": _obs(N),
        "actions": rng.uniform(-1, 1, (N, 1)).astype(np.float32),
        "rewards": np.arange(N, dtype=np.float32) + 0.5,
        "terminals": TERMINALS,
        "infos/qpos": np.zeros((N, 3), np.float32),
    }
    if with_timeouts:
        arrays["timeouts"] = TIMEOUTS
    if with_next:
        arrays["next_observations"] = _obs(N) + 100.0
    return arrays


def test_d4rl_without_next_observations_drops_rows_without_a_next_state(tmp_path):
    path = tmp_path / "data.hdf5"
    arrays = _d4rl_arrays()
    _write_h5(path, **arrays)
    ds = read_d4rl(path)

    kept = [0, 1, 2, 4, 5, 6, 8, 9]
    obs = _obs(N)
    np.testing.assert_array_equal(ds.observations, obs[kept])
    np.testing.assert_array_equal(ds.actions, arrays["actions"][kept])
    np.testing.assert_array_equal(ds.rewards, arrays["rewards"][kept])
    # the terminal row keeps its own observation; every other row the following one
    np.testing.assert_array_equal(ds.next_observations, obs[[1, 2, 2, 5, 6, 7, 9, 10]])
    assert ds.terminals.tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert ds.timeouts.tolist() == [0, 0, 0, 0, 0, 1, 0, 1]
    assert ds.num_episodes == 3
    assert ds.episode_lengths.tolist() == [3, 3, 2]
    np.testing.assert_allclose(ds.episode_returns, [0.5 + 1.5 + 2.5, 4.5 + 5.5 + 6.5, 8.5 + 9.5])
    # no transition bootstraps into the first state of a later episode
    later_firsts = obs[[3, 4, 8]]
    for row in ds.next_observations:
        assert not (row == later_firsts).all(axis=1).any()


def test_d4rl_without_timeouts_splits_only_at_terminals(tmp_path):
    path = tmp_path / "data.hdf5"
    _write_h5(path, **_d4rl_arrays(with_timeouts=False))
    ds = read_d4rl(path)
    assert len(ds) == N - 1  # only the final, non-terminal row is dropped
    assert ds.num_episodes == 2
    assert ds.episode_lengths.tolist() == [3, 7]
    np.testing.assert_array_equal(ds.next_observations[3:], _obs(N)[4:])


def test_d4rl_with_next_observations_keeps_every_row(tmp_path):
    path = tmp_path / "data.hdf5"
    arrays = _d4rl_arrays(with_next=True)
    _write_h5(path, **arrays)
    ds = read_d4rl(path)
    assert len(ds) == N
    np.testing.assert_array_equal(ds.observations, arrays["observations"])
    np.testing.assert_array_equal(ds.next_observations, arrays["next_observations"])
    assert ds.terminals.tolist() == TERMINALS.tolist()
    expected_timeouts = TIMEOUTS.copy()
    expected_timeouts[-1] = True  # the end of the data cuts the last episode
    assert ds.timeouts.tolist() == expected_timeouts.tolist()
    assert ds.episode_lengths.tolist() == [3, 1, 4, 3]


def test_d4rl_env_name_reference_scores_and_metadata(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    arrays = _d4rl_arrays(with_next=True)
    arrays["metadata/algorithm"] = np.bytes_(b"SAC")
    arrays["metadata/iteration"] = np.int32(7)
    arrays["metadata/policy/fc0/weight"] = np.zeros((4, 2), np.float32)
    _write_h5(path, **arrays)
    ds = read_d4rl(path)
    assert ds.info.env_name == "Hopper-v5"
    assert (ds.info.ref_min_score, ds.info.ref_max_score) == D4RL_REF_SCORES["hopper"]
    assert ds.info.metadata == {"algorithm": "SAC", "iteration": 7}

    with h5py.File(path, "a") as f:
        f.attrs["env_name"] = "Pendulum-v1"  # a file attribute names the env too
    assert read_d4rl(path).info.env_name == "Pendulum-v1"

    other = tmp_path / "other.hdf5"
    arrays["metadata/env_name"] = "walker2d-medium-v2"
    arrays["metadata/ref_min_score"] = 1.0
    arrays["metadata/ref_max_score"] = 2.0
    _write_h5(other, **arrays)
    ds = read_d4rl(other)
    assert ds.info.env_name == "walker2d-medium-v2"
    assert (ds.info.ref_min_score, ds.info.ref_max_score) == (1.0, 2.0)


def _random_dataset(n: int = 40, obs_dim: int = 3, act_dim: int = 1, seed: int = 0) -> Dataset:
    """Consistent episodes (next_obs[t] == obs[t+1] inside an episode), some terminal."""
    rng = np.random.default_rng(seed)
    observations = rng.normal(size=(n, obs_dim)).astype(np.float32)
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[[6, 20]] = True
    timeouts[[12, 31]] = True
    ends = terminals | timeouts
    next_obs = np.empty_like(observations)
    next_obs[:-1] = observations[1:]
    next_obs[ends] = rng.normal(size=(ends.sum(), obs_dim))  # not the next episode's start
    next_obs[-1] = rng.normal(size=obs_dim)
    return Dataset(
        observations,
        rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        next_obs,
        terminals,
        timeouts,
        DatasetInfo("<memory>", "Pendulum-v1", -1000.0, -100.0, {"algorithm_name": "SAC"}),
    )


def _assert_same_arrays(a: Dataset, b: Dataset) -> None:
    for key in Dataset.FIELDS:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def test_d4rl_write_read_round_trip_is_exact(tmp_path):
    ds = _random_dataset()
    path = write_d4rl(ds, tmp_path / "out.hdf5")
    back = read_d4rl(path)
    _assert_same_arrays(ds, back)
    assert back.digest() == ds.digest()  # the same transitions: the same params.json sha1
    assert back.info.env_name == ds.info.env_name
    assert (back.info.ref_min_score, back.info.ref_max_score) == (-1000.0, -100.0)
    assert back.info.metadata["algorithm_name"] == "SAC"
    assert back.info.metadata["source"] == "<memory>"
    with h5py.File(path) as f:
        assert f["observations"].dtype == np.float32
        assert f["terminals"].dtype == bool
        assert f["observations"].compression == "gzip"


def test_the_digest_changes_with_any_field_and_only_with_the_data():
    ds = _random_dataset()
    assert ds.digest() == _random_dataset().digest() and len(ds.digest()) == 40
    for name in Dataset.FIELDS:
        arrays = {k: np.array(getattr(ds, k)) for k in Dataset.FIELDS}
        a = arrays[name]
        if a.dtype == bool:
            a[3] = not a[3]
        else:
            a.flat[3] += 1e-3
        other = Dataset(**arrays, info=ds.info)
        assert other.digest() != ds.digest(), name
    assert ds.digest(("observations", "actions")) != ds.digest()


# -- Minari -------------------------------------------------------------------------------------
# episodes of 5, 1, 7 and 3 steps: terminated, truncated, cut (neither), terminated
EPISODES = [(5, "term"), (1, "trunc"), (7, "cut"), (3, "term")]


def _minari_episodes() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    episodes = []
    start = 0.0
    for t, end in EPISODES:
        obs = (start + np.arange(t + 1)[:, None] * np.ones((1, 3))).astype(np.float32)
        start += 1000.0
        terminations = np.zeros(t, bool)
        truncations = np.zeros(t, bool)
        terminations[-1] = end == "term"
        truncations[-1] = end == "trunc"
        episodes.append(
            {
                "observations": obs,
                "actions": rng.uniform(-1, 1, (t, 1)).astype(np.float32),
                "rewards": rng.normal(size=t),
                "terminations": terminations,
                "truncations": truncations,
            }
        )
    return episodes


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _create_with_minari(dataset_id: str, episodes) -> None:
    buffers = [EpisodeBuffer(id=i, infos={}, **ep) for i, ep in enumerate(episodes)]
    minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env="Pendulum-v1",
        algorithm_name="test",
        author="tests",
        author_email="tests@example.org",
        code_permalink="tests",
        description="test data",
        ref_min_score=-1000.0,
        ref_max_score=-100.0,
        data_format="hdf5",
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_minari_dataset_written_by_minari_is_aligned_in_every_episode(minari_root):
    episodes = _minari_episodes()
    _create_with_minari("test/pendulum/mixed-v0", episodes)
    folder = minari_root / "test/pendulum/mixed-v0"

    for ds in (
        read_minari("test/pendulum/mixed-v0"),
        read_minari(folder),
        load_dataset("minari:test/pendulum/mixed-v0"),
        load_dataset("test/pendulum/mixed-v0"),
        load_dataset(folder),
        load_dataset(folder / "data" / "main_data.hdf5"),
    ):
        assert len(ds) == sum(t for t, _ in EPISODES)
        assert ds.num_episodes == len(EPISODES)
        assert ds.info.env_name == "Pendulum-v1"
        assert (ds.info.ref_min_score, ds.info.ref_max_score) == (-1000.0, -100.0)
        assert ds.info.metadata["description"] == "test data"
        starts = ds.episode_starts
        for ep, s, (t, end) in zip(episodes, starts, EPISODES, strict=True):
            rows = slice(s, s + t)
            np.testing.assert_array_equal(ds.observations[rows], ep["observations"][:-1])
            np.testing.assert_array_equal(ds.next_observations[rows], ep["observations"][1:])
            np.testing.assert_array_equal(ds.actions[rows], ep["actions"])
            np.testing.assert_allclose(ds.rewards[rows], ep["rewards"].astype(np.float32))
            assert ds.terminals[rows].tolist() == ep["terminations"].tolist()
            assert ds.timeouts[rows].tolist() == [False] * (t - 1) + [end != "term"]


def test_write_minari_round_trip_and_minari_can_read_it(minari_root):
    ds = _random_dataset()
    folder = write_minari(ds, "bearl/pendulum/test-v0", description="round trip")
    assert folder == minari_root / "bearl/pendulum/test-v0"
    back = read_minari("bearl/pendulum/test-v0")
    _assert_same_arrays(ds, back)
    assert back.digest() == ds.digest()
    assert back.info.env_name == "Pendulum-v1"
    assert (back.info.ref_min_score, back.info.ref_max_score) == (-1000.0, -100.0)
    assert back.info.metadata["description"] == "round trip"

    mds = minari.load_dataset("bearl/pendulum/test-v0")
    assert mds.total_episodes == ds.num_episodes
    assert mds.total_steps == len(ds)
    first = mds[0]
    np.testing.assert_array_equal(first.observations[:-1], ds.observations[:7])
    assert first.observations.dtype == np.float32

    with pytest.raises(DatasetError, match="exists already"):
        write_minari(ds, "bearl/pendulum/test-v0")
    write_minari(ds.subset(slice(0, 10)), "bearl/pendulum/test-v0", overwrite=True)
    assert len(read_minari("bearl/pendulum/test-v0")) == 10


def test_write_minari_without_env_and_with_root_splits_inconsistent_rows(tmp_path, monkeypatch):
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    ds = _random_dataset(obs_dim=4, act_dim=2)
    ds.info.env_name = None
    ds.next_observations[2] += 1.0  # row 2 no longer leads to row 3: a new episode there
    write_minari(ds, "plain-v0", root=tmp_path / "root")
    assert "MINARI_DATASETS_PATH" not in os.environ
    back = read_minari("plain-v0", root=tmp_path / "root")
    assert back.info.env_name is None
    assert (back.info.ref_min_score, back.info.ref_max_score) == (-1000.0, -100.0)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key), err_msg=key)
    expected = ds.timeouts.copy()
    expected[2] = True
    assert back.timeouts.tolist() == expected.tolist()
    spaces = minari.MinariDataset(str(tmp_path / "root" / "plain-v0" / "data"))
    assert spaces.observation_space == gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)


# -- original BEAR/BCQ buffers -----------------------------------------------------------------
def _buffer_dict(n: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    terminals = np.zeros((n, 1), np.float32)
    terminals[4] = 1.0
    return {
        "observations": obs,
        "next_observations": obs + 1,
        "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "rewards": rng.normal(size=(n, 1)).astype(np.float32),
        "terminals": terminals,
        "bootstrap_mask": np.ones((n, 5), np.float32),
    }


def _check_buffer(ds: Dataset, d: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(ds.observations, d["observations"])
    np.testing.assert_array_equal(ds.next_observations, d["next_observations"])
    np.testing.assert_array_equal(ds.actions, d["actions"])
    np.testing.assert_array_equal(ds.rewards, d["rewards"][:, 0])
    assert ds.terminals.tolist() == (d["terminals"][:, 0] == 1).tolist()
    assert ds.timeouts.sum() == 1 and ds.timeouts[-1]  # no timeouts key: only the data end
    assert ds.num_episodes == 2


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_gzip_and_plain_pickles(tmp_path, protocol):
    d = _buffer_dict()
    gz = tmp_path / "buffer.pkl.gz"
    with gzip.open(gz, "wb") as f:
        pickle.dump(d, f, protocol=protocol)
    plain = tmp_path / "buffer.pkl"
    plain.write_bytes(pickle.dumps(d, protocol=protocol))
    for path in (gz, plain):
        _check_buffer(read_legacy(path), d)
        _check_buffer(load_dataset(path), d)


def test_npy_dict_and_npz(tmp_path):
    d = _buffer_dict()
    np.save(tmp_path / "buffer.npy", d, allow_pickle=True)
    np.savez(tmp_path / "buffer.npz", **d)
    d_with_timeouts = dict(d, timeouts=np.eye(1, 12, 8, dtype=bool)[0])
    np.savez_compressed(tmp_path / "timeouts.npz", **d_with_timeouts)
    for name in ("buffer.npy", "buffer.npz"):
        _check_buffer(load_dataset(tmp_path / name), d)
    ds = load_dataset(tmp_path / "timeouts.npz")
    assert ds.timeouts.nonzero()[0].tolist() == [8, 11]


def test_load_dataset_dispatches_on_magic_bytes_not_extensions(tmp_path):
    d = _buffer_dict()
    gz = tmp_path / "buffer.dat"
    with gzip.open(gz, "wb") as f:
        pickle.dump(d, f)
    (tmp_path / "plain.bin").write_bytes(pickle.dumps(d))
    np.save(tmp_path / "dict.npy", d, allow_pickle=True)
    (tmp_path / "dict.npy").rename(tmp_path / "dict.x")
    np.savez(tmp_path / "arrays.npz", **d)
    (tmp_path / "arrays.npz").rename(tmp_path / "arrays.zzz")
    for name in ("buffer.dat", "plain.bin", "dict.x", "arrays.zzz"):
        ds = load_dataset(tmp_path / name)
        _check_buffer(ds, d)
        assert ds.info.source == str(tmp_path / name)
    h5 = tmp_path / "d4rl.data"
    _write_h5(h5, **_d4rl_arrays(with_next=True))
    assert len(load_dataset(str(h5))) == N


def test_load_dataset_returns_datasets_as_is_and_calls_the_suite(monkeypatch):
    ds = _random_dataset()
    assert load_dataset(ds) is ds

    calls = []
    fake = types.ModuleType("bearl.data.suite")
    fake.load_or_make = lambda name: calls.append(name) or ds
    monkeypatch.setitem(sys.modules, "bearl.data.suite", fake)
    assert load_dataset("hopper-medium-replay") is ds
    assert calls == ["hopper-medium-replay"]

    monkeypatch.setitem(sys.modules, "bearl.data.suite", types.ModuleType("bearl.data.suite"))
    with pytest.raises(DatasetError, match="not available yet"):
        load_dataset("walker2d-expert")


def test_describe_matches_numpy():
    ds = _random_dataset()
    summary = describe(ds)
    ends = np.flatnonzero(ds.terminals | ds.timeouts)
    starts = np.concatenate([[0], ends[:-1] + 1])
    returns = np.array(
        [ds.rewards[s : e + 1].astype(np.float64).sum() for s, e in zip(starts, ends, strict=True)]
    )
    normalized = 100 * (returns + 1000.0) / 900.0
    assert summary["transitions"] == 40
    assert summary["episodes"] == len(ends) == 5
    assert summary["terminals"] == 2 and summary["timeouts"] == 3
    assert (summary["obs_dim"], summary["act_dim"]) == (3, 1)
    assert summary["env"] == "Pendulum-v1" and summary["source"] == "<memory>"
    for name, values in (("return", returns), ("normalized_return", normalized)):
        assert summary[f"{name}_mean"] == pytest.approx(values.mean())
        assert summary[f"{name}_std"] == pytest.approx(values.std())
        assert summary[f"{name}_min"] == pytest.approx(values.min())
        assert summary[f"{name}_max"] == pytest.approx(values.max())
    ds.info.ref_min_score = None
    assert "normalized_return_mean" not in describe(ds)
