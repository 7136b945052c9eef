"""``behavior_model=pretrained``: the behaviour VAE fitted once per dataset, settings and seed,
cached, reused by later runs, and frozen while training."""

from __future__ import annotations

import csv

import pytest
import torch

from bearl.config import resolve
from bearl.training.loop import train

from conftest import make_random_dataset

TINY = {
    "dataset": "memory",
    "env": "Pendulum-v1",
    "steps": 30,
    "eval_every": 15,
    "eval_episodes": 1,
    "actor_hidden": "16,16",
    "critic_hidden": "16,16",
    "vae_hidden": "16,16",
    "batch_size": 16,
    "warm_start_steps": 5,
    "num_eval_samples": 4,
    "behavior_model": "pretrained",
    "behavior_steps": 40,
    "progress": False,
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BEARL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "behavior"


def _run(tmp_path, name, capsys, dataset=None, **over):
    values = {**TINY, "log_dir": str(tmp_path / "runs"), "run_name": name, **over}
    algo = values.get("algo", "BEAR")
    if algo != "BEAR":
        drop = ("warm_start_steps",) + (("num_eval_samples",) if algo == "DQfD" else ())
        values = {k: v for k, v in values.items() if k not in drop}
    cfg, algo_cfg = resolve(values)
    train(cfg, algo_cfg, dataset=dataset or make_random_dataset())
    return tmp_path / "runs" / name, capsys.readouterr().err


def _vae(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["algo"]["nets"]["vae"]


def test_fitted_once_then_reused_and_frozen(tmp_path, cache, capsys):
    first, err = _run(tmp_path, "a", capsys)
    assert "VAE fitted alone for 40 steps" in err and len(list(cache.iterdir())) == 1
    assert err.index("fitting the VAE alone for 40 steps before training") < err.index(
        "fitted alone"
    )
    saved = torch.load(next(cache.iterdir()), weights_only=True)["state"]
    for k, v in _vae(first).items():  # frozen: training did not move it
        assert torch.equal(v, saved[k]), k
    with open(first / "progress.csv") as f:
        assert "vae_loss" not in next(csv.reader(f))  # no VAE step in the update
    again, err = _run(tmp_path, "b", capsys)
    assert "reused from the cache" in err and "behaviour model" in (again / "debug.log").read_text()
    assert len(list(cache.iterdir())) == 1
    with open(first / "progress.csv") as f1, open(again / "progress.csv") as f2:
        drop = {"WallTime", "UpdatesPerSecond", "MemoryMiB"}
        rows1 = [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f1)]
        rows2 = [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f2)]
    assert rows1 == rows2  # the cached VAE gives the run the fit gave


def test_another_seed_dataset_or_setting_is_fitted_anew(tmp_path, cache, capsys):
    _run(tmp_path, "a", capsys)
    _, err = _run(tmp_path, "seed", capsys, seed=1)
    assert "fitted alone" in err
    changed = make_random_dataset()
    changed.actions[0, 0] *= 0.5  # one action differs
    _, err = _run(tmp_path, "data", capsys, dataset=changed)
    assert "fitted alone" in err
    _, err = _run(tmp_path, "wide", capsys, vae_hidden="32,32")
    assert "fitted alone" in err
    _, err = _run(tmp_path, "kl", capsys, vae_kl_weight=0.05)
    assert "fitted alone" in err
    assert len(list(cache.iterdir())) == 5


def test_vae_kl_weight_weighs_the_kl_term_and_keeps_the_old_cache_key():
    """``vae_kl_weight`` scales the KL term of the behaviour VAE's loss; at the original's 0.5
    the cache key is the one written before the setting existed (cached VAEs still match)."""
    from bearl.algos.bear import BEAR, BEARConfig
    from bearl.errors import ConfigError
    from bearl.nets import VAE
    from bearl.training.behavior_vae import cache_key

    obs, act = torch.randn(32, 3), torch.rand(32, 2) * 2 - 1

    def loss(weight: float) -> float:
        torch.manual_seed(0)
        vae = VAE(3, 2, (8, 8), kl_weight=weight)
        torch.manual_seed(1)
        return float(vae.loss(obs, act).detach())

    mse, half, one = loss(0.0), loss(0.5), loss(1.0)
    assert half > mse and one - mse == pytest.approx(2 * (half - mse), rel=1e-5)
    algo = BEAR(BEARConfig(vae_hidden=(8, 8), vae_kl_weight=0.05), 3, 2)
    assert algo.vae.kl_weight == 0.05
    with pytest.raises(ValueError, match="vae_kl_weight must be >= 0"):
        BEAR(BEARConfig(vae_kl_weight=-1.0), 3, 2)
    with pytest.raises(ConfigError, match="vae_kl_weight"):
        resolve({**TINY, "vae_kl_weight": -0.1})

    data = make_random_dataset()

    class Scale:
        low, high = [-1.0], [1.0]

    keys = [cache_key(data, BEARConfig(vae_kl_weight=w), 0, "fp32", Scale()) for w in (0.5, 0.05)]
    assert "vae_kl_weight" not in keys[0] and keys[1]["vae_kl_weight"] == 0.05
    assert {k: v for k, v in keys[1].items() if k != "vae_kl_weight"} == keys[0]


def test_joint_is_the_default_and_bcq_and_dqfd_accept_pretrained(tmp_path, cache, capsys):
    run, err = _run(tmp_path, "joint", capsys, behavior_model="joint")
    assert "behaviour model" not in err and not cache.exists()
    with open(run / "progress.csv") as f:
        assert "vae_loss" in next(csv.reader(f))
    _, err = _run(tmp_path, "bcq", capsys, algo="BCQ")
    assert "fitted alone" in err
    # DQfD's VAE has BCQ's settings here (lr 1e-3, the same sizes and batch): one fit serves both
    _, err = _run(tmp_path, "dqfd", capsys, algo="DQfD", demo_action="vae")
    assert "reused from the cache" in err
    from bearl.errors import ConfigError

    values = {k: v for k, v in TINY.items() if k not in ("warm_start_steps", "num_eval_samples")}
    with pytest.raises(ConfigError, match="needs demo_action=vae"):
        resolve({**values, "algo": "DQfD", "demo_action": "dataset"})


def test_prefit_starts_from_the_cached_fit_and_fits_on(tmp_path, cache, capsys):
    """``behavior_model=prefit``: the same cached fit as ``pretrained`` to start from (one
    cache file serves both), then the VAE is fitted at every step as in ``joint``."""
    frozen, err = _run(tmp_path, "frozen", capsys)
    assert "fitted alone" in err and ", frozen" in err
    saved = torch.load(next(cache.iterdir()), weights_only=True)["state"]
    run, err = _run(tmp_path, "prefit", capsys, behavior_model="prefit")
    assert "reused from the cache" in err and "fitted on at every step (prefit)" in err
    assert len(list(cache.iterdir())) == 1
    with open(run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert "vae_loss" in rows[0]
    moved = [k for k, v in _vae(run).items() if not torch.equal(v, saved[k])]
    assert moved  # the VAE kept training after the fit it started from
    # it started from the fit: its first losses are the fitted VAE's, below a fresh VAE's
    joint, _ = _run(tmp_path, "joint", capsys, behavior_model="joint")
    with open(joint / "progress.csv") as f:
        fresh = list(csv.DictReader(f))
    assert float(rows[0]["vae_loss"]) < float(fresh[0]["vae_loss"])


def test_prefit_is_named_in_errors_and_bench_refuses_it(tmp_path, cache, capsys):
    from bearl.cli import main
    from bearl.errors import ConfigError

    with pytest.raises(ConfigError, match="joint, pretrained, prefit"):
        resolve({**TINY, "behavior_model": "prefitted"})
    values = {k: v for k, v in TINY.items() if k not in ("warm_start_steps", "num_eval_samples")}
    with pytest.raises(ConfigError, match="behavior_model=prefit needs demo_action=vae"):
        resolve({**values, "algo": "DQfD", "demo_action": "dataset", "behavior_model": "prefit"})
    assert main(["bench", "--algo", "BEAR", "--behavior_model", "prefit", "--no-peer"]) != 0
    assert "prefit updates as joint does" in capsys.readouterr().err


def test_the_fit_shows_its_progress(tmp_path, cache, capsys):
    """The fit alone takes minutes at the default 50,000 steps: a bar counts its steps."""
    _, err = _run(tmp_path, "bar", capsys, progress=True)
    assert "fitting the VAE" in err and "40/40" in err
    _, err = _run(tmp_path, "cached", capsys, progress=True)
    assert "fitting the VAE" not in err  # nothing to fit: the cached one is loaded
