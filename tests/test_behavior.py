"""Behaviour-policy training with SB3 SAC: snapshots, resume with the run's own settings,
policy export (tiny runs on Pendulum)."""

from __future__ import annotations

import json

import pytest

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


def test_resume_refuses_another_env(tmp_path):
    from bearl.data.behavior import BehaviorConfig, train_behavior

    out = tmp_path / "run"
    main(["data", "train-behavior", *TINY, "--steps", "200", "--out", str(out)])
    with pytest.raises(BearlError, match="trains Pendulum-v1, not Hopper-v5"):
        train_behavior(BehaviorConfig(env="Hopper-v5", out=str(out), steps=400), resume=True)
