"""The studies' own scripts (studies/*/*.py), on small cases computed by hand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def script(name: str):
    (path,) = STUDIES.rglob(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # (its dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


def test_regret_at_k_with_and_without_ties():
    v = script("validate")
    truth = np.array([10.0, 50.0, 30.0, 40.0])
    assert v.regret_at(truth, np.array([4.0, 3.0, 2.0, 1.0]), 1) == 40.0  # picks 10
    assert v.regret_at(truth, np.array([4.0, 3.0, 2.0, 1.0]), 2) == 0.0  # 10 or 50
    assert v.regret_at(truth, np.array([1.0, 2.0, 9.0, 3.0]), 1) == 20.0  # picks 30
    # all tied: k=1 draws one of four at random: 50 - mean = 50 - 32.5
    assert v.regret_at(truth, np.zeros(4), 1) == pytest.approx(17.5)
    # k=2 of four tied: E[max of two] = (10*0 + 30*1 + 40*2 + 50*3) / 6 = 260/6
    assert v.regret_at(truth, np.zeros(4), 2) == pytest.approx(50 - 260 / 6)
    # a rule without a score for a snapshot (BC's critic) cannot choose it
    assert v.regret_at(truth, np.array([1.0, np.nan, 3.0, 2.0]), 1) == 20.0


def write_run(folder: Path, name: str, algo: str, steps, truth, fqe, critic):
    run = folder / name
    run.mkdir(parents=True)
    train = {"algo": algo, "dataset": "hopper-medium"}
    (run / "params.json").write_text(json.dumps({"algorithm": algo, "train": train}))
    rows = "\n".join(
        f"{s},{t},{t / 10}" for s, t in zip(steps, truth)
    )  # NormalizedScore = truth / 10
    (run / "progress.csv").write_text(f"Step,DiscountedReturnStart,NormalizedScore\n{rows}\n")
    entries = [
        {"step": s, "fqe_return": f, "critic_return": c} for s, f, c in zip(steps, fqe, critic)
    ]
    (run / "ope.json").write_text(json.dumps({"snapshots": entries}))


def test_validation_table_of_two_runs(tmp_path):
    v = script("validate")
    write_run(tmp_path, "A", "TD3", [1, 2], [100.0, 50.0], [90.0, 60.0], [1e6, 2e6])
    write_run(tmp_path, "B", "BC", [1, 2], [200.0, 300.0], [210.0, 280.0], [None, None])
    points = v.load([tmp_path])
    assert len(points) == 4 and sum(p.final for p in points) == 2
    fqe = v.metrics(points, "fqe")
    assert fqe["spearman"] == pytest.approx(1.0) and fqe["regret@1"] == 0.0
    assert fqe["abs_error"] == pytest.approx((10 + 10 + 10 + 20) / 4)
    critic = v.metrics(points, "critic")  # only TD3's diverged critic: picks its step 2
    assert critic["n"] == 2 and critic["regret@1"] == pytest.approx(30.0 - 5.0)
    final = v.metrics(points, "final")  # step 2 of A or B at random: 30 - (5 + 30) / 2
    assert final["regret@1"] == pytest.approx(12.5) and np.isnan(final["abs_error"])
    text = v.table(points)
    assert "| hopper-medium | fqe | 4 | 1.00 | 0.0 |" in text
    assert "| mean of datasets | final |" in text


def test_the_packaged_study_context_is_what_the_runs_give():
    """bearl/data/study_200k.json (the end of `bearl train` quotes it) is the output of
    studies/bear_200k/quickstart_context.py over the committed runs."""
    from importlib import resources

    ctx = script("quickstart_context")
    packaged = json.loads(resources.files("bearl.data").joinpath("study_200k.json").read_text())
    assert packaged == json.loads(json.dumps(ctx.context()))


def test_the_end_of_a_run_puts_its_score_in_context():
    from bearl.cli import _study_context

    result = {"algo": "BEAR", "dataset": "hopper-medium", "steps": 15000, "final_score": 25.0}
    lines = _study_context(result)
    packaged = script("quickstart_context").context()["hopper-medium"]
    assert f"BC at 15,000 steps {packaged['BC']['at_quick']:.1f}" in lines[0]
    assert f"BEAR {packaged['BEAR']['last5_200k']:.1f}" in lines[0]
    assert "bearl train --dataset hopper-medium --steps 200000" in lines[1]
    assert _study_context({**result, "dataset": "my/data.hdf5"}) == []
