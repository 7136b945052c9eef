"""The command line: help, data info/convert, clean one-line errors, train with original flags."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bearl.cli import main
from bearl.data.d4rl import write_d4rl

from conftest import make_random_dataset


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "data", "plot"):
        assert cmd in out


def test_every_setting_has_a_description():
    """`bearl train --help` shows each field's docstring: none may be missing."""
    from dataclasses import fields

    from bearl.algos import ALGORITHMS, algorithm_class
    from bearl.config import TrainConfig, field_docs

    for cls in [TrainConfig] + [algorithm_class(n).config_cls for n in ALGORITHMS]:
        docs = field_docs(cls)
        missing = [f.name for f in fields(cls) if not docs.get(f.name, "").strip()]
        assert not missing, f"{cls.__name__}: no docstring for {missing}"


def test_a_shared_flag_describes_each_algorithms_meaning(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    lamda = out[out.index("--lamda FLOAT ") :]
    lamda = lamda[: lamda.index("--delta_conf")]
    assert "[BEAR] Weight of the ensemble-std penalty" in lamda
    assert "[DQfD] Weight of the margin loss" in lamda
    batch = out[out.index("--batch_size INT, --batch-size INT ") :][:200]
    assert "[" not in batch.split("(defaults:")[0]  # one meaning: no per-algorithm labels


def test_train_help_documents_every_bear_knob(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--mmd_sigma",
        "--kernel_type",
        "--num_samples_match",
        "--mode",
        "--lagrange_thresh",
        "--distance_type",
        "--version",
        "--use_ensemble_variance",
        "--lamda",
        "--delta_conf",
        "--warm_start_steps",
        "--num_qs",
        "--resume",
    ):
        assert flag in out, flag


def test_data_info_and_convert(tmp_path, capsys):
    ds = make_random_dataset()
    src = tmp_path / "d.hdf5"
    write_d4rl(ds, src)
    assert main(["data", "info", str(src), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["transitions"] == len(ds) and info["episodes"] == ds.num_episodes
    out = tmp_path / "copy.hdf5"
    assert main(["data", "convert", str(src), "--to", "d4rl", str(out)]) == 0
    assert out.exists()
    assert main(["data", "convert", str(src), "--to", "d4rl", str(out)]) == 2  # exists


def test_bad_file_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "broken.hdf5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    proc = subprocess.run(
        [sys.executable, "-m", "bearl.cli", "data", "info", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "broken.hdf5" in lines[0]


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bearl.cli",
            "--debug",
            "data",
            "info",
            str(tmp_path / "missing.pkl"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_train_with_original_flags(tmp_path, capsys):
    ds = make_random_dataset()
    src = tmp_path / "buffer.hdf5"
    write_d4rl(ds, src)
    code = main(
        [
            "train",
            "--algo_name=BEAR",
            f"--buffer_name={src}",
            "--env_name=Pendulum-v1",
            "--eval_freq=10",
            f"--log_dir={tmp_path / 'runs'}",
            "--lagrange_thresh=10.0",
            "--distance_type=MMD",
            "--mode=auto",
            "--num_samples_match=5",
            "--lamda=0.0",
            "--version=0",
            "--mmd_sigma=20.0",
            "--kernel_type=gaussian",
            "--use_ensemble_variance=False",
            "--max_timesteps=20",
            "--eval_episodes=1",
            "--actor_hidden=16,16",
            "--critic_hidden=16,16",
            "--vae_hidden=16,16",
            "--num_eval_samples=2",
            "--progress=false",
            "--threshold=0.05",  # parsed by the original, never used there: a note here
            "--use_bootstrap",
        ]
    )
    assert code == 0
    out, err = capsys.readouterr()
    assert "result.json" in out and "progress.png" in out
    assert "--threshold does nothing here, nor did it in the original" in err
    assert "--use_bootstrap does nothing here" in err
    (run,) = (tmp_path / "runs").iterdir()
    result = json.loads((run / "result.json").read_text())
    assert out.startswith(
        f"BEAR on buffer.hdf5, 20 steps: normalized score {result['final_score']:.1f} at the "
        f"end, best {result['best_score']:.1f} at step {result['best_step']}; the data's own "
        f"level is {result['data_score']:.1f} (the mean over its episodes)\n"
        f"run folder: {run.absolute()}\n"
    )
    assert f"best.pt        the policy of the best evaluation: bearl eval {run.absolute()}" in out
    assert f"continue with bearl train --resume {run.absolute()} --steps N" in out
    assert "{" not in out  # no JSON blob
    assert "result.json" in out and "progress.png" in out
    (run,) = (tmp_path / "runs").iterdir()
    variant = json.loads((run / "variant.json").read_text())
    assert variant["algo"]["kernel_type"] == "gaussian"
    assert variant["algo"]["num_samples_match"] == 5
    assert (run / "progress.png").exists()


# Every flag the original BEAR main.py parses (docs/bear.md), with a value it accepts;
# --buffer_name was removed there in May 2020 but its README still uses it.
ORIGINAL_MAIN_FLAGS = {
    "env_name": "Hopper-v5",
    "seed": "0",
    "eval_freq": "5e3",
    "max_timesteps": "1e6",
    "version": "0",
    "lamda": "0.5",
    "threshold": "0.05",
    "use_bootstrap": "False",
    "algo_name": "BEAR",
    "mode": "hardcoded",
    "num_samples_match": "10",
    "mmd_sigma": "20.0",
    "kernel_type": "laplacian",
    "lagrange_thresh": "10.0",
    "distance_type": "MMD",
    "log_dir": "./data_hopper/",
    "use_ensemble_variance": "False",
    "use_behaviour_policy": "False",
    "cloning": "False",
    "num_random": "10",
    "margin_threshold": "10",
    "buffer_name": "buffer_hopper.pkl",
}


def test_every_flag_of_the_original_main_py_is_accepted(capsys):
    """Each parses, and those that did nothing in the original say so in one line each."""
    from bearl.cli import build_parser
    from bearl.config import ORIGINAL_NO_OPS, resolve

    argv = ["train"] + [f"--{k}={v}" for k, v in ORIGINAL_MAIN_FLAGS.items()]
    args = build_parser().parse_args(argv)
    skip = {"func", "command", "config", "resume", "debug"}
    cfg, algo_cfg = resolve({k: v for k, v in vars(args).items() if k not in skip})
    assert (cfg.algo, cfg.steps, cfg.eval_every, cfg.dataset) == (
        "BEAR",
        1_000_000,
        5000,
        "buffer_hopper.pkl",
    )
    assert (algo_cfg.mode, algo_cfg.num_samples_match, algo_cfg.lamda) == ("fixed", 10, 0.5)
    err = capsys.readouterr().err.splitlines()
    for name in ORIGINAL_NO_OPS:
        assert sum(line.startswith(f"bearl: --{name} does nothing") for line in err) == 1, name
    assert any("--eval_freq 5e3 is --eval_every here" in line for line in err)
    assert any("margin_threshold" in line for line in err)  # a DQfD setting, ignored by BEAR


def test_an_algorithm_of_the_original_that_bearl_does_not_provide_says_why(capsys):
    assert main(["train", "--algo_name=BEAR_IS"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("bearl: error: --algo: algorithm 'BEAR_IS' is not provided: ")
    assert "broken" in err and "docs/bear.md" in err
    assert main(["train", "--algo", "PPO"]) == 2
    assert "unknown algorithm 'PPO'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, usage, line",
    [
        (
            ["train", "--mmd_sgima", "3"],
            "usage: bearl train ",
            "bearl train: error: unrecognized arguments: --mmd_sgima 3 (did you mean --mmd_sigma?)",
        ),
        (
            ["data", "make", "hopper-medium", "--sise=5"],
            "usage: bearl data make ",
            "bearl data make: error: unrecognized arguments: --sise=5 (did you mean --size?)",
        ),
        (
            ["eval", "run", "--zzz"],
            "usage: bearl eval ",
            "bearl eval: error: unrecognized arguments: --zzz",
        ),
    ],
)
def test_an_unknown_flag_shows_its_commands_usage_and_the_closest_flag(argv, usage, line, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(usage)
    assert err[-1] == line  # one line of error after the usage
    assert sum("error" in x for x in err) == 1


def test_the_training_bar_measures_its_rate_after_the_start_and_shows_evaluations(capsys):
    import time

    from bearl.progress import StepBar

    bar = StepBar(1000, 0, "training BEAR")
    bar.interactive = True  # as on a terminal, and drawn at every update
    bar.bar.mininterval = 0
    time.sleep(0.5)  # a slow start (first allocations)
    bar.advance(100)
    time.sleep(0.1)
    bar.advance(200)
    info = bar.bar.format_dict
    rate = (info["n"] - info["initial"]) / info["elapsed"]
    assert rate > 600, rate  # 100 steps in 0.1 s, not 200 in 0.6 s (333/s)
    bar.phase("evaluating 10 episodes")
    assert "evaluating 10 episodes:" in capsys.readouterr().err
    bar.training()
    bar.advance(1000)
    assert "1000/1000" not in capsys.readouterr().err  # not yet
    bar.finish("step 1000 | ...")
    err = capsys.readouterr().err
    assert err.count("1000/1000") == 1 and err.rstrip().endswith("step 1000 | ...")
    assert "training BEAR: 100%" in err
