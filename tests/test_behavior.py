"""Behaviour-policy training with SB3 SAC: snapshots, resume with the run's own settings,
policy export (tiny runs on Pendulum)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bearl.cli import main
from bearl.errors import BearlError

pytest.importorskip("stable_baselines3")

TINY = [
    "--env",
    "Pendulum-v1",
    "--eval_every",
    "200",
    "--eval_episodes",
    "1",
    "--checkpoint_every",
    "200",
    "--learning_starts",
    "100",
    "--batch_size",
    "32",
    "--hidden",
    "16,16",
]


def test_train_resume_and_export(tmp_path):
    out = tmp_path / "run"
    assert main(["data", "train-behavior", *TINY, "--steps", "400", "--out", str(out)]) == 0
    rows = (out / "evaluations.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["200", "400"]
    assert (out / "snapshots" / "step_0000400.pt").exists()
    # resume with only --steps: env and the other settings come from the run itself
    assert main(["data", "train-behavior", "--out", str(out), "--steps", "600", "--resume"]) == 0
    rows = (out / "evaluations.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["200", "400", "600"]
    assert json.loads((out / "run.json").read_text())["env_id"] == "Pendulum-v1"

    from bearl.data.behavior_policies import export_policies

    entry = export_policies(out, tmp_path / "policies", episodes=1)
    assert {"medium", "expert", "medium-replay"} <= set(entry)
    assert (tmp_path / "policies" / "pendulum-expert.pt").exists()
    # the replay chain covers the run up to the medium snapshot, thinned to max_chain snapshots
    replay = tmp_path / "policies" / "pendulum-replay.pt"
    m_step = 600
    for max_chain in (1, 2, 100):
        export_policies(out, tmp_path / "policies", m_step, episodes=1, max_chain=max_chain)
        chain = torch.load(replay, weights_only=True)
        stride = {1: 600, 2: 400, 100: 200}[max_chain]
        assert chain["steps"] == list(range(0, m_step, stride))
        assert chain["transitions_per_snapshot"] == stride and chain["env_steps"] == m_step


def test_a_checkpoint_keeps_the_filled_rows_of_the_replay_buffer_and_resumes_them(tmp_path):
    """The checkpoint's replay buffer is the filled rows only (not SB3's whole preallocated
    buffer), and a resumed model gets exactly the buffer the run had."""
    from stable_baselines3 import SAC

    from bearl.data.behavior_policies import load_replay

    out = tmp_path / "run"
    args = [*TINY, "--steps", "200", "--out", str(out)]
    assert main(["data", "train-behavior", *args]) == 0
    ckpt = out / "checkpoint"
    assert (ckpt / "replay_buffer.npz").exists() and not (ckpt / "replay_buffer.pkl").exists()
    model = SAC.load(ckpt / "model.zip", device="cpu")
    buf = model.replay_buffer
    assert buf.buffer_size == 1_000_000 and buf.pos == 0  # a fresh, empty buffer of the run's size
    load_replay(buf, ckpt / "replay_buffer.npz")
    # SB3 calls the callback that writes the checkpoint at step 200 before it stores that
    # step's transition: 199 rows (SB3's own pickle, taken at the same moment, held the same)
    assert buf.pos == 199 and not buf.full
    with np.load(ckpt / "replay_buffer.npz") as z:
        assert z["observations"].shape[0] == 199  # the filled rows, not 1,000,000
    assert np.all(buf.observations[199:] == 0) and np.any(buf.observations[:199] != 0)
    # the rows are the env's: each next observation is the following row's observation
    # within an episode (Pendulum: 200-step episodes, so one episode here)
    assert np.array_equal(buf.next_observations[:198], buf.observations[1:199])
    # a checkpoint of the earlier format (SB3's pickle of the whole buffer) still resumes
    model.save_replay_buffer(ckpt / "replay_buffer.pkl")
    (ckpt / "replay_buffer.npz").unlink()
    assert main(["data", "train-behavior", "--out", str(out), "--steps", "400", "--resume"]) == 0
    assert (ckpt / "replay_buffer.npz").exists()  # and writes the compact one from then on
    again = SAC.load(ckpt / "model.zip", device="cpu")
    load_replay(again.replay_buffer, ckpt / "replay_buffer.npz")
    assert again.replay_buffer.pos == 398  # 199 + 199: each checkpoint misses its own step's row
    assert np.array_equal(again.replay_buffer.observations[:199], buf.observations[:199])


def test_resume_refuses_another_env(tmp_path):
    from bearl.data.behavior_policies import BehaviorConfig, train_behavior

    out = tmp_path / "run"
    main(["data", "train-behavior", *TINY, "--steps", "200", "--out", str(out)])
    with pytest.raises(BearlError, match="trains Pendulum-v1, not Hopper-v5"):
        train_behavior(BehaviorConfig(env="Hopper-v5", out=str(out), steps=400), resume=True)


def test_tqc_trains_resumes_and_exports_as_sac_does(tmp_path):
    """--algo TQC (sb3-contrib): the same snapshots, resume from the run's own settings (TQC
    without --algo), and export; a resume that names the other algorithm is refused."""
    pytest.importorskip("sb3_contrib")
    from bearl.data.behavior_policies import (
        BehaviorConfig,
        export_policies,
        sb3_actor_to_bearl,
        train_behavior,
    )
    from bearl.data.policy_io import load_policy_file

    out = tmp_path / "tqc"
    args = ["data", "train-behavior", *TINY, "--algo", "TQC", "--out", str(out)]
    assert main([*args, "--steps", "200"]) == 0
    assert json.loads((out / "run.json").read_text())["config"]["algo"] == "TQC"
    assert main(["data", "train-behavior", "--out", str(out), "--steps", "400", "--resume"]) == 0
    rows = (out / "evaluations.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["200", "400"]
    from sb3_contrib import TQC

    model = TQC.load(out / "checkpoint" / "model.zip", device="cpu")
    assert model.num_timesteps == 400  # the resumed run went on as TQC, from its checkpoint
    with pytest.raises(BearlError, match=r"trains TQC, not SAC \(--algo\)"):
        train_behavior(BehaviorConfig(env="Pendulum-v1", out=str(out), steps=600), resume=True)
    obs = torch.randn(5, 3)
    with torch.no_grad():  # TQC's actor is SAC's: the copy acts as the original does
        theirs = model.policy.actor(obs, deterministic=True)
        assert torch.allclose(sb3_actor_to_bearl(model).deterministic(obs), theirs, atol=1e-6)
    export_policies(out, tmp_path / "policies", episodes=1)
    actor, meta = load_policy_file(tmp_path / "policies" / "pendulum-expert.pt")
    assert actor.deterministic(obs).shape == (5, 1) and meta["env_id"] == "Pendulum-v1"
    assert meta["algo"] == "TQC"


def test_export_of_one_level_keeps_the_others(tmp_path, capsys):
    """--levels expert ships a stronger expert from another run: the medium and replay files
    and their policies.json entries stay those of the first run."""
    first, second, pols = tmp_path / "first", tmp_path / "second", tmp_path / "policies"
    for out, seed in ((first, "0"), (second, "1")):
        args = [*TINY, "--steps", "400", "--seed", seed, "--out", str(out)]
        assert main(["data", "train-behavior", *args]) == 0
    main(["data", "export-policies", str(first), "--out", str(pols), "--episodes", "1"])
    before = {f: (pols / f).read_bytes() for f in ("pendulum-medium.pt", "pendulum-replay.pt")}
    old = json.loads((pols / "policies.json").read_text())["pendulum"]
    args = ["data", "export-policies", str(second), "--out", str(pols), "--episodes", "1"]
    assert main([*args, "--levels", "expert", "--expert-step", "200"]) == 0
    new = json.loads((pols / "policies.json").read_text())["pendulum"]
    assert new["medium"] == old["medium"] and new["medium-replay"] == old["medium-replay"]
    assert new["expert"]["train_step"] == 200 and new["expert"]["algo"] == "SAC"
    assert {f: (pols / f).read_bytes() for f in before} == before
    capsys.readouterr()
    assert main([*args, "--levels", "expert,best"]) == 2
    assert capsys.readouterr().err.strip() == (
        "bearl: error: --levels expert,best: choose from medium, expert, medium-replay"
    )


def test_an_unknown_behaviour_algorithm_is_one_line(capsys):
    assert main(["data", "train-behavior", *TINY, "--algo", "PPO", "--steps", "10"]) == 2
    assert capsys.readouterr().err.strip() == (
        "bearl: error: --algo PPO: behaviour policies are trained with SAC or TQC"
    )


def test_candidates_screens_the_best_snapshots_over_more_episodes(tmp_path, capsys):
    """--candidates N measures the N snapshots with the best 10-episode returns over --episodes
    episodes each (the same starts for each) and ships the best of those as the expert."""
    import csv

    out, pols = tmp_path / "run", tmp_path / "policies"
    assert main(["data", "train-behavior", *TINY, "--steps", "600", "--out", str(out)]) == 0
    with open(out / "evaluations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    top2 = [int(r["step"]) for r in sorted(rows, key=lambda r: -float(r["stoch_mean"]))[:2]]
    args = ["data", "export-policies", str(out), "--out", str(pols), "--episodes", "3"]
    assert main([*args, "--levels", "expert", "--candidates", "2"]) == 0
    expert = json.loads((pols / "policies.json").read_text())["pendulum"]["expert"]
    screened = expert["screened"]
    assert [r["train_step"] for r in screened] == top2
    best = max(screened, key=lambda r: r["return_mean"])
    assert expert["train_step"] == best["train_step"]
    # the shipped numbers are the screen's own: the same episodes, measured once more
    assert (
        expert["return_mean"] == best["return_mean"] and expert["return_min"] <= best["return_mean"]
    )
    assert f"step {top2[0]:>8}" in capsys.readouterr().out
    # without --candidates the expert is the best 10-episode snapshot, not screened
    assert main([*args, "--levels", "expert"]) == 0
    expert = json.loads((pols / "policies.json").read_text())["pendulum"]["expert"]
    assert expert["train_step"] == top2[0] and "screened" not in expert
