"""Crash safety: a training process killed with SIGKILL at random points resumes to exactly
the numbers of an uninterrupted run, and no checkpoint is ever half-written."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from bearl.data.d4rl import write_d4rl
from bearl.training.checkpoint import load_checkpoint
from bearl.training.loop import MACHINE_COLUMNS

from conftest import make_random_dataset

pytestmark = pytest.mark.slow

FLAGS = [
    "--env",
    "Pendulum-v1",
    "--steps",
    "120",
    "--eval_every",
    "10",
    "--eval_episodes",
    "1",
    "--actor_hidden",
    "16,16",
    "--critic_hidden",
    "16,16",
    "--vae_hidden",
    "16,16",
    "--warm_start_steps",
    "30",
    "--batch_size",
    "32",
    "--num_eval_samples",
    "2",
    "--progress",
    "false",
    "--threads",
    "1",
]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bearl.cli", *args]


def rows(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in MACHINE_COLUMNS} for r in csv.DictReader(f)]


def test_sigkill_and_resume_matches_uninterrupted(tmp_path):
    data = tmp_path / "data.hdf5"
    write_d4rl(make_random_dataset(), data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = ["train", "--dataset", str(data), "--log_dir", str(tmp_path), *FLAGS]
    subprocess.run(cli(*base, "--run_name", "full"), check=True, env=env, capture_output=True)

    run = tmp_path / "crash"
    rng = random.Random(0)
    proc = subprocess.Popen(
        cli(*base, "--run_name", "crash"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kills = 0
    while True:
        # wait for a checkpoint, then kill at a random moment
        deadline = time.time() + 60
        while not (run / "checkpoint.pt").exists() and proc.poll() is None:
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        state = load_checkpoint(run / "checkpoint.pt")  # never half-written
        assert 0 < state["step"] <= 120
        if (run / "result.json").exists() or kills >= 4:
            break
        proc = subprocess.Popen(
            cli("train", "--resume", str(run)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    if proc.poll() is None:
        proc.wait()
    if not (run / "result.json").exists():
        subprocess.run(cli("train", "--resume", str(run)), check=True, env=env, capture_output=True)
    assert kills >= 1
    assert rows(tmp_path / "full" / "progress.csv") == rows(run / "progress.csv")
