"""Behaviour-policy training with SB3 SAC: snapshots, resume with the run's own settings,
policy export (tiny runs on Pendulum)."""

from __future__ import annotations

import json

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

    from bearl.data.behavior import export_policies

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


def test_resume_refuses_another_env(tmp_path):
    from bearl.data.behavior import BehaviorConfig, train_behavior

    out = tmp_path / "run"
    main(["data", "train-behavior", *TINY, "--steps", "200", "--out", str(out)])
    with pytest.raises(BearlError, match="trains Pendulum-v1, not Hopper-v5"):
        train_behavior(BehaviorConfig(env="Hopper-v5", out=str(out), steps=400), resume=True)


def test_tqc_trains_resumes_and_exports_as_sac_does(tmp_path):
    """--algo TQC (sb3-contrib): the same snapshots, resume from the run's own settings (TQC
    without --algo), and export; a resume that names the other algorithm is refused."""
    pytest.importorskip("sb3_contrib")
    from bearl.data.behavior import (
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
