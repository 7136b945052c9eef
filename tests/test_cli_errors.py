"""Every bad input, fed through the command line: one line naming the problem, exit status 2.

Each case builds its bad input in ``tmp_path`` and returns the ``bearl`` arguments plus the
words the error line must contain (usually the file's path and the field). The loader-level
details are tested in test_data_validation.py; this file checks what a user sees.
"""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bearl.cli import main
from bearl.data.d4rl import write_d4rl

from conftest import make_random_dataset, small_arrays

N = 8


def _full() -> dict[str, np.ndarray]:
    return small_arrays(N)


def _h5(path: Path, **changes) -> Path:
    arrays = _full()
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def _with(field: str, value: float) -> np.ndarray:
    arr = _full()[field].astype(np.float32)
    arr.flat[2] = value
    return arr


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _truncated(tmp: Path) -> Path:
    path = tmp / "truncated.hdf5"
    write_d4rl(make_random_dataset(n=200), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_minari(tmp: Path) -> Path:
    """A Minari dataset folder whose data/metadata.json is cut short."""
    from bearl.data.minari_io import write_minari

    folder = write_minari(make_random_dataset(n=100), "me/pendulum/corrupt-v0")
    meta = folder / "data" / "metadata.json"
    meta.write_text(meta.read_text()[:40])
    return folder


def _run_dir(tmp: Path) -> Path:
    """A finished one-step BEAR run, made through the CLI."""
    src = tmp / "data.hdf5"
    write_d4rl(make_random_dataset(n=200), src)
    run = tmp / "run"
    args = ["train", "--dataset", str(src), "--env", "Pendulum-v1", "--steps", "2"]
    args += ["--eval_every", "2", "--eval_episodes", "1", "--progress", "false"]
    args += ["--log_dir", str(tmp), "--run_name", "run"]
    assert main(args) == 0
    return run


def _checkpoint_of_another_algorithm(tmp: Path) -> Path:
    run = _run_dir(tmp)
    payload = torch.load(run / "checkpoint.pt", weights_only=False)
    payload["algo"]["algo"] = "TD3"
    torch.save(payload, run / "checkpoint.pt")
    return run


def _newer_checkpoint(tmp: Path) -> Path:
    run = _run_dir(tmp)
    payload = torch.load(run / "checkpoint.pt", weights_only=False)
    payload["format_version"] = 999
    torch.save(payload, run / "checkpoint.pt")
    return run


def _junk_checkpoint(tmp: Path) -> Path:
    run = _run_dir(tmp)
    (run / "best.pt").write_bytes(b"\x00not a checkpoint")
    return run


def _train(tmp: Path, dataset: Path, env: str) -> list[str]:
    """``bearl train`` for one step of ``dataset`` in ``env``, logging under ``tmp``."""
    args = ["train", "--dataset", str(dataset), "--env", env, "--steps", "1"]
    return args + ["--log_dir", str(tmp), "--progress", "false"]


# name -> function(tmp_path) -> (argv, words the error line must contain)
CASES = {
    "missing file": lambda t: (["data", "info", str(t / "nope.hdf5")], ["nope.hdf5"]),
    "empty file": lambda t: (
        ["data", "info", str(_touch(t / "empty.hdf5"))],
        ["empty.hdf5", "empty"],
    ),
    "random bytes": lambda t: (
        ["data", "info", str(_bytes(t / "noise.hdf5", os.urandom(4096)))],
        ["noise.hdf5"],
    ),
    "truncated hdf5": lambda t: (["data", "info", str(_truncated(t))], ["truncated.hdf5"]),
    "hdf5 without actions": lambda t: (
        ["data", "info", str(_h5(t / "noact.hdf5", actions=None))],
        ["noact.hdf5", "actions"],
    ),
    "ragged lengths": lambda t: (
        ["data", "info", str(_h5(t / "ragged.hdf5", rewards=np.zeros(N - 2, np.float32)))],
        ["ragged.hdf5", "rewards"],
    ),
    "string observations": lambda t: (
        ["data", "info", str(_h5(t / "str.hdf5", observations=np.array(["a"] * N, "S1")))],
        ["str.hdf5", "observations"],
    ),
    "nan in observations": lambda t: (
        ["data", "info", str(_h5(t / "nan.hdf5", observations=_with("observations", np.nan)))],
        ["nan.hdf5", "observations"],
    ),
    "inf in actions": lambda t: (
        ["data", "info", str(_h5(t / "inf.hdf5", actions=_with("actions", np.inf)))],
        ["inf.hdf5", "actions"],
    ),
    "nan in rewards": lambda t: (
        ["data", "info", str(_h5(t / "nanr.hdf5", rewards=_with("rewards", np.nan)))],
        ["nanr.hdf5", "rewards"],
    ),
    "inf in next observations": lambda t: (
        [
            "data",
            "info",
            str(_h5(t / "infn.hdf5", next_observations=_with("next_observations", -np.inf))),
        ],
        ["infn.hdf5", "next_observations"],
    ),
    "terminals that are not 0/1": lambda t: (
        ["data", "info", str(_h5(t / "flags.hdf5", terminals=np.full(N, 3.0, np.float32)))],
        ["flags.hdf5", "terminals"],
    ),
    "zero transitions": lambda t: (
        ["data", "info", str(_h5(t / "zero.hdf5", **{k: v[:0] for k, v in _full().items()}))],
        ["zero.hdf5"],
    ),
    "pickle that runs code": lambda t: (
        ["data", "info", str(_bytes(t / "evil.pkl", pickle.dumps(_RunsCode())))],
        ["evil.pkl", "refusing to unpickle"],
    ),
    "gzip pickle that runs code": lambda t: (
        ["data", "info", str(_bytes(t / "evil.gz", gzip.compress(pickle.dumps(_RunsCode()))))],
        ["evil.gz", "refusing to unpickle"],
    ),
    "corrupt minari dataset": lambda t: (
        ["data", "info", str(_corrupt_minari(t))],
        [str(t / "minari/me/pendulum/corrupt-v0/data/metadata.json: not valid JSON")],
    ),
    "unknown dataset name": lambda t: (["data", "info", "hoper-medium"], ["hopper-medium"]),
    "unknown suite kind": lambda t: (["data", "make", "hopper-meduim"], ["hopper-medium"]),
    "dims that disagree with the env": lambda t: (
        _train(t, _h5(t / "dims.hdf5"), "Hopper-v5"),
        ["dims.hdf5", "Hopper-v5"],
    ),
    "actions outside the action space": lambda t: (
        _train(t, _h5(t / "big.hdf5", actions=_with("actions", 7.0)), "Pendulum-v1"),
        ["big.hdf5", "actions"],
    ),
    "unknown environment": lambda t: (
        ["train", "--dataset", str(_h5(t / "ok.hdf5")), "--env", "Hoppr-v5", "--log_dir", str(t)],
        ["Hoppr-v5"],
    ),
    "resume of a folder that is not a run": lambda t: (
        ["train", "--resume", str(t)],
        [str(t)],
    ),
    "resume of a checkpoint of another algorithm": lambda t: (
        ["train", "--resume", str(_checkpoint_of_another_algorithm(t))],
        ["checkpoint.pt", "TD3"],
    ),
    "resume of a newer checkpoint format": lambda t: (
        ["train", "--resume", str(_newer_checkpoint(t))],
        ["checkpoint.pt", "newer"],
    ),
    "resume with settings a resume keeps": lambda t: (
        ["train", "--resume", str(_run_dir(t)), "--mmd_sigma", "5", "--eval_every", "50"],
        ["run/params.json", "--mmd_sigma 5, --eval_every 50", "(mmd_sigma 20.0, eval_every 2)"],
    ),
    "resume to fewer steps than the run has": lambda t: (
        ["train", "--resume", str(_run_dir(t)), "--steps", "1"],
        ["run", "--steps 1", "(2)"],
    ),
    "eval of a junk checkpoint": lambda t: (
        ["eval", str(_junk_checkpoint(t)), "--episodes", "1"],
        ["best.pt"],
    ),
    "export of a folder that is not a run": lambda t: (
        ["export", str(t), "-o", str(t / "p.pt")],
        [str(t)],
    ),
    "plot of a folder without progress.csv": lambda t: (
        ["plot", str(_dir(t / "empty_run")), "-o", str(t / "f.png")],
        ["empty_run"],
    ),
    "report of a folder without progress.csv": lambda t: (
        ["report", str(_dir(t / "empty_run"))],
        ["empty_run"],
    ),
    "sweep spec that is not yaml": lambda t: (
        ["sweep", str(_bytes(t / "spec.yaml", b"algos: [BEAR\n  - {")), "--dry-run"],
        ["spec.yaml"],
    ),
    "config file with a typo": lambda t: (
        ["train", "--config", str(_bytes(t / "my.yaml", b"steps: 5\nmmd_sgima: 3\n"))],
        [str(t / "my.yaml"), "unknown setting(s): mmd_sgima (did you mean mmd_sigma?)"],
    ),
    "sweep spec with a typo": lambda t: (
        [
            "sweep",
            str(_bytes(t / "spec.yaml", b"algos: [BEAR]\ndatasets: [x]\nbase: {stesp: 5}\n")),
            "--dry-run",
        ],
        [f"{t / 'spec.yaml'}: base: unknown setting(s): stesp (did you mean steps?)"],
    ),
    # abbreviations are names that do not exist: never taken for the longer name they start
    "sweep spec key that abbreviates one": lambda t: (
        ["sweep", str(_bytes(t / "spec.yaml", b"algo: [BEAR]\ndatasets: [x]\n")), "--dry-run"],
        [f"{t / 'spec.yaml'}: unknown key(s) algo (did you mean algos?)"],
    ),
    "sweep spec part key that abbreviates one": lambda t: (
        [
            "sweep",
            str(_bytes(t / "spec.yaml", b"datasets: [x]\nparts:\n  - {algo: [BC]}\n")),
            "--dry-run",
        ],
        [f"{t / 'spec.yaml'}: parts[0]: unknown key(s) algo (did you mean algos?)"],
    ),
    "sweep spec setting that abbreviates one": lambda t: (
        [
            "sweep",
            str(_bytes(t / "spec.yaml", b"algos: [BEAR]\ndatasets: [x]\nbase: {mmd_sigm: 5}\n")),
            "--dry-run",
        ],
        [f"{t / 'spec.yaml'}: base: unknown setting(s): mmd_sigm (did you mean mmd_sigma?)"],
    ),
    "config file setting that abbreviates one": lambda t: (
        ["train", "--config", str(_bytes(t / "my.yaml", b"eval_ev: 100\n"))],
        [str(t / "my.yaml"), "unknown setting(s): eval_ev (did you mean eval_every?)"],
    ),
    "sweep spec with an unknown algorithm": lambda t: (
        [
            "sweep",
            str(_bytes(t / "spec.yaml", b"algos: [BAER]\ndatasets: [hopper-medium]\n")),
            "--dry-run",
        ],
        ["BAER"],
    ),
    "output path under a file": lambda t: (
        ["data", "convert", str(_h5(t / "ok.hdf5")), "--to", "d4rl", str(_touch(t / "f") / "o")],
        [str(t / "f"), "exists"],
    ),
    "minari dataset that exists already": lambda t: (
        ["data", "convert", str(_h5(t / "ok.hdf5")), "--to", "minari", "me/pendulum/x-v0"],
        [str(_dir(t / "minari" / "me" / "pendulum" / "x-v0")), "pass --overwrite to replace it"],
    ),
    "negative step count": lambda t: (
        ["train", "--dataset", str(_h5(t / "ok.hdf5")), "--steps", "-5", "--log_dir", str(t)],
        ["steps"],
    ),
}


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    argv, words = CASES[case](tmp_path)
    capsys.readouterr()  # drop the output of any setup run
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert lines, "no error message"
    assert lines[-1].startswith("bearl: error: "), err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    for word in words:
        assert word in err, f"{word!r} missing from: {err}"
    assert "Traceback" not in err
    assert not (tmp_path / "pwned").exists()
    assert not list(tmp_path.glob("**/BEAR_*")), "a failed start left a run folder behind"


def test_a_minari_id_not_stored_locally_says_how_to_download_it(tmp_path, monkeypatch, capsys):
    """No --download flag in bearl: the line names minari's own command, and nothing is
    fetched (the check happens before minari is asked for the id)."""
    import socket

    import minari

    def offline(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", offline)
    monkeypatch.setattr(minari, "load_dataset", offline)
    monkeypatch.setattr(minari, "download_dataset", offline)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    for argv in (
        ["data", "info", "minari:mujoco/hopper/medium-v0"],
        ["train", "--dataset", "minari:mujoco/hopper/medium-v0", "--log_dir", str(tmp_path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith("bearl: error: minari:mujoco/hopper/medium-v0: ")
        assert "Download it with `minari download mujoco/hopper/medium-v0`" in err
        assert str(tmp_path) in err and "MINARI_DATASETS_PATH" in err
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, no run folder left


def test_error_exit_status_of_the_installed_command(tmp_path):
    """The real process: status 2, no traceback; --debug shows one."""
    bad = _touch(tmp_path / "empty.hdf5")
    cmd = [sys.executable, "-m", "bearl.cli", "data", "info", str(bad)]
    quiet = subprocess.run(cmd, capture_output=True, text=True)
    assert quiet.returncode == 2
    assert "Traceback" not in quiet.stderr and "empty.hdf5" in quiet.stderr
    loud = subprocess.run(cmd + ["--debug"], capture_output=True, text=True)
    assert loud.returncode != 0 and "Traceback" in loud.stderr
