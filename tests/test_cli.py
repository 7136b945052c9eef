"""The command line: help, data info/convert, clean one-line errors, train with original flags."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from bearl.algos.base import Algorithm
from bearl.algos.bc import BC, BCConfig
from bearl.algos.settings import BatchSettings
from bearl.cli import main
from bearl.data.d4rl import write_d4rl
from bearl.nets import ActorAction, DeterministicActor

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


def _help(argv: list[str], capsys) -> str:
    """The --help output of ``bearl ARGV``, argparse's line wrapping undone."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_a_shared_flag_shows_the_meaning_and_default_of_the_algorithm_shown(capsys):
    """--lamda is BEAR's ensemble-std weight and DQfD's margin-loss weight: each algorithm's
    help describes its own, with its own default, without per-algorithm labels."""
    bear = _help(["train", "--help"], capsys)
    lamda = bear[bear.index("--lamda FLOAT ") :][:200]
    assert "Weight of the ensemble-std penalty" in lamda and "margin" not in lamda
    dqfd = _help(["train", "--algo", "DQfD", "--help"], capsys)
    lamda = dqfd[dqfd.index("--lamda FLOAT ") :][:200]
    assert "Weight of the margin loss" in lamda and "ensemble" not in lamda
    for out in (bear, dqfd):
        batch = out[out.index("--batch_size INT, --batch-size INT ") :][:200]
        assert "[" not in batch.split("(default:")[0] and "(defaults:" not in batch


def test_train_help_shows_the_run_settings_and_one_algorithms(capsys):
    """`bearl train --algo IQL --help` lists the run settings and IQL's, each under a title, not
    the settings of all nine algorithms; --algo may come after --help."""
    from bearl.algos import ALGORITHMS

    for argv in (["train", "--algo", "IQL", "--help"], ["train", "--help", "--algo=iql"]):
        out = _help(argv, capsys)
        assert "run settings (every algorithm): --algo " in out and "IQL settings: " in out
        assert "--expectile FLOAT" in out and "--steps INT" in out and "--resume RUN_DIR" in out
        assert "--mmd_sigma" not in out and "BEAR settings" not in out
    plain = _help(["train", "--help"], capsys)
    assert "the settings every run has and BEAR's (the default --algo)" in plain
    assert f"bearl train --algo NAME --help (NAME: {', '.join(ALGORITHMS)})" in plain
    assert "--mmd_sigma FLOAT" in plain and "--expectile" not in plain
    assert "IQL settings" not in plain


def test_train_parses_every_algorithms_flags(capsys):
    """--help shows one algorithm's settings, the parser reads all: IQL's own with --algo IQL,
    and a BEAR setting with --algo TD3 is ignored with a note, as before."""
    from bearl.cli import _parse, build_parser
    from bearl.config import resolve

    skip = {"func", "command", "config", "resume", "debug"}

    def settings(argv):
        return {k: v for k, v in vars(_parse(build_parser(), argv)).items() if k not in skip}

    _, iql = resolve(settings(["train", "--algo", "IQL", "--expectile", "0.8"]))
    assert iql.expectile == 0.8
    capsys.readouterr()
    _, td3 = resolve(settings(["train", "--algo", "TD3", "--mmd_sigma", "5"]))
    assert type(td3).__name__ == "TD3Config"
    assert "bearl: ignoring settings TD3 does not have: mmd_sigma" in capsys.readouterr().err


@dataclass
class _ToyConfig(BCConfig):
    """A configuration for the test of an algorithm registered at run time."""

    toy_knob: float = 1.5
    """A knob only this test's algorithm has."""


class _Toy(BC):
    name = "Toy"
    config_cls = _ToyConfig


@dataclass
class _TinyConfig(BatchSettings):
    """Settings of the algorithm a test registers at run time."""

    tiny_lr: float = 1e-3
    """Adam learning rate of its policy."""
    tiny_hidden: tuple[int, ...] = (16,)
    """Hidden layers of its policy."""


class _Tiny(Algorithm):
    """An algorithm written in one file, outside bearl: it regresses the dataset's actions."""

    name = "Tiny"
    config_cls = _TinyConfig

    def __init__(self, config: _TinyConfig, obs_dim: int, act_dim: int, device="cpu") -> None:
        super().__init__(config, obs_dim, act_dim, device)
        self.actor = DeterministicActor(obs_dim, act_dim, config.tiny_hidden)
        self.add_networks({"actor": self.actor}, {"actor": (self.actor, config.tiny_lr)})

    def update(self, batch):
        loss = (self.actor(batch.observations) - batch.actions).pow(2).mean()
        self.optimize("actor", loss)
        self.step += 1
        return {"actor_loss": loss.detach()}

    def action_rule(self, deterministic: bool = False):
        return ActorAction(self.actor)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # as tests/test_policy.py
def test_an_algorithm_registered_at_run_time_trains_evaluates_exports_and_reports(tmp_path, capsys):
    """Adding an algorithm is one file and one registry line: a class written here, registered
    with ``bearl.algos.register``, has its own ``--help``, and ``bearl train`` (new and
    resumed), ``bearl eval``, ``bearl export`` and ``bearl report`` take it as any other, no
    other file edited. It is unregistered after."""
    import importlib.util

    from bearl.algos import ALGORITHMS, register, unregister
    from bearl.errors import ConfigError

    src = tmp_path / "d.hdf5"
    write_d4rl(make_random_dataset(), src)
    run = tmp_path / "tiny"
    register(_Tiny)
    try:
        with pytest.raises(ConfigError, match="registered already"):
            register(type("Tiny", (_Tiny,), {}))
        out = _help(["train", "--algo", "tiny", "--help"], capsys)
        assert "Tiny settings: " in out and "--tiny_lr FLOAT" in out and "(default: 0.001)" in out
        assert "--mmd_sigma" not in out and "Registered: BEAR," in out and ", Tiny." in out
        flags = ["--dataset", str(src), "--env", "Pendulum-v1", "--eval_every", "10"]
        flags += ["--eval_episodes", "1", "--batch_size", "16", "--tiny_hidden", "8,8"]
        flags += ["--log_dir", str(tmp_path), "--run_name", "tiny", "--progress", "false"]
        assert main(["train", "--algo", "tiny", "--steps", "10", *flags]) == 0
        assert main(["train", "--resume", str(run), "--steps", "20", "--tiny_lr", "0.1"]) == 2
        assert "a resumed run keeps its own settings (tiny_lr 0.001)" in capsys.readouterr().err
        assert main(["train", "--resume", str(run), "--steps", "20"]) == 0
        assert "Tiny on " in capsys.readouterr().out
        result = json.loads((run / "result.json").read_text())
        assert (result["algo"], result["steps"]) == ("Tiny", 20)
        params = json.loads((run / "params.json").read_text())
        assert params["algo"]["tiny_hidden"] == [8, 8]

        assert main(["eval", str(run), "--episodes", "2"]) == 0
        assert "Tiny from " in capsys.readouterr().out
        assert main(["export", str(run), "-o", str(tmp_path / "tiny.pt")]) == 0
        import torch

        scripted = torch.jit.load(str(tmp_path / "tiny.pt"))
        assert scripted(torch.zeros(4, 3)).shape == (4, 1)
        if importlib.util.find_spec("onnx") is not None:
            assert main(["export", str(run), "-o", str(tmp_path / "tiny.onnx")]) == 0
        capsys.readouterr()
        assert main(["report", str(run)]) == 0
        assert "Tiny" in capsys.readouterr().out
    finally:
        unregister("tiny")
    assert "Tiny" not in ALGORITHMS
    assert main(["train", "--algo", "Tiny", "--log_dir", str(tmp_path), "--run_name", "x"]) == 2
    assert "unknown algorithm 'Tiny'" in capsys.readouterr().err


def test_an_algorithm_registered_at_run_time_has_its_flags_and_help(monkeypatch, capsys):
    from bearl.algos import ALGORITHMS
    from bearl.cli import _parse, build_parser

    monkeypatch.setitem(ALGORITHMS, "Toy", _Toy)
    out = _help(["train", "--algo", "Toy", "--help"], capsys)
    assert "Toy settings: " in out and "--toy_knob FLOAT" in out and "(default: 1.5)" in out
    assert "CQL, Toy)" in _help(["train", "--help"], capsys)
    args = _parse(build_parser(), ["train", "--algo", "Toy", "--toy_knob", "2"])
    assert args.toy_knob == "2"


def test_help_of_an_unknown_algorithm_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--algo", "IQK", "--help"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bearl train: error: --algo: unknown algorithm 'IQK'")
    assert len(err.splitlines()) == 1


def test_resume_help_lists_exactly_the_settings_a_resume_may_change():
    from bearl.cli import build_parser
    from bearl.config import RESUME_SETTINGS

    (train,) = [
        a.choices["train"] for a in build_parser()._actions if hasattr(a, "choices") and a.choices
    ]
    text = next(a.help for a in train._actions if "--resume" in a.option_strings)
    listed = re.search(r"only (.*?) may change", text).group(1)
    assert listed.split(", ") == [f"--{name}" for name in RESUME_SETTINGS]
    assert "--flush_denormals" in listed


def test_steps_help_states_the_measured_time_of_the_default_run():
    from bearl.config import TrainConfig, field_docs

    text = field_docs(TrainConfig)["steps"]
    assert "about 12 minutes" in text and "one core of a 2-vCPU server" in text
    assert "10 minutes" not in text


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
    assert "  params.json    the settings the run started with (a resume reads them)\n" in out
    (run,) = (tmp_path / "runs").iterdir()
    variant = json.loads((run / "variant.json").read_text())
    assert variant["algo"]["kernel_type"] == "gaussian"
    assert variant["algo"]["num_samples_match"] == 5
    assert (run / "progress.png").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished two-step BEAR run on Pendulum, made through the CLI."""
    tmp = tmp_path_factory.mktemp("finished")
    src = tmp / "data.hdf5"
    write_d4rl(make_random_dataset(n=200), src)
    args = ["train", "--dataset", str(src), "--env", "Pendulum-v1", "--steps", "2"]
    args += ["--eval_every", "2", "--eval_episodes", "1", "--progress", "false"]
    assert main(args + ["--log_dir", str(tmp), "--run_name", "run"]) == 0
    return tmp / "run"


def test_resuming_a_finished_run_says_it_is_complete(finished_run, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(finished_run)]) == 0
    out, err = capsys.readouterr()
    line = (
        f"bearl: {finished_run} is already complete at 2 steps; to extend it: "
        f"bearl train --resume {finished_run} --steps M (M > 2)"
    )
    assert line in err.splitlines(), err
    assert out.startswith("BEAR on data.hdf5, 2 steps: ")


def test_eval_prints_the_sample_std(finished_run, tmp_path, capsys):
    """The std beside the t interval is the sample std (ddof=1), as the interval's."""
    import statistics

    out_json = tmp_path / "eval.json"
    assert main(["eval", str(finished_run), "--episodes", "3", "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    res = json.loads(out_json.read_text())
    assert lines[1].split()[:3] == ["mean", "sample", "std"]
    row = next(x for x in lines if x.startswith("return "))
    assert row.split()[2] == f"{statistics.stdev(res['returns']):.2f}"
    if statistics.pstdev(res["returns"]) > 0.1:  # (equal returns: both stds are 0)
        assert f"{statistics.pstdev(res['returns']):.2f}" != row.split()[2]
    assert any(x.startswith("(sample std: ddof=1") for x in lines)
    assert "--json's std: population" in lines[-2]


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
    from bearl.config import resolve
    from bearl.original_flags import ORIGINAL_NO_OPS

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
    "argv, line",
    [
        (
            ["train", "--mmd_sgima", "3"],
            "bearl train: error: unrecognized arguments: --mmd_sgima 3 (did you mean "
            "--mmd_sigma?); bearl train --help lists its flags",
        ),
        (
            ["train", "--algo", "IQL", "--expectle", "0.8"],
            "bearl train: error: unrecognized arguments: --expectle 0.8 (did you mean "
            "--expectile?); bearl train --algo IQL --help lists its flags",
        ),
        (
            ["data", "make", "hopper-medium", "--sise=5"],
            "bearl data make: error: unrecognized arguments: --sise=5 (did you mean --size?); "
            "bearl data make --help lists its flags",
        ),
        (
            ["eval", "run", "--zzz"],
            "bearl eval: error: unrecognized arguments: --zzz; bearl eval --help lists its flags",
        ),
    ],
)
def test_an_unknown_flag_is_one_line_with_the_closest_flag(argv, line, capsys):
    """One line on stderr, exit status 2: not the command's usage (40 lines for train) first."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err == line + "\n"


def test_the_unknown_flag_line_of_the_installed_command():
    proc = subprocess.run(
        [sys.executable, "-m", "bearl.cli", "train", "--mmd_sigm", "5"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "bearl train: error: unrecognized arguments: --mmd_sigm 5 (did you mean --mmd_sigma?); "
        "bearl train --help lists its flags"
    ]


# An abbreviation of a flag, at every entry point, and the flag argparse would have taken it
# for before (allow_abbrev=True): each is refused, naming that flag.
ABBREVIATIONS = {
    "train": (["train", "--mmd_sigm", "5"], "--mmd_sigma"),
    "train run setting": (["train", "--eval_ev", "100"], "--eval_every"),
    "train, another algorithm's setting": (
        ["train", "--algo", "IQL", "--expect", "0.8"],
        "--expectile",
    ),
    "original flag name": (["train", "--algo_nam", "BEAR"], "--algo_name"),
    "original flag name, = form": (["train", "--max_timestep=5"], "--max_timesteps"),
    "eval": (["eval", "run", "--episod", "3"], "--episodes"),
    "export": (["export", "run", "-o", "p.pt", "--determ"], "--deterministic"),
    "record": (["record", "run", "-o", "v.gif", "--max-st", "5"], "--max-steps"),
    "report": (["report", "runs", "--metr", "Overestimation"], "--metric"),
    "plot": (["plot", "runs", "--smoo", "3"], "--smooth"),
    "sweep": (["sweep", "spec.yaml", "--loc"], "--local"),
    "bench": (["bench", "--thread", "1"], "--threads"),
    "data make": (["data", "make", "hopper-medium", "--siz", "5"], "--size"),
    "data info": (["data", "info", "x.hdf5", "--js"], "--json"),
    "data convert": (
        ["data", "convert", "x.hdf5", "--to", "d4rl", "o.hdf5", "--overw"],
        "--overwrite",
    ),
    "data train-behavior": (["data", "train-behavior", "--ste", "5"], "--steps"),
    "data export-policies": (["data", "export-policies", "r", "--episo", "5"], "--episodes"),
}


@pytest.mark.parametrize("case", sorted(ABBREVIATIONS))
def test_an_abbreviated_flag_is_refused(case, capsys):
    from bearl.cli import _parse, build_parser

    argv, flag = ABBREVIATIONS[case]
    with pytest.raises(SystemExit) as e:
        _parse(build_parser(), argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "unrecognized arguments: " in err, err
    assert f"(did you mean {flag}?)" in err or f"(did you mean {flag} or" in err, err


def test_every_parser_refuses_abbreviations():
    """The root parser and every subcommand's, however it was made."""
    import argparse

    from bearl.cli import build_parser

    def walk(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    parsers = list(walk(build_parser()))
    assert len(parsers) >= 15
    assert [p.prog for p in parsers if p.allow_abbrev] == []


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
