"""The benchmark tool runs end to end (tiny step counts; it measures, it asserts no speed)."""

from __future__ import annotations

import json

import pytest
import torch

from bearl.cli import main
from bearl.runs.bench import _MatmulRecorder, bench_dataset, flops_and_roofline, make_algo


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
    assert {"others_busy_cores", "busy"} <= set(rows[0])


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


def test_cpu_watch_counts_other_processes_not_this_one(monkeypatch):
    from bearl import perf

    samples = iter([(10.0, 100.0, 1.0), (13.5, 102.0, 2.5)])  # busy s, wall s, own CPU s
    monkeypatch.setattr(perf, "_cpu_sample", lambda: next(samples))
    assert perf.CpuWatch().others() == (3.5 - 1.5) / 2.0  # one core of others
    monkeypatch.undo()
    assert perf.CpuWatch().others() is None or perf.CpuWatch().others() >= 0.0


def test_more_threads_than_free_cores_warn_once(monkeypatch):
    from bearl import perf

    monkeypatch.setattr(perf, "usable_cores", lambda: 2)
    monkeypatch.setattr(perf, "others_busy_cores", lambda: 0.9)
    monkeypatch.setattr(perf, "_WARNED_THREADS", False)
    assert perf.thread_warning(1) is None  # one thread always fits
    msg = perf.thread_warning(2)
    assert msg.startswith("2 torch threads, but other processes keep 0.9 of the 2 cores busy")
    assert "--threads 1" in msg
    assert perf.thread_warning(2) is None  # once per process
    monkeypatch.setattr(perf, "_WARNED_THREADS", False)
    monkeypatch.setattr(perf, "others_busy_cores", lambda: 0.1)
    assert perf.thread_warning(2) is None  # a quiet machine


def test_a_run_checks_its_threads_against_the_free_cores(tmp_path, monkeypatch, capsys):
    import torch

    from bearl.config import TrainConfig, resolve
    from bearl.training import loop

    from conftest import make_random_dataset

    assert TrainConfig().threads == 1
    seen = []
    monkeypatch.setattr(loop, "thread_warning", lambda t: seen.append(t) or "too many threads")
    cfg, algo_cfg = resolve(
        {
            "dataset": "memory",
            "env": "Pendulum-v1",
            "steps": 2,
            "eval_episodes": 0,
            "log_dir": str(tmp_path),
            "progress": False,
        }
    )
    loop.train(cfg, algo_cfg, dataset=make_random_dataset())
    assert seen == [torch.get_num_threads()] == [1]
    assert "bearl: too many threads" in capsys.readouterr().err


def test_a_row_timed_on_a_busy_machine_is_marked_and_a_roofline_above_1_refused():
    from bearl.runs.bench import Row, _fmt_row, _mark_busy, rows_to_json

    row = Row(
        "BEAR",
        2,
        30.0,
        (29.0, 31.0),
        flops_per_update=1.5e9,
        roofline_updates_per_s=25.0,
        roofline_fraction=1.2,
    )
    _mark_busy(row, 0.9)
    text = _fmt_row(row)
    assert "BUSY MACHINE: other processes kept 0.9 cores busy" in text
    assert "(n/a: measured 120% of the roofline, above 100%" in text
    (saved,) = rows_to_json([row])
    assert saved["busy"] is True and saved["others_busy_cores"] == 0.9
    assert saved["roofline_fraction"] is None and "above 100%" in saved["roofline_note"]
    quiet = Row(
        "BEAR",
        1,
        30.0,
        (29.0, 31.0),
        flops_per_update=1.5e9,
        roofline_updates_per_s=50.0,
        roofline_fraction=0.6,
    )
    _mark_busy(quiet, 0.05)
    assert "BUSY" not in _fmt_row(quiet) and "(60%)" in _fmt_row(quiet)


_FAULTS = """
import resource, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "tuned":
    from bearl.perf import tune_allocator
    assert tune_allocator()
from bearl.runs.bench import bench_dataset, seeded_algo
algo, sampler = seeded_algo("BEAR", bench_dataset(5000))
for _ in range(5):  # warm up
    algo.update(sampler.sample())
faults = []
for _ in range(9):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    algo.update(sampler.sample())
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[len(faults) // 2])  # the median: one update's one-off growth is not the rule
"""


def _faults_per_update(mode: str, env: dict | None = None) -> float:
    import os
    import subprocess
    import sys

    env = {**os.environ, **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.split()[-1])


def test_the_tuned_allocator_stops_refaulting_freed_activations():
    """With glibc's defaults a BEAR update at the bench settings takes ~3,700 page faults (its
    freed activations go back to the OS and come back as fresh pages); with tune_allocator, or
    with the same settings given to another process as GLIBC_TUNABLES (the d3rlpy peer's), a
    few dozen at most. The median over nine updates: a one-off growth of the heap in one of them
    (a few hundred faults, seen once in three runs with GLIBC_TUNABLES) is not what is measured."""
    import sys

    import pytest

    from bearl.perf import GLIBC_TUNABLES

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    default = _faults_per_update("default")
    assert default > 1000
    assert _faults_per_update("tuned") < default / 10
    assert _faults_per_update("default", {"GLIBC_TUNABLES": GLIBC_TUNABLES}) < default / 10


def test_the_peer_runs_with_bearls_allocator_unless_told_otherwise(tmp_path):
    from bearl.runs.bench import run_peer

    fake = tmp_path / "python"  # a stand-in for the peer's python: its rate says what it got
    fake.write_text(
        "#!/bin/sh\n"
        'if [ -n "$GLIBC_TUNABLES" ]; then echo \'{"updates_per_s": 2}\'; '
        "else echo '{\"updates_per_s\": 1}'; fi\n"
    )
    fake.chmod(0o755)
    assert run_peer(fake, "BEAR", 1, 20, 5) == 2.0
    assert run_peer(fake, "BEAR", 1, 20, 5, allocator="default") == 1.0


def test_bench_on_a_missing_gpu_or_an_unknown_device_says_so_in_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for device, words in (("cuda", "torch sees no CUDA GPU"), ("tpu", "expected cpu, cuda")):
        code = main(["bench", "--device", device, "--algo", "BC", "--no-peer", "--no-extras"])
        err = capsys.readouterr().err
        assert code != 0 and words in err and len(err.strip().splitlines()) == 1, err
