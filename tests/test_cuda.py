"""On a CUDA GPU: every algorithm's update and action rule in fp32 and bf16, the bf16 parity
bounds of tests/test_precision.py, a run through the training loop whose checkpoint resumes and
loads on CPU, and ``bearl bench --device cuda``. Skipped where torch sees no GPU (CI has none);
docs/performance.md says when and where they last ran on one."""

from __future__ import annotations

import json

import pytest
import torch
from test_algorithms import ACT, OBS, TINY, batch, make
from test_precision import (
    CRITIC_BOUND,
    CRITIC_LOSSES,
    LOSS_BOUND,
    STEP_BOUND,
    _one_update_both_ways,
)

from bearl.algos import ALGORITHMS, algorithm_class
from bearl.config import resolve

from conftest import make_random_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_update_and_act_on_cuda(name, precision):
    algo = make(name, "cuda")
    algo.set_precision(precision)
    for i in range(8):
        metrics = algo.update(batch(seed=i, device="cuda"))
    assert metrics and all(torch.isfinite(v).item() for v in metrics.values())
    for net in algo.nets.values():  # fp32 master weights, on the GPU
        assert all(p.is_cuda and p.dtype == torch.float32 for p in net.parameters())
    for det in (False, True):
        a = algo.act(torch.randn(5, OBS, device="cuda"), deterministic=det)
        assert a.is_cuda and a.shape == (5, ACT) and torch.all(a.abs() <= 1.0)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_one_bf16_update_agrees_with_fp32_on_cuda(name):
    losses, steps = _one_update_both_ways(name, device="cuda")
    for k, d in losses.items():
        assert d < (CRITIC_BOUND if k in CRITIC_LOSSES else LOSS_BOUND), (k, d)
    assert steps and all(d < STEP_BOUND for d in steps.values()), steps


@pytest.mark.parametrize("name", ["BEAR", "TD3"])
def test_a_bf16_target_breaks_the_bound_on_cuda(name):
    losses, _ = _one_update_both_ways(name, wrong_target=True, device="cuda")
    assert losses["critic_loss"] > CRITIC_BOUND, losses


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_a_cuda_run_resumes_and_loads_on_cpu(name, tmp_path, capsys):
    """Its sampler's CUDA generator state cannot go on in a CPU generator: reseeded, said once
    (seen failing before that on an H200, 2026-12-04)."""
    from bearl.policy.load import load_policy
    from bearl.training.loop import train

    fields = algorithm_class(name).config_cls.__dataclass_fields__
    values = {
        "algo": name,
        "dataset": "memory",
        "env": "Pendulum-v1",
        "eval_every": 10,
        "eval_episodes": 1,
        "progress": False,
        "log_dir": str(tmp_path),
        "run_name": "r",
        "precision": "bf16" if name == "BEAR" else "fp32",
        **{k: v for k, v in TINY.items() if k in fields},
    }
    result = train(
        *resolve({**values, "steps": 20, "device": "cuda"}), dataset=make_random_dataset()
    )
    assert result["steps"] == 20 and result["final_return"] is not None
    params = json.loads((tmp_path / "r" / "params.json").read_text())
    assert params["train"]["device"] == "cuda"
    cfg, _ = resolve({**values, "steps": 30, "device": "cpu"})
    capsys.readouterr()
    again = train(cfg, resume=tmp_path / "r", dataset=make_random_dataset())
    assert again["steps"] == 30 and again["final_return"] is not None
    assert "the minibatch sampler was saved on cuda and resumes on cpu" in capsys.readouterr().err
    policy = load_policy(tmp_path / "r", "final", device="cpu")
    a = policy.act(torch.zeros(2, 3).numpy())
    assert a.shape == (2, 1)


def test_bench_on_cuda_times_every_precision(tmp_path):
    from bearl.cli import main

    out = tmp_path / "b.json"
    argv = ["bench", "--device", "cuda", "--algo", "BEAR", "--threads", "1", "--steps", "5"]
    argv += ["--repeats", "1", "--warmup", "2", "--no-extras", "--precision", "fp32,bf16"]
    assert main([*argv, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["device"], r["precision"]) for r in rows] == [("cuda", "fp32"), ("cuda", "bf16")]
    assert all(r["updates_per_s"] > 0 and r["ratio"] is None for r in rows)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fqe_on_cuda_finds_each_policys_value(precision):
    from test_ope import bandit

    from bearl.training.fqe import FQEConfig, fit_fqe

    def constant(v):
        return lambda s: torch.full((s.shape[0], 1), v, device=s.device)

    cfg = FQEConfig(steps=1500, hidden=(32, 32), lr=3e-3, heads=3, batch_size=128,
                    precision=precision)  # fmt: skip
    res = fit_fqe([constant(0.5), constant(-0.5)], bandit(), cfg, gamma=0.5, device="cuda")
    assert res.estimate == pytest.approx([1.0, -1.0], abs=0.1)


def test_bearl_ope_on_cuda_of_a_cpu_run(tmp_path):
    from test_ope import trained_run

    from bearl.ope.estimate import ope_run
    from bearl.training.fqe import FQEConfig

    run = trained_run(tmp_path, steps=40)
    cfg = FQEConfig(steps=60, hidden=(16, 16), heads=2, batch_size=32, precision="bf16")
    out = ope_run(run, cfg=cfg, dataset=make_random_dataset(), device="cuda")
    assert len(out["snapshots"]) == 2
    assert all(e["fqe_return"] is not None and e["action_gap"] > 0 for e in out["snapshots"])
