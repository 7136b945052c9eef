"""bearl's generated suite: determinism, the Minari round trip, medium-replay / medium-expert."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bearl.data import suite
from bearl.data.policy_io import save_policy
from bearl.errors import DatasetError
from bearl.nets import TanhGaussianActor


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """Stand-in shipped policies for hopper: random-init actors in tmp_path."""
    folder = tmp_path / "policies"
    torch.manual_seed(0)
    for level in ("medium", "expert"):
        save_policy(
            TanhGaussianActor(11, 3, (16, 16), (-20.0, 2.0)),
            folder / f"hopper-{level}.pt",
            level=level,
        )
    chain = [None] + [
        {k: v.half() for k, v in TanhGaussianActor(11, 3, (16, 16)).state_dict().items()}
        for _ in range(2)
    ]
    torch.save(
        {
            "obs_dim": 11,
            "act_dim": 3,
            "hidden": [16, 16],
            "log_std_bounds": [-20.0, 2.0],
            "snapshots": chain,
            "steps": [0, 300, 600],
            "transitions_per_snapshot": 300,
            "env_steps": 750,  # the medium snapshot came 150 steps after the last chain entry
        },
        folder / "hopper-replay.pt",
    )
    monkeypatch.setattr(suite, "policy_file", lambda fam, level: folder / f"{fam}-{level}.pt")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return folder


def test_names():
    assert suite.dataset_id("walker2d-medium-replay") == "bearl/walker2d/medium-replay-v0"
    with pytest.raises(DatasetError, match="did you mean hopper-medium"):
        suite.parse_name("hoper-medium")


def test_same_name_and_seed_give_the_same_data(shipped):
    a = suite.generate("hopper-medium", size=700, seed=3, progress=False)
    b = suite.generate("hopper-medium", size=700, seed=3, progress=False)
    c = suite.generate("hopper-medium", size=700, seed=4, progress=False)
    assert len(a) == 700
    assert np.array_equal(a._packed, b._packed) and np.array_equal(a.terminals, b.terminals)
    assert not np.array_equal(a._packed, c._packed)


def test_making_a_dataset_leaves_the_callers_random_state(shipped):
    """A run that makes its dataset first starts from the random state of one that reads it
    from disk (building the policy's networks drew from torch's global generator, so the
    quick start on a fresh machine trained other networks than every later run)."""
    torch.manual_seed(0)
    before = torch.get_rng_state()
    suite.generate("hopper-medium", size=100, seed=3, progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_rollout_episodes_are_consistent(shipped):
    ds = suite.generate("hopper-random", size=500, seed=0, progress=False)
    ends = ds.terminals | ds.timeouts
    inside = ~ends[:-1]
    # inside an episode the next observation is the following row's observation
    assert np.array_equal(ds.next_observations[:-1][inside], ds.observations[1:][inside])
    assert ds.terminals.any()  # random hopper falls
    assert np.all(np.abs(ds.actions) <= 1.0)


class _Bar:
    """Stands in for the tqdm bar: counts what the rollout reports."""

    made: list[_Bar] = []

    def __init__(self, total=None, disable=False, **kwargs):
        self.total, self.n = total, 0
        _Bar.made.append(self)

    def update(self, n=1):
        self.n += n

    def close(self):
        pass


@pytest.mark.parametrize(
    "name", ["hopper-medium", "hopper-random", "hopper-medium-expert", "hopper-medium-replay"]
)
def test_the_progress_bar_ends_at_the_requested_size(shipped, monkeypatch, name):
    """The bar counts the rows kept: the rows of episodes that end past the size (ten run side
    by side, and the last is cut) do not push it past its total (walker2d-medium ended at
    1000051tr for 1,000,000)."""
    import bearl.progress

    monkeypatch.setattr(bearl.progress, "progress_bar", _Bar)
    _Bar.made = []
    ds = suite.generate(name, size=700, seed=0, progress=True)
    assert len(ds) == 700
    assert [(b.n, b.total) for b in _Bar.made] == [(b.total, b.total) for b in _Bar.made]
    assert sum(b.total for b in _Bar.made) == 700


def test_make_writes_a_minari_dataset_that_loads_back(shipped):
    import minari

    made = suite.make("hopper-medium", size=400, seed=1, progress=False)
    mds = minari.load_dataset("bearl/hopper/medium-v0")
    assert mds.total_steps == 400
    assert mds.spec.env_spec.id == "Hopper-v5"
    assert mds.storage.metadata["ref_max_score"] == pytest.approx(3234.3)
    for _ in range(2):  # first from the flat cache written by make, then again
        back = suite.load_or_make("hopper-medium")
        np.testing.assert_array_equal(back.observations, made.observations)
        np.testing.assert_array_equal(back.terminals, made.terminals)
        np.testing.assert_array_equal(back.timeouts, made.timeouts)
        assert back.info.env_name == "Hopper-v5" and back.info.ref_max_score == 3234.3
    cache = suite.cache_path("hopper-medium")
    assert cache.exists()
    cache.unlink()  # without the cache the Minari dataset is read (and the cache rewritten)
    back = suite.load_or_make("hopper-medium")
    np.testing.assert_array_equal(back.actions, made.actions)
    assert cache.exists()
    assert back.info.metadata["policy_digest"] == suite.policy_digest("hopper-medium")


def test_make_of_an_existing_dataset_says_the_flag_and_rolls_out_nothing(
    shipped, monkeypatch, capsys
):
    """`bearl data make` of a dataset that exists names its folder and `--overwrite` (the
    Python API says overwrite=True), before spending minutes on the rollouts."""
    from bearl.cli import main

    assert main(["data", "make", "hopper-medium", "--size", "300"]) == 0
    folder = shipped.parent / "minari" / "bearl" / "hopper" / "medium-v0"
    assert folder.is_dir()
    capsys.readouterr()

    def no_rollouts(*args, **kwargs):
        raise AssertionError("rolled out a dataset that exists already")

    generate = suite.generate
    monkeypatch.setattr(suite, "generate", no_rollouts)
    assert main(["data", "make", "hopper-medium", "--size", "300"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"bearl: error: hopper-medium: exists already at {folder}; "
        "pass --overwrite to make it again"
    )
    with pytest.raises(DatasetError, match="exists already at .*; pass overwrite=True"):
        suite.make("hopper-medium", size=300, progress=False)
    monkeypatch.setattr(suite, "generate", generate)
    assert main(["data", "make", "hopper-medium", "--size", "200", "--overwrite"]) == 0
    assert len(suite.read_local("hopper-medium")) == 200


def test_two_processes_needing_a_missing_dataset_make_it_once(shipped, monkeypatch, capsys):
    """Two trainings starting on a new machine both need hopper-medium: the first makes it, the
    second waits for it (and says so) and reads what the first wrote, instead of failing on a
    half-written file or on 'exists already'."""
    import threading
    import time

    generate, calls = suite.generate, []

    def slow_generate(*args, **kwargs):
        calls.append(args)
        time.sleep(0.5)  # long enough for the other one to arrive while this one works
        return generate(*args, **kwargs)

    monkeypatch.setattr(suite, "generate", slow_generate)
    out: list = [None, None]

    def load(i: int) -> None:
        out[i] = suite.load_or_make("hopper-medium", size=300)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert out[0] is not None and out[1] is not None and len(out[1]) == 300
    assert np.array_equal(out[0].observations, out[1].observations)
    assert "another process is making or reading hopper-medium; waiting" in capsys.readouterr().out


def test_medium_expert_is_medium_then_expert_halves(shipped):
    me = suite.generate("hopper-medium-expert", size=600, seed=0, progress=False)
    med = suite.rollout(
        "Hopper-v5", suite.load_shipped_policy("hopper", "medium")[0], 300, 0, progress=False
    )
    exp = suite.rollout(
        "Hopper-v5", suite.load_shipped_policy("hopper", "expert")[0], 300, 1, progress=False
    )
    assert len(me) == 600
    np.testing.assert_array_equal(me.observations[:300], med.observations)
    np.testing.assert_array_equal(me.observations[300:], exp.observations)
    assert me.terminals[299] or me.timeouts[299]  # the halves never share an episode


def test_medium_replay_rolls_out_the_chain(shipped):
    assert suite.default_size("hopper-medium-replay") == 750
    ds = suite.generate("hopper-medium-replay", seed=0, progress=False)
    assert len(ds) == 750
    # each snapshot's share is the env steps it collected (300, 300, 150), each ending episodes
    for end in (299, 599, 749):
        assert ds.terminals[end] or ds.timeouts[end]
    assert np.all(np.abs(ds.actions[:300]) <= 1.0)  # the random warm-up
    assert len(suite.generate("hopper-medium-replay", size=2, progress=False)) == 2  # 0, 1, 1
    half = suite.generate("hopper-medium-replay", size=375, seed=0, progress=False)
    for end in (149, 299, 374):  # a smaller size keeps the proportions
        assert half.terminals[end] or half.timeouts[end]


def test_missing_policy_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "policy_file", lambda fam, level: tmp_path / "none.pt")
    with pytest.raises(DatasetError, match="no shipped medium policy for walker2d"):
        suite.generate("walker2d-medium", size=10, progress=False)


def test_a_dataset_made_from_other_policies_is_made_again(shipped, capsys):
    first = suite.load_or_make("hopper-medium", size=300)
    again = suite.load_or_make("hopper-medium", size=300)
    np.testing.assert_array_equal(again.actions, first.actions)  # current: read, not remade
    assert not suite.is_stale(again)
    capsys.readouterr()
    torch.manual_seed(1)  # a new bearl version ships another medium policy
    save_policy(TanhGaussianActor(11, 3, (16, 16)), shipped / "hopper-medium.pt", level="medium")
    assert suite.is_stale(suite.read_local("hopper-medium"))
    remade = suite.load_or_make("hopper-medium")
    assert "other policy files" in capsys.readouterr().out
    assert len(remade) == 300  # the size it had
    assert not np.array_equal(remade.actions, first.actions)
    assert not suite.is_stale(suite.read_local("hopper-medium"))
    random = suite.generate("hopper-random", size=50, progress=False)
    assert random.info.metadata["policy_digest"] == "none" and not suite.is_stale(random)


def test_a_dataset_made_by_another_rollout_recipe_is_made_again(shipped, monkeypatch, capsys):
    suite.load_or_make("hopper-random", size=100)
    on_disk = suite.read_local("hopper-random")
    assert int(on_disk.info.metadata["recipe_version"]) == suite.RECIPE_VERSION
    assert not suite.is_stale(on_disk)
    monkeypatch.setattr(suite, "RECIPE_VERSION", suite.RECIPE_VERSION + 1)  # rollout changed
    assert suite.is_stale(suite.read_local("hopper-random"))  # random data too
    capsys.readouterr()
    suite.load_or_make("hopper-random")
    assert "made by an earlier bearl" in capsys.readouterr().out
    again = suite.read_local("hopper-random")
    assert int(again.info.metadata["recipe_version"]) == suite.RECIPE_VERSION
    assert len(again) == 100 and not suite.is_stale(again)


@pytest.mark.parametrize("name", suite.SUITE_NAMES)
def test_every_suite_dataset_can_be_made_from_the_shipped_files(name):
    """The real shipped policies (not stand-ins): all 15 datasets generate offline."""
    ds = suite.generate(name, size=40, seed=0, progress=False)
    assert len(ds) == 40 and ds.info.env_name == suite.ENV_IDS[name.split("-")[0]]
    assert np.all(np.abs(ds.actions) <= 1.0) and np.isfinite(ds.observations).all()


def test_a_dataset_in_a_read_only_folder_is_read_without_a_lock(shipped, monkeypatch):
    """The lock beside a dataset cannot be made in a read-only datasets folder (one shared by
    several users): the dataset is still read."""
    import os

    from bearl import files

    suite.make("hopper-medium", size=200, progress=False)
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(files.os, "open", read_only)
    assert len(suite.load_or_make("hopper-medium")) == 200
