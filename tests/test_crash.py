"""Crash safety: a training process killed with SIGKILL at random points, or stopped by a full
disk, resumes to exactly the numbers of an uninterrupted run, and no checkpoint or log row is
ever half-written."""

from __future__ import annotations

import csv
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bearl.cli import main
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


# -- a full disk ----------------------------------------------------------------------------------
DISK_FLAGS = [
    *FLAGS[: FLAGS.index("--steps")],
    "--steps",
    "40",
    *FLAGS[FLAGS.index("--steps") + 2 :],
]


def _disk_full_at(monkeypatch, name: str, nth: int) -> None:
    """The ``nth`` write to run file ``name`` (or to its temporary copy) writes half its bytes,
    then fails as on a full disk."""
    from bearl import files

    real, seen = files._write_all, []

    def write(f, data):
        if Path(f.name).name in (name, f"{name}.tmp"):
            seen.append(name)
            if len(seen) == nth:
                real(f, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f, data)

    monkeypatch.setattr(files, "_write_all", write)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    data = tmp / "data.hdf5"
    write_d4rl(make_random_dataset(), data)
    args = ["train", "--dataset", str(data), "--log_dir", str(tmp), "--run_name", "full"]
    assert main([*args, *DISK_FLAGS]) == 0
    return data, rows(tmp / "full" / "progress.csv"), (tmp / "full" / "progress.csv").read_bytes()


@pytest.mark.parametrize(
    "name,nth,kept",
    [
        ("checkpoint.pt", 3, 20),  # the checkpoint of step 30
        ("best.pt", 2, None),  # the second best score's
        ("progress.csv", 2, 10),  # the row of step 20 (the first row made the file)
        ("debug.log", 6, 20),  # step 20's line, after its checkpoint (first: run, machine,
        # denormals, preset, step 10)
        ("variant.json", 1, 0),  # before any checkpoint
    ],
)
def test_a_full_disk_stops_the_run_in_one_line_and_it_resumes_exactly(
    tmp_path, monkeypatch, capsys, uninterrupted, name, nth, kept
):
    """A write that fails for a full disk keeps every file whole (the file it was writing as it
    was, no temporary file, no half row in progress.csv), stops the run with one line naming
    the file and the command that continues it, and the continued run writes the numbers of an
    uninterrupted one."""
    data, expected, _ = uninterrupted
    run = tmp_path / "r"
    _disk_full_at(monkeypatch, name, nth)
    capsys.readouterr()
    args = ["train", "--dataset", str(data), "--log_dir", str(tmp_path), "--run_name", "r"]
    assert main([*args, *DISK_FLAGS]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(
        f"bearl: error: {run / name}: could not be written, the disk is full "
        "(No space left on device); the run stopped"
    ), err
    assert not list(run.glob("*.tmp"))
    for log in ("progress.csv", "debug.log"):
        if (run / log).exists():
            assert (run / log).read_bytes().endswith(b"\n"), f"{log} ends in a half line"
    if (run / "progress.csv").exists():
        lines = (run / "progress.csv").read_text().splitlines()
        assert len({line.count(",") for line in lines}) == 1
    monkeypatch.undo()
    if kept == 0:
        assert "before its first checkpoint: free some space and start it again" in err
        assert not (run / "checkpoint.pt").exists()
        assert main([*args, *DISK_FLAGS]) == 0
    else:
        step = load_checkpoint(run / "checkpoint.pt")["step"]  # the previous one, whole
        assert kept in (None, step)
        assert err.rstrip().endswith(
            f"its last checkpoint (step {step}) is kept: free some space, then continue with: "
            f"bearl train --resume {run}"
        ), err
        assert main(["train", "--resume", str(run)]) == 0
    assert rows(run / "progress.csv") == expected
    best_step = json.loads((run / "result.json").read_text())["best_step"]
    assert load_checkpoint(run / "best.pt")["step"] == best_step  # best.pt is the best step's


@pytest.mark.parametrize("cut", ["digit", "half", "no newline"])
def test_resume_drops_a_row_cut_short(tmp_path, uninterrupted, cut):
    """A crash in the middle of a progress row leaves a last line such as ``3`` (of ``30,...``):
    the resumed run drops it (it is not step 3) and writes the numbers of an uninterrupted run."""
    data, expected, raw = uninterrupted
    run = tmp_path / "r"
    args = ["train", "--dataset", str(data), "--log_dir", str(tmp_path), "--run_name", "r"]
    at_20 = [*DISK_FLAGS[: DISK_FLAGS.index("--steps")], "--steps", "20"]
    at_20 += DISK_FLAGS[DISK_FLAGS.index("--steps") + 2 :]
    assert main([*args, *at_20]) == 0
    lines = (run / "progress.csv").read_bytes().splitlines(keepends=True)
    row_30 = raw.splitlines()[3]  # the step-30 row
    assert row_30.startswith(b"30,")
    partial = {"digit": b"3", "half": row_30[: len(row_30) // 2], "no newline": row_30 + b"\r"}
    (run / "progress.csv").write_bytes(b"".join(lines) + partial[cut])
    assert main(["train", "--resume", str(run), "--steps", "40"]) == 0
    assert rows(run / "progress.csv") == expected
    assert (run / "progress.csv").read_bytes().count(b"\n") == len(expected) + 1


def test_a_new_run_in_a_folder_whose_checkpoint_is_gone_keeps_the_old_logs(
    tmp_path, capsys, uninterrupted
):
    """An earlier run's folder without its checkpoint.pt (lost, or stopped before the first):
    the new run starts at step 0 and says so, and the earlier run's files are moved aside
    whole, not overwritten (progress.csv) or mixed with the new run's (debug.log)."""
    data, full_rows, _ = uninterrupted
    args = ["train", "--dataset", str(data), "--log_dir", str(tmp_path), "--run_name", "r"]
    assert main([*args, *DISK_FLAGS]) == 0
    run = tmp_path / "r"
    first_log = (run / "debug.log").read_text()
    (run / "checkpoint.pt").unlink()
    capsys.readouterr()
    assert main([*args, *DISK_FLAGS]) == 0
    err = capsys.readouterr().err
    (aside,) = run.glob("previous-*")
    last = int(full_rows[-1]["Step"])
    assert (
        f"bearl: {run} held a run logged to step {last:,} with no checkpoint.pt to resume from; "
        f"its files are kept in {aside.name}/ and this run starts at step 0"
    ) in err
    assert (aside / "debug.log").read_text() == first_log
    assert rows(aside / "progress.csv") == full_rows
    assert rows(run / "progress.csv") == full_rows  # the new run, from step 0, alone in its file
    assert (run / "debug.log").read_text().count(" run r: ") == 1
    assert not (aside / "checkpoint.pt").exists() and (run / "checkpoint.pt").exists()
