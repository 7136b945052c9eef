"""Policy snapshots (``--snapshot_every``): written with every evaluation by default, without
optimizers, kept across a resume, and loadable as ``load_policy(run, checkpoint="step_N")``."""

from __future__ import annotations

import pytest
import torch

from bearl.config import resolve
from bearl.errors import CheckpointError, ConfigError
from bearl.policy.load import load_policy
from bearl.training.checkpoint import load_checkpoint, snapshot_path, snapshot_steps
from bearl.training.loop import train

from conftest import TINY_RUN, make_random_dataset

SMALL = {**TINY_RUN, "eval_episodes": 1}


def run(tmp_path, name, **over):
    cfg, algo_cfg = resolve({**SMALL, "log_dir": str(tmp_path), "run_name": name, **over})
    return train(cfg, algo_cfg, dataset=make_random_dataset())


def test_a_snapshot_at_every_evaluation_without_optimizers(tmp_path):
    run(tmp_path, "r", steps=50)
    assert snapshot_steps(tmp_path / "r") == [20, 40, 50]  # the last step too
    snap = load_checkpoint(snapshot_path(tmp_path / "r", 40))
    assert snap["step"] == 40 and snap["snapshot"] is True
    assert "optims" not in snap["algo"] and "sampler" not in snap and "rng" not in snap
    final = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    snap50 = load_checkpoint(snapshot_path(tmp_path / "r", 50))
    for name, state in final["algo"]["nets"].items():  # the last snapshot is the last weights
        for key, value in state.items():
            assert torch.equal(value, snap50["algo"]["nets"][name][key]), (name, key)


def test_snapshot_every_sets_its_own_rhythm_or_none(tmp_path):
    run(tmp_path, "every10", steps=40, snapshot_every=10)
    assert snapshot_steps(tmp_path / "every10") == [10, 20, 30, 40]
    run(tmp_path, "none", steps=40, snapshot_every=0)
    assert snapshot_steps(tmp_path / "none") == []
    run(tmp_path, "no_eval", steps=40, eval_episodes=0)  # no simulator: still every eval_every
    assert snapshot_steps(tmp_path / "no_eval") == [20, 40]
    with pytest.raises(ConfigError, match="--snapshot_every"):
        resolve({**SMALL, "snapshot_every": -1})


def test_a_snapshot_loads_as_the_policy_of_its_step(tmp_path):
    run(tmp_path, "r", steps=40, snapshot_every=10)
    obs = torch.randn(5, 3).numpy()
    at20 = load_policy(tmp_path / "r", checkpoint="step_20")
    at40 = load_policy(tmp_path / "r", checkpoint="step_40")
    final = load_policy(tmp_path / "r", checkpoint="final")
    assert at20.step == 20 and at40.step == 40
    assert (at40.act(obs, deterministic=True) == final.act(obs, deterministic=True)).all()
    assert not (at20.act(obs, deterministic=True) == final.act(obs, deterministic=True)).all()
    by_file = load_policy(snapshot_path(tmp_path / "r", 20))  # the file itself: its run found
    assert by_file.run_dir == tmp_path / "r" and by_file.step == 20
    with pytest.raises(CheckpointError, match="no snapshot of step 25; its snapshots are at"):
        load_policy(tmp_path / "r", checkpoint="step_25")


def test_resume_keeps_the_snapshots_and_adds_its_own(tmp_path):
    run(tmp_path, "full", steps=60)
    run(tmp_path, "part", steps=40)
    cfg, _ = resolve({**SMALL, "steps": 60})
    train(cfg, resume=tmp_path / "part", dataset=make_random_dataset())
    assert snapshot_steps(tmp_path / "part") == [20, 40, 60]
    a = load_checkpoint(snapshot_path(tmp_path / "full", 60))["algo"]["nets"]
    b = load_checkpoint(snapshot_path(tmp_path / "part", 60))["algo"]["nets"]
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])


def test_a_new_run_sets_an_earlier_runs_snapshots_aside(tmp_path):
    run(tmp_path, "r", steps=40)
    (tmp_path / "r" / "checkpoint.pt").unlink()  # lost: the next run starts again
    run(tmp_path, "r", steps=20)
    aside = [p for p in (tmp_path / "r").iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and snapshot_steps(aside[0]) == [20, 40]
    assert snapshot_steps(tmp_path / "r") == [20]


def test_a_sweep_keeps_snapshots_and_an_extended_trial_adds_to_them(tmp_path):
    """A spec's snapshot_every reaches its trials; more steps in the spec continue each trial
    from its checkpoint, keeping the snapshots it had; `bearl ope` finds them over the sweep."""
    import io

    from bearl.data.d4rl import write_d4rl
    from bearl.runs.folders import find_runs
    from bearl.runs.sweep import run_sweep

    data = tmp_path / "pendulum.hdf5"
    write_d4rl(make_random_dataset(), data)
    base = {k: v for k, v in SMALL.items() if k != "dataset"}
    spec = {
        "log_dir": str(tmp_path / "sweep"),
        "algos": ["TD3"],
        "datasets": [str(data)],
        "seeds": [0],
        "base": {**base, "steps": 20, "eval_every": 10, "snapshot_every": 5},
    }
    assert run_sweep(spec, local=True, out=io.StringIO())["counts"]["done"] == 1
    (trial,) = find_runs([str(tmp_path / "sweep")])
    assert snapshot_steps(trial) == [5, 10, 15, 20]
    spec["base"]["steps"] = 30
    assert run_sweep(spec, local=True, out=io.StringIO())["counts"]["done"] == 1
    assert snapshot_steps(trial) == [5, 10, 15, 20, 25, 30]
