"""The benchmark tool runs end to end (tiny step counts; it measures, it asserts no speed)."""

from __future__ import annotations

import json

import torch

from bearl.cli import main
from bearl.experiments.bench import _MatmulRecorder, bench_dataset, flops_and_roofline, make_algo


def test_matmul_recorder_sees_forward_and_backward():
    import torch

    x = torch.randn(8, 4, requires_grad=True)
    w = torch.randn(4, 3, requires_grad=True)
    rec = _MatmulRecorder()
    with rec:
        (x @ w).sum().backward()
    shapes = {(m, k, n) for _, m, k, n, _, _ in rec.calls}
    assert (8, 4, 3) in shapes and len(rec.calls) >= 3  # forward + two gradients


def test_flops_are_positive_and_roofline_finite():
    algo, cfg = make_algo("TD3")
    sampler = bench_dataset(2000).sampler(cfg.batch_size)
    flops, roof = flops_and_roofline(algo, sampler)
    assert flops > 1e6 and 0 < roof < float("inf")


def test_bench_cli_writes_json(tmp_path):
    out = tmp_path / "b.json"
    code = main(
        [
            "bench",
            "--algo",
            "BC",
            "--threads",
            "1",
            "--steps",
            "3",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--no-peer",
            "--no-extras",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    rows = json.loads(out.read_text())
    assert rows[0]["algo"] == "BC" and rows[0]["updates_per_s"] > 0
    assert {"peer", "peer_updates_per_s", "ratio", "flops_per_update", "roofline_fraction"} <= set(
        rows[0]
    )


def test_bench_rows_per_precision_and_preset_with_the_roofline_at_their_precision(tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", "--algo", "TD3", "--threads", "1", "--steps", "2", "--repeats", "1"]
    args += ["--warmup", "1", "--no-peer", "--no-extras", "--json", str(out)]
    assert main([*args, "--precision", "fp32,bf16", "--preset", "bench,paper"]) == 0
    rows = json.loads(out.read_text())
    assert {(r["preset"], r["precision"]) for r in rows} == {
        (p, q) for p in ("bench", "paper") for q in ("fp32", "bf16")
    }
    # a bf16 row's roofline counts its hidden matmuls at bf16 speed: not the fp32 row's bound
    roof = {(r["preset"], r["precision"]): r["roofline_updates_per_s"] for r in rows}
    assert roof[("bench", "bf16")] != roof[("bench", "fp32")]
    assert main([*args, "--precision", "fp16"]) == 2


def test_bench_pretrained_rows_only_for_algorithms_with_a_behaviour_model(tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", "--threads", "1", "--steps", "2", "--repeats", "1", "--warmup", "1"]
    args += ["--no-peer", "--no-extras", "--json", str(out), "--behavior_model", "joint,pretrained"]
    assert main([*args, "--algo", "BCQ"]) == 0
    rows = json.loads(out.read_text())
    assert [r["behavior_model"] for r in rows] == ["joint", "pretrained"]
    # the frozen VAE is no longer fitted: fewer FLOPs per update
    assert rows[1]["flops_per_update"] < rows[0]["flops_per_update"]
    assert main([*args, "--algo", "TD3"]) == 0
    assert [r["behavior_model"] for r in json.loads(out.read_text())] == ["joint"]


def test_the_matmul_recorder_sees_bf16_calls():
    algo, cfg = make_algo("TD3", precision="bf16")
    sampler = bench_dataset(2000).sampler(cfg.batch_size)
    rec = _MatmulRecorder()
    with rec:
        algo.update(sampler.sample())
    assert {c[-1] for c in rec.calls} >= {torch.bfloat16}


def test_ab_compares_two_versions_and_cleans_up():
    """bench/ab.py runs a git revision against the working tree, each importing its own bearl
    (the tool stops if a child imports the other tree's), and removes its worktree."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    repo = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("needs a git checkout")
    cmd = [sys.executable, str(repo / "bench" / "ab.py"), "--algo", "BC", "--blocks", "2"]
    out = subprocess.run(
        [*cmd, "--block", "2", "--warmup", "1"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("BC") and "base" in line and "new" in line and "change" in line
    trees = subprocess.run(
        ["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True
    ).stdout
    assert "bearl-ab-" not in trees
