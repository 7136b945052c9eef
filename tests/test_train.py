"""The training loop: logs, result, checkpoints, resume equality, divergence, CLI flags."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from bearl.config import resolve
from bearl.training.loop import MACHINE_COLUMNS, TrainingDiverged, train

from conftest import TINY_RUN, make_random_dataset, run_folders_held

SMALL = TINY_RUN

TRAINING_COLUMNS = {
    "critic_loss",
    "actor_loss",
    "vae_loss",
    "distance",
    "alpha",
    "q_data",
    "q_target",
    "policy_q",
}
EVAL_COLUMNS = {"AverageReturn", "StdReturn", "MedianReturn", "NormalizedScore", "BestScore"}


def run(tmp_path, name, **over):
    cfg, algo_cfg = resolve({**SMALL, "log_dir": str(tmp_path), "run_name": name, **over})
    return train(cfg, algo_cfg, dataset=make_random_dataset())


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_short_run_writes_every_log_file(tmp_path):
    result = run(tmp_path, "r", steps=40)
    d = tmp_path / "r"
    for name in (
        "progress.csv",
        "variant.json",
        "params.json",
        "debug.log",
        "result.json",
        "checkpoint.pt",
        "best.pt",
    ):
        assert (d / name).exists(), name
    rows = read_rows(d / "progress.csv")
    assert [int(r["Step"]) for r in rows] == [20, 40]
    assert 50 < float(rows[-1]["MemoryMiB"]) < 100_000  # a Python process with torch loaded
    assert TRAINING_COLUMNS | EVAL_COLUMNS | {"Step", *MACHINE_COLUMNS} <= set(rows[0])
    variant = json.loads((d / "variant.json").read_text())
    assert variant["algorithm"] == "BEAR" and variant["algo"]["batch_size"] == 32
    assert variant["dataset"]["transitions"] == 600
    assert variant["dataset"]["sha1"] == make_random_dataset().digest()
    from bearl.perf import machine, machine_line

    assert variant["machine"] == machine() and result["machine"] == machine()
    assert f"machine: {machine_line()}" in (d / "debug.log").read_text()
    saved = json.loads((d / "result.json").read_text())
    assert saved == result
    assert result["final_score"] == pytest.approx(float(rows[-1]["NormalizedScore"]), abs=1e-4)
    best = max(float(r["NormalizedScore"]) for r in rows)
    assert result["best_score"] == pytest.approx(best, abs=1e-4)


def test_a_run_from_python_draws_its_learning_curve(tmp_path):
    run(tmp_path, "r", steps=40)
    assert (tmp_path / "r" / "progress.png").read_bytes().startswith(b"\x89PNG")
    run(tmp_path, "blind", steps=20, eval_episodes=0)  # no evaluation: no curve
    assert not (tmp_path / "blind" / "progress.png").exists()


def test_the_progress_display_names_its_phases_and_ends_once(tmp_path, capsys):
    """The run folder, the preset and the plan first; the bar labelled ``training BEAR``; its
    final state printed once, then the last row's line."""
    run(tmp_path, "r", steps=40, progress=True)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == f"bearl: run folder {(tmp_path / 'r').absolute()}"
    assert lines[1].startswith("bearl: BEAR, paper preset")
    assert lines[2] == (
        "bearl: training BEAR on memory in Pendulum-v1 for 40 steps, evaluating 2 episodes "
        "every 20 steps"
    )
    assert "training BEAR:" in err
    assert err.count("40/40") == 1, err
    assert err.index("40/40") < err.index("step       40 |")


def test_deterministic_evaluation_is_logged_beside_the_algorithms_own_rule(tmp_path):
    """eval_deterministic adds columns and changes nothing else: same rows, same result."""
    plain = run(tmp_path, "plain", steps=40)
    both = run(tmp_path, "both", steps=40, eval_deterministic=True)
    rows = read_rows(tmp_path / "both" / "progress.csv")
    added = {"DeterministicAverageReturn", "DeterministicNormalizedScore"}
    assert added <= set(rows[0])
    assert not added & set(read_rows(tmp_path / "plain" / "progress.csv")[0])

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in {*MACHINE_COLUMNS, *added}} for r in rows]

    assert strip(rows) == strip(read_rows(tmp_path / "plain" / "progress.csv"))
    assert {k: v for k, v in both.items() if k not in ("run_dir", "wall_time")} == {
        k: v for k, v in plain.items() if k not in ("run_dir", "wall_time")
    }
    # BEAR's two rules differ (mean action vs best of sampled actions by Q_1) ...
    assert any(r["DeterministicAverageReturn"] != r["AverageReturn"] for r in rows)
    # ... TD3's act ignores `deterministic`: the same episodes give the same returns
    run(tmp_path, "td3", steps=40, algo="TD3", eval_deterministic=True)
    for r in read_rows(tmp_path / "td3" / "progress.csv"):
        assert float(r["DeterministicAverageReturn"]) == pytest.approx(float(r["AverageReturn"]))


def test_resume_matches_uninterrupted_run(tmp_path):
    run(tmp_path, "full", steps=60)
    run(tmp_path, "part", steps=40)
    cfg, _ = resolve({**SMALL, "steps": 60})
    train(cfg, resume=tmp_path / "part", dataset=make_random_dataset())

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in MACHINE_COLUMNS} for r in rows]

    full = strip(read_rows(tmp_path / "full" / "progress.csv"))
    part = strip(read_rows(tmp_path / "part" / "progress.csv"))
    assert len(full) == 3 and full == part
    from bearl.perf import machine_line

    log = (tmp_path / "part" / "debug.log").read_text()
    assert f"resumed at step 40 on {machine_line()}" in log  # each start names its machine


def test_a_run_moved_between_kinds_of_device_resumes_reseeded_and_says_so(tmp_path, capsys):
    """A checkpoint written on CUDA holds a Philox generator state (16 bytes), which a CPU
    generator cannot take: the resume goes on from a seed taken from that state (the same
    for every resume of it) and warns once, in the terminal and in debug.log. Folder a's
    checkpoint is of the older format (the device told by the state's size), c's is tagged."""
    import shutil

    from bearl.training.checkpoint import load_checkpoint, save_checkpoint

    def put_sampler(folder, state):
        path = tmp_path / folder / "checkpoint.pt"
        ckpt = load_checkpoint(path)
        ckpt["sampler"] = state
        save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "format_version"})

    run(tmp_path, "a", steps=40)
    cuda_state = torch.arange(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    put_sampler("a", {"generator": cuda_state})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    put_sampler("c", {"generator": cuda_state + 1, "device": "cuda"})
    capsys.readouterr()
    cfg, _ = resolve({**SMALL, "steps": 60})
    for name in "abc":
        train(cfg, resume=tmp_path / name, dataset=make_random_dataset())
    err = capsys.readouterr().err
    said = "the minibatch sampler was saved on cuda and resumes on cpu"
    assert err.count(said) == 3 and f"{tmp_path / 'a' / 'checkpoint.pt'}: " in err
    assert said in (tmp_path / "a" / "debug.log").read_text()

    def last(name):
        row = read_rows(tmp_path / name / "progress.csv")[-1]
        return {k: v for k, v in row.items() if k not in MACHINE_COLUMNS}

    assert last("a")["Step"] == "60"
    assert last("a") == last("b")  # the same checkpoint: the same continuation
    assert last("a")["critic_loss"] != last("c")["critic_loss"]  # the seed comes from the state


def test_resume_after_crash_drops_rows_past_the_checkpoint(tmp_path):
    run(tmp_path, "r", steps=40)
    path = tmp_path / "r" / "progress.csv"
    rows = read_rows(path)
    with open(path, "a", newline="") as f:  # a row logged after the last checkpoint
        csv.writer(f).writerow(["60"] + ["0"] * (len(rows[0]) - 1))
    cfg, _ = resolve({**SMALL, "steps": 60})
    train(cfg, resume=tmp_path / "r", dataset=make_random_dataset())
    assert [int(r["Step"]) for r in read_rows(path)] == [20, 40, 60]


def test_nan_stops_with_the_loss_name_and_step(tmp_path, monkeypatch):
    from bearl.algos.bear import BEAR

    real = BEAR.update

    def poisoned(self, batch):
        m = real(self, batch)
        if self.step == 25:
            m["critic_loss"] = torch.tensor(float("nan"))
        return m

    monkeypatch.setattr(BEAR, "update", poisoned)
    with pytest.raises(TrainingDiverged, match=r"critic_loss became NaN/Inf at step 25"):
        run(tmp_path, "nan", steps=60)
    assert (tmp_path / "nan" / "checkpoint.pt").exists()  # the step-20 checkpoint is kept


def test_original_flag_names_are_accepted():
    cfg, algo = resolve(
        {
            "algo_name": "BEAR",
            "buffer_name": "some.pkl",
            "env_name": "Hopper-v5",
            "eval_freq": "1000",
            "log_dir": "x",
            "lagrange_thresh": "10.0",
            "distance_type": "MMD",
            "mode": "auto",
            "num_samples_match": "5",
            "lamda": "0.0",
            "version": "0",
            "mmd_sigma": "20.0",
            "kernel_type": "gaussian",
            "use_ensemble_variance": "False",
            "max_timesteps": "1e6",
        }
    )
    assert (cfg.dataset, cfg.env, cfg.eval_every, cfg.steps) == (
        "some.pkl",
        "Hopper-v5",
        1000,
        1_000_000,
    )
    assert (algo.kernel_type, algo.mmd_sigma, algo.num_samples_match) == ("gaussian", 20.0, 5)
    assert algo.use_ensemble_variance is False


def test_an_old_env_version_is_said_once_and_both_names_are_recorded(tmp_path, capsys):
    """Pendulum-v0 (as Hopper-v2) is evaluated in the version bearl runs: printed once, and
    result.json, params.json and debug.log keep the name given and the env used."""
    result = run(tmp_path, "old", steps=40, env="Pendulum-v0")
    err = capsys.readouterr().err
    assert err.count("Pendulum-v0 is evaluated in Pendulum-v1") == 1, err
    assert (result["env"], result["env_id"]) == ("Pendulum-v0", "Pendulum-v1")
    saved = json.loads((tmp_path / "old" / "result.json").read_text())
    assert (saved["env"], saved["env_id"]) == ("Pendulum-v0", "Pendulum-v1")
    params = json.loads((tmp_path / "old" / "params.json").read_text())
    assert (params["env_name"], params["env_id"]) == ("Pendulum-v0", "Pendulum-v1")
    assert (
        "env Pendulum-v0 (evaluated in Pendulum-v1)" in (tmp_path / "old" / "debug.log").read_text()
    )
    run(tmp_path, "new", steps=20, env="Pendulum-v1")
    assert "evaluated in" not in capsys.readouterr().err


def test_every_run_names_its_preset_and_the_other_one(tmp_path, capsys):
    run(tmp_path, "paper", steps=20, progress=True)
    err = capsys.readouterr().err
    assert "bearl: BEAR, paper preset: the D4RL paper's settings" in err
    assert "; --preset original for the NeurIPS 2019 code's settings" in err
    run(tmp_path, "original", steps=20, preset="original")  # no progress: debug.log only
    assert "preset" not in capsys.readouterr().err
    log = (tmp_path / "original" / "debug.log").read_text()
    assert "BEAR, original preset: the NeurIPS 2019 code's settings; --preset paper for" in log
    cfg, _ = resolve(
        {**SMALL, "algo": "BCQ", "steps": 20, "log_dir": str(tmp_path), "run_name": "bcq"}
    )
    train(cfg, dataset=make_random_dataset())
    log = (tmp_path / "bcq" / "debug.log").read_text()
    assert "BCQ, paper preset (for BCQ the same as --preset original)" in log


def test_d4rl_env_name_is_also_the_dataset():
    cfg, _ = resolve({"env_name": "hopper-medium-v2"})
    assert cfg.dataset == "hopper-medium-v2"


def test_paper_preset_picks_kernel_per_env_unless_given():
    assert resolve({"dataset": "halfcheetah-medium"})[1].kernel_type == "gaussian"
    assert resolve({"dataset": "hopper-medium"})[1].kernel_type == "laplacian"
    assert resolve({"dataset": "hopper-medium", "kernel_type": "gaussian"})[1].kernel_type == (
        "gaussian"
    )
    orig = resolve({"dataset": "hopper-medium", "preset": "original"})[1]
    assert orig.batch_size == 100 and orig.actor_hidden == (400, 300)


def test_bad_values_are_config_errors():
    from bearl.errors import ConfigError

    with pytest.raises(ConfigError, match="version"):
        resolve({"version": "5"})
    with pytest.raises(ConfigError, match="expected int"):
        resolve({"steps": "many"})
    with pytest.raises(ConfigError, match="unknown algorithm"):
        resolve({"algo": "PPO"})


def test_settings_of_other_algorithms_are_ignored_with_a_note(capsys):
    from bearl.errors import ConfigError

    _, td3 = resolve({"algo": "TD3", "mmd_sigma": "10"})
    assert not hasattr(td3, "mmd_sigma")
    assert "ignoring settings TD3 does not have: mmd_sigma" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve({"algo": "TD3", "mmd_sigmaa": "10"})
    with pytest.raises(
        ConfigError, match=r"unknown setting\(s\): mmd_sigmaa \(did you mean mmd_sigma\?\)"
    ):
        resolve({"algo": "TD3", "mmd_sigmaa": "10"})


def test_warm_start_is_capped_for_short_runs_unless_set():
    assert resolve({"steps": 1_000_000})[1].warm_start_steps == 40_000
    assert resolve({"steps": 50_000})[1].warm_start_steps == 10_000
    assert resolve({"steps": 50_000, "warm_start_steps": 30_000})[1].warm_start_steps == 30_000
    assert resolve({"steps": 50_000, "preset": "original"})[1].warm_start_steps == 10_000


def test_extending_a_run_keeps_its_capped_warm_start_and_says_so(tmp_path, capsys):
    """A 20-step run warms up for 4 steps (capped); extended to 40 it keeps the 4, as a new
    40-step run given warm_start_steps 4 (a new 40-step run would warm up for 8)."""
    values = {k: v for k, v in SMALL.items() if k != "warm_start_steps"}
    values.update(log_dir=str(tmp_path), eval_every=10)
    cfg, algo_cfg = resolve({**values, "run_name": "short", "steps": 20})
    assert algo_cfg.warm_start_steps == 4
    train(cfg, algo_cfg, dataset=make_random_dataset())
    capsys.readouterr()
    cfg, _ = resolve({**values, "steps": 40})
    train(cfg, resume=tmp_path / "short", dataset=make_random_dataset())
    err = capsys.readouterr().err
    assert (
        "bearl: extending to 40 steps keeps the run's warm start of 4 steps (the preset's "
        "40000, capped at 1/5 of the 20 steps it started with); a new 40-step run would warm "
        "up for 8, so the two differ from step 5 on"
    ) in err
    log = (tmp_path / "short" / "debug.log").read_text()
    assert "extended from 20 to 40 steps (params.json and variant.json keep" in log
    kept = {**values, "run_name": "kept", "steps": 40, "warm_start_steps": 4}
    train(*resolve(kept), dataset=make_random_dataset())

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in MACHINE_COLUMNS} for r in rows]

    extended = strip(read_rows(tmp_path / "short" / "progress.csv"))
    assert extended == strip(read_rows(tmp_path / "kept" / "progress.csv"))
    train(*resolve({**values, "run_name": "new", "steps": 40}), dataset=make_random_dataset())
    assert extended != strip(read_rows(tmp_path / "new" / "progress.csv"))
    run(tmp_path, "given", steps=20)  # warm_start_steps given: not capped, nothing to say
    train(
        *resolve({**SMALL, "steps": 40}), resume=tmp_path / "given", dataset=make_random_dataset()
    )
    assert "warm start" not in capsys.readouterr().err


def test_resume_of_a_finished_run_keeps_its_result(tmp_path):
    """At full precision (progress.csv rounds to 6 digits): from the checkpoint, or from
    result.json for a checkpoint of an older bearl, which did not hold the last row."""
    result = run(tmp_path, "r", steps=40)
    assert result["final_score"] != round(result["final_score"], 6)  # else nothing is tested
    d = tmp_path / "r"
    cfg, _ = resolve({**SMALL, "steps": 40})
    for case in ("finished", "killed after the last checkpoint", "an older checkpoint"):
        if case == "killed after the last checkpoint":
            (d / "result.json").unlink()
        if case == "an older checkpoint":
            payload = torch.load(d / "checkpoint.pt", weights_only=False)
            del payload["last_row"]
            torch.save(payload, d / "checkpoint.pt")
        again = train(cfg, resume=d, dataset=make_random_dataset())
        assert again == result, case
        assert json.loads((d / "result.json").read_text()) == result, case


def test_a_resume_changes_only_the_settings_it_may(tmp_path, capsys):
    """--steps, --progress, --threads, ... may change; any other setting must equal the run's
    (given equal, it is accepted), from the command line and from Python."""
    from bearl.cli import main
    from bearl.data.d4rl import write_d4rl
    from bearl.errors import ConfigError

    src = tmp_path / "d.hdf5"
    write_d4rl(make_random_dataset(), src)
    values = {**SMALL, "dataset": str(src), "log_dir": str(tmp_path), "run_name": "r"}
    assert main(["train", *[f"--{k}={v}" for k, v in values.items()], "--steps=20"]) == 0
    d = tmp_path / "r"
    rows = (d / "progress.csv").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(d), "--mmd_sigma", "5", "--eval_every", "50"]) == 2
    err = capsys.readouterr().err
    assert "--mmd_sigma 5, --eval_every 50: a resumed run keeps its own settings" in err
    assert "(mmd_sigma 20.0, eval_every 20); a resume may change only --steps, --progress" in err
    assert main(["train", "--resume", str(d), "--algo", "TD3", "--gamma", "0.5"]) == 2
    assert "--algo TD3, --gamma 0.5" in capsys.readouterr().err
    assert main(["train", "--resume", str(d), "--policy_noise", "0.1"]) == 2  # TD3's, not BEAR's
    assert "(no policy_noise)" in capsys.readouterr().err
    assert (d / "progress.csv").read_text() == rows  # nothing ran
    cfg, algo_cfg = resolve({**values, "steps": 40, "eval_every": 10})
    with pytest.raises(ConfigError, match=r"--eval_every 10: a resumed run keeps"):
        train(cfg, resume=d)
    cfg, algo_cfg = resolve({**values, "steps": 40, "mmd_sigma": 5})
    with pytest.raises(ConfigError, match=r"--mmd_sigma 5.0: a resumed run keeps"):
        train(cfg, algo_cfg, resume=d)
    assert (d / "progress.csv").read_text() == rows
    same = ["--mmd_sigma", "20", "--eval_every", "20", "--batch_size", "32", "--algo", "bear"]
    assert main(["train", "--resume", str(d), *same, "--steps", "40", "--threads", "1"]) == 0
    assert [int(r["Step"]) for r in read_rows(d / "progress.csv")] == [20, 40]


def test_unwritable_log_dir_fails_before_training(tmp_path):
    from bearl.errors import BearlError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BearlError, match="cannot write logs"):
        run(blocker, "r", steps=20)


def test_a_run_folder_in_use_by_another_process_is_refused(tmp_path):
    """A second process on a folder that is training (a sweep started twice, --resume of a
    running run) stops with a clear error and writes nothing; once the first one has ended
    the run resumes."""
    from bearl.errors import BearlError

    run(tmp_path, "r", steps=20)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r").iterdir()}
    # "new": a new run of the same name starting, before its first checkpoint
    with run_folders_held(tmp_path / "r", tmp_path / "new"):
        cfg, _ = resolve({**SMALL, "steps": 40})
        with pytest.raises(BearlError, match="another bearl process is training"):
            train(cfg, resume=tmp_path / "r", dataset=make_random_dataset())
        with pytest.raises(BearlError, match="another bearl process is training"):
            run(tmp_path, "new", steps=40)
        assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r").iterdir()} == before
    assert train(cfg, resume=tmp_path / "r", dataset=make_random_dataset())["steps"] == 40


def test_ctrl_c_says_how_to_continue(tmp_path, monkeypatch):
    """Ctrl-C during training names the run folder and the resume command (or says that no
    checkpoint exists yet), and the run continues from its checkpoint."""
    from bearl.algos.bear import BEAR
    from bearl.errors import RunInterrupted

    update = BEAR.update

    def interrupted_at(step):
        def wrapped(self, batch):
            if self.step == step:
                raise KeyboardInterrupt
            return update(self, batch)

        return wrapped

    monkeypatch.setattr(BEAR, "update", interrupted_at(5))
    with pytest.raises(
        RunInterrupted, match=r"no checkpoint yet \(the first is written at step 20\)"
    ):
        run(tmp_path, "early", steps=40)
    monkeypatch.setattr(BEAR, "update", interrupted_at(30))
    with pytest.raises(RunInterrupted) as e:
        run(tmp_path, "r", steps=40)
    assert f"checkpoint (step 20) with: bearl train --resume {tmp_path / 'r'}" in str(e.value)
    monkeypatch.setattr(BEAR, "update", update)
    cfg, _ = resolve({**SMALL, "steps": 40})
    assert train(cfg, resume=tmp_path / "r", dataset=make_random_dataset())["steps"] == 40


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    from bearl.errors import DatasetError

    cfg, algo_cfg = resolve({**SMALL, "log_dir": str(tmp_path), "run_name": "r", "steps": 20})
    cfg.dataset = str(tmp_path / "missing.hdf5")
    with pytest.raises(DatasetError):
        train(cfg, algo_cfg)
    assert not (tmp_path / "r").exists()


def test_a_full_disk_fails_before_training_and_never_leaves_a_partial_checkpoint(
    tmp_path, monkeypatch
):
    import shutil
    from collections import namedtuple

    from bearl import files
    from bearl.errors import BearlError, CheckpointError, DiskFull
    from bearl.training import checkpoint

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 << 20, 9 << 20, 1 << 20))
    with pytest.raises(BearlError, match=r"1 MiB free on its disk; this run needs about \d+ MiB"):
        run(tmp_path, "full", steps=20)
    assert not (tmp_path / "full").exists()  # nothing started, no empty run folder
    monkeypatch.undo()

    run(tmp_path, "r", steps=20)
    ckpt = tmp_path / "r" / "checkpoint.pt"
    before = ckpt.read_bytes()

    def short_write(f, data):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "_write_all", short_write)
    with pytest.raises(DiskFull, match="No space left on device.*previous one is kept"):
        checkpoint.save_checkpoint(ckpt, {"step": 99})
    assert ckpt.read_bytes() == before
    assert not (tmp_path / "r" / "checkpoint.pt.tmp").exists()

    def broken_write(f, data):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files, "_write_all", broken_write)
    with pytest.raises(CheckpointError, match="Input/output error.*previous one is kept"):
        checkpoint.save_checkpoint(ckpt, {"step": 99})
    assert ckpt.read_bytes() == before
    assert not (tmp_path / "r" / "checkpoint.pt.tmp").exists()


def test_checkpoints_of_another_algorithm_or_newer_format_are_refused(tmp_path):
    from bearl.errors import CheckpointError
    from bearl.training.checkpoint import load_checkpoint

    run(tmp_path, "r", steps=20)
    ckpt = tmp_path / "r" / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="checkpoint is for BEAR, not TD3"):
        load_checkpoint(ckpt, algo="TD3")
    payload = torch.load(ckpt, weights_only=True)
    payload["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    with pytest.raises(CheckpointError, match="newer than this bearl"):
        load_checkpoint(newer)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    from bearl.errors import ConfigError

    with pytest.raises(ConfigError, match="not a bearl run folder"):
        train(resume=tmp_path)


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    def strip(rows):
        return [{k: v for k, v in r.items() if k not in MACHINE_COLUMNS} for r in rows]

    run(tmp_path, "a", steps=20)
    run(tmp_path, "b", steps=20)
    run(tmp_path, "c", steps=20, seed=1)
    a, b, c = (strip(read_rows(tmp_path / x / "progress.csv")) for x in "abc")
    assert a == b
    assert a != c


def test_tensorboard_mirror(tmp_path):
    pytest.importorskip("tensorboard")
    run(tmp_path, "tb", steps=20, tensorboard=True)
    assert any((tmp_path / "tb" / "tb").iterdir())


def test_nan_parameters_stop_before_they_are_saved(tmp_path, monkeypatch):
    from bearl.algos.bear import BEAR
    from bearl.training.checkpoint import load_checkpoint

    real = BEAR.update

    def poisoned(self, batch):
        m = real(self, batch)
        if self.step == 40:  # after this step's losses: only the parameter check can see it
            with torch.no_grad():
                self.vae.decoder[0].weight[0, 0] = float("inf")
        return m

    monkeypatch.setattr(BEAR, "update", poisoned)
    with pytest.raises(TrainingDiverged, match=r"parameters of vae became NaN/Inf by step 40"):
        run(tmp_path, "p", steps=60)
    state = load_checkpoint(tmp_path / "p" / "checkpoint.pt")
    assert state["step"] == 20  # the last good one


def _flushed_now() -> bool:
    """Whether this thread flushes denormals: 1e-39 * 0.5 is a denormal unless flushed."""
    return float(torch.tensor(1e-39) * 0.5) == 0.0


@pytest.mark.parametrize("flush", [True, False])
def test_the_updates_flush_denormals_and_nothing_else_does(tmp_path, monkeypatch, flush):
    """--flush_denormals (default true): every gradient update runs with denormals flushed to
    zero, the evaluation episodes (MuJoCo, the policy) do not, and the thread is left as it was;
    false computes on them everywhere. A resume may switch it; debug.log says which, at the
    start and at each resume."""
    from bearl.algos.bear import BEAR
    from bearl.training.evaluation import Evaluator

    seen = {"update": [], "episodes": []}
    update, episodes = BEAR.update, Evaluator._episodes

    def spy_update(self, batch):
        seen["update"].append(_flushed_now())
        return update(self, batch)

    def spy_episodes(self, *a, **k):
        seen["episodes"].append(_flushed_now())
        return episodes(self, *a, **k)

    monkeypatch.setattr(BEAR, "update", spy_update)
    monkeypatch.setattr(Evaluator, "_episodes", spy_episodes)
    assert not _flushed_now()
    on, off = str(flush).lower(), str(not flush).lower()
    run(tmp_path, "r", steps=20, flush_denormals=on)
    assert seen["update"] == [flush] * 20
    assert seen["episodes"] and not any(seen["episodes"])
    assert not _flushed_now()
    log = (tmp_path / "r" / "debug.log").read_text()
    assert f"(--flush_denormals {on})" in log and f"(--flush_denormals {off})" not in log

    cfg, algo_cfg = resolve(
        {**SMALL, "log_dir": str(tmp_path), "run_name": "r", "steps": 40, "flush_denormals": off}
    )
    train(cfg, algo_cfg, dataset=make_random_dataset(), resume=tmp_path / "r")
    assert seen["update"][20:] == [not flush] * 20
    after = (tmp_path / "r" / "debug.log").read_text().split("resumed at step 20", 1)[1]
    assert f"(--flush_denormals {off})" in after
