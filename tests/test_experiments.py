"""Experiments: plots, result tables, sweeps (local and Ray), bootstrapping-error diagnostics."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bearl.cli import main
from bearl.config import resolve
from bearl.data.d4rl import write_d4rl
from bearl.errors import BearlError, ConfigError
from bearl.rollouts import EvalResult, run_episodes
from bearl.runs.plot import curves, plot_runs
from bearl.runs.report import report, summarize
from bearl.runs.sweep import (
    SweepProgress,
    estimate_left,
    expand,
    load_spec,
    run_in_subprocess,
    run_sweep,
    trial_status,
)
from bearl.training.diagnostics import (
    COLUMNS,
    BootstrapDiagnostics,
    action_mse,
    nearest_pair_distance,
    overestimation,
)
from bearl.training.loop import train

from conftest import make_random_dataset, run_folders_held

TINY = {
    "env": "Pendulum-v1",
    "eval_every": 20,
    "eval_episodes": 2,
    "actor_hidden": [16, 16],
    "critic_hidden": [16, 16],
    "vae_hidden": [16, 16],
    "warm_start_steps": 10,
    "batch_size": 16,
    "num_eval_samples": 4,
    "progress": False,
}


# -- hand-written run folders ---------------------------------------------------------------------
def write_run(
    root,
    name,
    algo,
    dataset,
    seed,
    scores,
    result=True,
    settings=None,
    every=10,
    algo_cfg=None,
    data=None,
):
    """A run folder like ``bearl train`` writes: progress rows every ``every`` (10) steps with
    NormalizedScore = ``scores`` (None: no reference scores, returns only); ``algo_cfg`` and
    ``data`` add to params.json's algo and dataset entries."""
    d = root / name
    d.mkdir(parents=True)
    train_cfg = {"algo": algo, "dataset": dataset, "seed": seed, "steps": every * len(scores)}
    variant = {
        "algorithm": algo,
        "train": {**train_cfg, **(settings or {})},
        "algo": {"gamma": 0.99, **(algo_cfg or {})},
        "env_name": "Pendulum-v1",
        "dataset": {"source": dataset, **(data or {})},
        "seed": seed,
    }
    (d / "variant.json").write_text(json.dumps(variant))
    (d / "params.json").write_text(json.dumps(variant))
    rows = []
    for i, s in enumerate(scores):
        ret = 10.0 * (s if s is not None else i + seed)
        row = {"Step": every * (i + 1), "AverageReturn": ret, "Overestimation": 1.0 + i}
        row["NormalizedScore"] = "" if s is None else s
        rows.append(row)
    with open(d / "progress.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if result:
        normalized = [s for s in scores if s is not None]
        returns = [r["AverageReturn"] for r in rows]
        best_i = int(np.argmax(normalized)) if normalized else int(np.argmax(returns))
        res = {
            "algo": algo,
            "dataset": dataset,
            "seed": seed,
            "steps": 10 * len(scores),
            "final_score": normalized[-1] if normalized else None,
            "final_return": returns[-1],
            "best_score": normalized[best_i] if normalized else returns[best_i],
            "best_step": 10 * (best_i + 1),
            "best_return": returns[best_i],
        }
        (d / "result.json").write_text(json.dumps(res))
    return d


@pytest.fixture
def runs(tmp_path):
    """BEAR on two datasets (3 + 2 seeds) and BC on one (2 seeds), in one parent folder."""
    root = tmp_path / "runs"
    write_run(root, "bear_a_0", "BEAR", "data/a.hdf5", 0, [10.0, 30.0, 20.0])
    write_run(root, "bear_a_1", "BEAR", "data/a.hdf5", 1, [20.0, 50.0, 40.0])
    write_run(root, "bear_a_2", "BEAR", "data/a.hdf5", 2, [30.0, 40.0, 60.0])
    write_run(root, "bear_b_0", "BEAR", "hopper-medium", 0, [1.0, 2.0, 3.0])
    write_run(root, "bear_b_1", "BEAR", "hopper-medium", 1, [5.0, 4.0, 3.0], result=False)
    write_run(root, "bc_a_0", "BC", "data/a.hdf5", 0, [5.0, 6.0, 7.0])
    write_run(root, "bc_a_1", "BC", "data/a.hdf5", 1, [7.0, 6.0, 5.0])
    return root


# -- plot --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["png", "svg"])
def test_plot_writes_png_and_svg(runs, tmp_path, ext):
    out = plot_runs([runs], tmp_path / f"fig.{ext}")
    data = out.read_bytes()
    assert out.suffix == f".{ext}"
    assert data.startswith(b"\x89PNG") if ext == "png" else b"<svg" in data


def test_plot_groups_runs_by_algorithm_and_dataset(runs):
    metric, cs = curves([runs], band="std")
    assert metric == "NormalizedScore"
    by_label = {c.label: c for c in cs}
    assert set(by_label) == {"BEAR / a.hdf5", "BEAR / hopper-medium", "BC / a.hdf5"}
    bear = by_label["BEAR / a.hdf5"]
    ys = np.array([[10, 30, 20], [20, 50, 40], [30, 40, 60]], dtype=float)
    assert bear.runs == 3 and list(bear.steps) == [10, 20, 30]
    np.testing.assert_allclose(bear.mean, ys.mean(0))
    np.testing.assert_allclose(bear.high - bear.mean, ys.std(0, ddof=1))  # the sample std
    _, mm = curves([runs / "bear_a_0", runs / "bear_a_1"], band="minmax", smooth=2)
    smoothed = np.array([[10, 20, 25], [20, 35, 45]], dtype=float)  # trailing mean of 2 rows
    np.testing.assert_allclose(mm[0].low, smoothed.min(0))
    np.testing.assert_allclose(mm[0].high, smoothed.max(0))


def test_plot_draws_one_panel_per_dataset(runs, tmp_path):
    _, cs = curves([runs])
    assert {(c.dataset, c.series) for c in cs} == {
        ("a.hdf5", "BEAR"),
        ("hopper-medium", "BEAR"),
        ("a.hdf5", "BC"),
    }

    def png_width(path):
        return int.from_bytes(path.read_bytes()[16:20], "big")

    one = plot_runs([runs / "bear_b_0", runs / "bear_b_1"], tmp_path / "one.png")
    two = plot_runs([runs], tmp_path / "two.png")  # two datasets side by side
    assert png_width(two) > png_width(one)


def test_plot_splits_groups_by_a_setting(tmp_path):
    write_run(tmp_path, "s10_0", "BEAR", "d", 0, [1.0], settings={"mmd_sigma": 10})
    write_run(tmp_path, "s10_1", "BEAR", "d", 1, [2.0], settings={"mmd_sigma": 10})
    write_run(tmp_path, "s20_0", "BEAR", "d", 0, [3.0], settings={"mmd_sigma": 20})
    assert len(curves([tmp_path])[1]) == 1
    labels = [c.label for c in curves([tmp_path], by=["mmd_sigma"])[1]]
    assert labels == ["BEAR / d (mmd_sigma=10)", "BEAR / d (mmd_sigma=20)"]


def test_plot_errors_are_clear(tmp_path, runs, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(BearlError, match="no bearl runs here"):
        plot_runs([tmp_path / "empty"], tmp_path / "x.png")
    with pytest.raises(BearlError, match="no such folder"):
        plot_runs([tmp_path / "missing"], tmp_path / "x.png")
    with pytest.raises(BearlError, match="no run has values of 'Nope'"):
        plot_runs([runs], tmp_path / "x.png", metric="Nope")
    with pytest.raises(BearlError, match=r"\.png, \.svg"):
        plot_runs([runs], tmp_path / "x.jpg")
    assert main(["plot", str(tmp_path / "empty"), "-o", str(tmp_path / "x.png")]) == 2
    assert "no bearl runs here" in capsys.readouterr().err


def test_plot_cli_metric_and_band(runs, tmp_path, capsys):
    out = tmp_path / "o.svg"
    assert main(["plot", str(runs), "-o", str(out), "--metric", "Overestimation"]) == 0
    assert out.exists()
    assert main(["plot", str(runs), "-o", str(out), "--band", "minmax", "--smooth", "2"]) == 0


def test_step_ticks_are_plain_numbers():
    from bearl.training.curve import step_label

    labels = [step_label(x) for x in (0, 500, 2500, 5000, 15_000, 50_000, 1_000_000, 1_500_000)]
    assert labels == ["0", "500", "2.5k", "5k", "15k", "50k", "1M", "1.5M"]


def svg_text(path) -> str:
    """The words of an SVG written with text as text (svg.fonttype none)."""
    return " ".join(re.findall(r">([^<>]+)</text>", path.read_text()))


def test_plot_marks_the_data_level_and_the_warm_start_and_speaks_of_std_only_over_seeds(
    tmp_path,
):
    """One seed: no std in the title; the data's level (params.json's dataset entry) as a
    line, BEAR's warm start end as a mark; steps in plain numbers; the same in progress.png."""
    import matplotlib

    from bearl.training.curve import plot_run

    level = {"normalized_return_mean": 36.14, "return_mean": 1153.0}
    kw = {"every": 5000, "algo_cfg": {"warm_start_steps": 3000}, "data": level}
    one = write_run(tmp_path / "one", "r0", "BEAR", "hopper-medium", 0, [5.0, 9.0, 20.0], **kw)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot_runs([one], tmp_path / "one.svg")
        text = svg_text(tmp_path / "one.svg")
        assert "std" not in text and "NormalizedScore" not in text  # a readable title
        assert "normalized score" in text
        assert "the data's level (36.1)" in text and "warm start ends (3k)" in text
        assert "10k" in text and "×10" not in text and "1e4" not in text
        plot_runs([one], tmp_path / "ret.svg", metric="AverageReturn")
        assert "the data's level (1153.0)" in svg_text(tmp_path / "ret.svg")
        plot_run(one, tmp_path / "progress.svg")
        text = svg_text(tmp_path / "progress.svg")
        assert "the data's level (36.1)" in text and "warm start ends (3k)" in text
        assert "std" not in text and "10k" in text
        write_run(tmp_path / "one", "r1", "BEAR", "hopper-medium", 1, [6.0, 8.0, 30.0], **kw)
        plot_runs([tmp_path / "one"], tmp_path / "two.svg")
        assert "normalized score: mean ± 1 std over seeds" in svg_text(tmp_path / "two.svg")
        old = write_run(tmp_path / "old", "r0", "BEAR", "hopper-medium", 0, [5.0, 9.0], every=5000)
        plot_runs([old], tmp_path / "old.svg")  # an older bearl's run: no level, no warm start
        assert "level" not in svg_text(tmp_path / "old.svg")
        assert "warm start" not in svg_text(tmp_path / "old.svg")


def test_plot_falls_back_to_returns_without_reference_scores(tmp_path):
    write_run(tmp_path, "r0", "TD3", "d", 0, [None, None])
    metric, cs = curves([tmp_path])
    assert metric == "AverageReturn" and len(cs) == 1


# -- report ------------------------------------------------------------------------------------
def test_report_numbers_match_a_direct_computation(runs):
    rows = {(r.algorithm, r.dataset): r for r in summarize([runs])}
    assert set(rows) == {("BEAR", "a.hdf5"), ("BEAR", "hopper-medium"), ("BC", "a.hdf5")}
    bear = rows["BEAR", "a.hdf5"]
    finals, bests = [20.0, 40.0, 60.0], [30.0, 50.0, 60.0]
    assert bear.seeds == 3 and bear.steps == "30" and bear.measure == "normalized"
    assert bear.final_mean == pytest.approx(np.mean(finals))
    assert bear.final_std == pytest.approx(np.std(finals, ddof=1))  # the sample std
    assert bear.best_mean == pytest.approx(np.mean(bests))
    assert bear.best_std == pytest.approx(np.std(bests, ddof=1))
    # one run of hopper-medium has no result.json: read from its progress.csv
    b = rows["BEAR", "hopper-medium"]
    assert b.seeds == 2 and b.running == 1 and rows["BC", "a.hdf5"].running == 0
    assert b.final_mean == pytest.approx(np.mean([3.0, 3.0])) and b.final_std == 0
    assert b.best_mean == pytest.approx(np.mean([3.0, 5.0]))


def test_report_markdown_and_csv(runs):
    md = report([runs], "markdown")
    lines = md.splitlines()
    assert lines[0].startswith("| algorithm | dataset | seeds | steps | final score")
    bear = next(line for line in lines if line.startswith("| BEAR | a.hdf5"))
    assert f"{np.mean([20, 40, 60]):.1f} ± {np.std([20, 40, 60], ddof=1):.1f}" in bear
    # a seed without result.json is counted with its numbers so far, and said to be running
    assert any(line.startswith("| BEAR | hopper-medium | 2 (1 running) |") for line in lines)
    assert "| BEAR | a.hdf5 | 3 |" in md and any(line.startswith("Running: ") for line in lines)
    write_run(runs, "td3_a_0", "TD3", "data/a.hdf5", 0, [1.0, 3.0, 2.0])
    one_seed = next(line for line in report([runs]).splitlines() if line.startswith("| TD3"))
    assert one_seed.endswith("| 2.0 | 3.0 |")  # a single seed: its value, no "± 0.0"
    table = list(csv.DictReader(io.StringIO(report([runs], "csv"))))
    assert len(table) == 4
    bc = next(r for r in table if r["algorithm"] == "BC")
    assert float(bc["final_mean"]) == pytest.approx(6.0)
    assert float(bc["best_std"]) == pytest.approx(np.std([7.0, 7.0], ddof=1))
    assert bc["seeds"] == "2" and bc["measure"] == "normalized" and bc["running"] == "0"


def test_report_uses_returns_without_reference_scores(tmp_path):
    write_run(tmp_path, "r0", "TD3", "d", 0, [None, None])
    write_run(tmp_path, "r1", "TD3", "d", 1, [None, None])
    (row,) = summarize([tmp_path])
    assert row.measure == "return"
    assert row.final_mean == pytest.approx(np.mean([10.0, 20.0]))  # last returns 10*(1+seed)
    assert "(return)" in report([tmp_path])


def test_report_of_another_metric(runs, tmp_path, capsys):
    # write_run logs Overestimation = 1 + row index, so final = max = number of rows
    rows = {(r.algorithm, r.dataset): r for r in summarize([runs], metric="Overestimation")}
    bear = rows["BEAR", "a.hdf5"]
    assert bear.measure == "Overestimation" and bear.seeds == 3
    assert bear.final_mean == pytest.approx(3.0) and bear.best_mean == pytest.approx(3.0)
    write_run(tmp_path, "bc0", "BC", "d", 0, [1.0, 2.0])  # a run without the metric is left out
    with open(tmp_path / "bc0" / "progress.csv") as f:
        text = f.read().replace("Overestimation", "Other")
    (tmp_path / "bc0" / "progress.csv").write_text(text)
    write_run(tmp_path, "td0", "TD3", "d", 0, [1.0, 2.0, 5.0])
    (row,) = summarize([tmp_path], metric="Overestimation")
    assert row.algorithm == "TD3" and row.final_mean == pytest.approx(3.0)
    assert "skipping" in capsys.readouterr().err
    md = report([tmp_path], metric="Overestimation")
    assert "| final Overestimation | max Overestimation |" in md
    with pytest.raises(BearlError, match="no run has values of 'Nope'"):
        summarize([runs], metric="Nope")
    assert main(["report", str(runs), "--metric", "Overestimation", "--format", "csv"]) == 0
    assert ",Overestimation," in capsys.readouterr().out


def test_report_shows_small_metrics_with_enough_places(tmp_path):
    """A metric near 0.01 keeps three significant digits (not "0.0 ± 0.0"); scores keep one
    place; a table's places follow its largest value."""
    for seed, scale in [(0, 1.0), (1, 1.5)]:
        write_run(tmp_path, f"r{seed}", "TD3", "d", seed, [1.0, 2.0])
        path = tmp_path / f"r{seed}" / "progress.csv"
        with open(path) as f:
            rows = list(csv.DictReader(f))
        for i, row in enumerate(rows):
            row["NearestActionDistance"] = 0.0123 * scale * (i + 1)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    line = report([tmp_path], metric="NearestActionDistance").splitlines()[2]
    finals = [0.0246, 0.0369]  # the last rows of the two seeds
    assert f"| {np.mean(finals):.4f} ± {np.std(finals, ddof=1):.4f} |" in line
    assert report([tmp_path]).splitlines()[2].endswith("| 2.0 ± 0.0 | 2.0 ± 0.0 |")
    assert report([tmp_path], metric="Overestimation").splitlines()[2].endswith("| 2.00 ± 0.00 |")


def test_report_cli(runs, tmp_path, capsys):
    assert main(["report", str(runs), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("algorithm,dataset,seeds,steps,measure")
    out = tmp_path / "table.md"
    assert main(["report", str(runs / "bear_a_0"), str(runs / "bc_a_0"), "-o", str(out)]) == 0
    assert out.read_text().count("\n| B") == 2
    assert main(["report", str(tmp_path / "nothing")]) == 2


# -- diagnostics -------------------------------------------------------------------------------
def test_results_page_runs_table_counts_the_plan_and_the_repaired_peer_apart(tmp_path):
    """update_results.py (hopper suite): finished seeds per cell; runs of d3rlpy's repaired BEAR
    (peer_bear.py --repaired) get their own row and do not count towards the plan."""
    mod = _experiment_script("update_results")
    root = tmp_path / "suite"
    write_run(root, "BEAR_a_seed0", "BEAR", "a", 0, [1.0])
    write_run(root, "BEAR_a_seed2", "BEAR", "a", 2, [1.0])
    write_run(root, "BEAR_b_seed1", "BEAR", "b", 1, [1.0], result=False)
    write_run(root, "BEAR-d3rlpy_b_seed0", "BEAR-d3rlpy", "b", 0, [1.0])
    write_run(root, "BEAR-d3rlpy-repaired_a_seed0", "BEAR-d3rlpy-repaired", "a", 0, [1.0])
    table = mod.runs_table(mod.finished(root), ["BEAR", "BEAR-d3rlpy"], ["a", "b"], 3)
    assert "| BEAR | 0, 2 | – |" in table
    assert "| BEAR-d3rlpy | – | 0 |" in table
    assert "| BEAR-d3rlpy-repaired | 0 | – |" in table
    assert "3 of 12 runs finished" in table
    assert "also 1 of BEAR-d3rlpy-repaired" in table
    planned = [d for d in mod.finished(root) if "repaired" not in d.name]
    plain = mod.runs_table(planned, ["BEAR", "BEAR-d3rlpy"], ["a", "b"], 3)
    assert "repaired" not in plain


def test_results_page_modern_algorithms_come_from_the_spec_in_order(tmp_path):
    """update_results.py (hopper suite) --modern: a spec's algorithms come from ``algos`` or its
    ``parts`` in order (the rows of its table of finished seeds; its scores are ``bearl
    report``'s, checked against the page by tests/test_studies.py)."""
    mod = _experiment_script("update_results")
    spec = {"algos": ["BEAR"], "parts": [{"algos": ["TD3BC", "IQL"]}, {"algos": ["CQL", "IQL"]}]}
    assert mod.spec_algos(spec) == ["BEAR", "TD3BC", "IQL", "CQL"]
    root = tmp_path / "suite"
    write_run(root, "CQL_b_seed0", "CQL", "b", 0, [5.0, 4.0])
    write_run(root, "CQL_b_seed1", "CQL", "b", 1, [9.0], result=False)  # unfinished: left out
    table = mod.runs_table(mod.finished(root), mod.spec_algos(spec), ["a", "b"], 3)
    assert table.splitlines()[2:6] == [
        "| BEAR | – | – |",
        "| TD3BC | – | – |",
        "| IQL | – | – |",
        "| CQL | – | 0 |",
    ]


def test_overestimation_and_distances_against_direct_computations():
    q = torch.tensor([1.0, 3.0, 8.0])
    g = np.array([0.5, 1.5, 1.0])
    out = overestimation(q, g)
    assert out["QEstimateStart"] == pytest.approx(4.0)
    assert out["DiscountedReturnStart"] == pytest.approx(1.0)
    assert out["Overestimation"] == pytest.approx(3.0)
    assert overestimation(None, g) == {
        "QEstimateStart": None,
        "DiscountedReturnStart": pytest.approx(1.0),
        "Overestimation": None,
    }
    gen = torch.Generator().manual_seed(0)
    pi, a = torch.rand(7, 2, generator=gen), torch.rand(7, 2, generator=gen)
    assert action_mse(pi, a) == pytest.approx(float(((pi - a) ** 2).mean()))
    s, rs, ra = torch.rand(7, 3, generator=gen), torch.rand(11, 3, generator=gen), torch.rand(11, 2)
    direct = np.mean(
        [
            min(np.linalg.norm(np.r_[rs[j], ra[j]] - np.r_[s[i], pi[i]]) for j in range(11))
            for i in range(7)
        ]
    )
    assert nearest_pair_distance(s, pi, rs, ra, chunk=3) == pytest.approx(direct, rel=1e-5)


class FakeAlgo:
    """pi(s) = tanh(first action-dims of s) (stochastic and deterministic alike);
    Q(s, a) = sum(s) + sum(a)."""

    def __init__(self, act_dim, with_q=True):
        self.act_dim, self.with_q = act_dim, with_q

    def act(self, obs, deterministic=False):
        return torch.tanh(obs[:, : self.act_dim])

    def q_value(self, obs, act):
        return obs.sum(-1) + act.sum(-1) if self.with_q else None


def test_bootstrap_diagnostics_columns():
    ds = make_random_dataset(n=300)  # actions in [-2, 2], Pendulum's bounds
    diag = BootstrapDiagnostics(
        ds, gamma=0.9, action_low=np.array([-2.0]), action_high=np.array([2.0]), probe_size=50
    )
    assert len(diag.probe_obs) == 50 and len(diag.ref_obs) == 300  # the whole (small) dataset
    assert float(diag.probe_act.abs().max()) <= 1.0
    s0 = np.array([[0.1, 0.2, 0.3], [-1.0, 0.5, 0.0]])
    result = EvalResult(
        np.zeros(2), np.ones(2), discounted_returns=np.array([-1.0, -3.0]), start_obs=s0
    )
    out = diag(FakeAlgo(1), result)
    assert set(out) == set(COLUMNS)
    s = torch.as_tensor(s0, dtype=torch.float32)
    q = (s.sum(-1) + torch.tanh(s[:, :1]).sum(-1)).mean()
    assert out["QEstimateStart"] == pytest.approx(float(q), rel=1e-6)
    assert out["Overestimation"] == pytest.approx(float(q) + 2.0, rel=1e-6)
    # the probe rows, found again in the dataset: compare with a direct computation
    obs = torch.as_tensor(ds.observations)
    rows = [int(torch.nonzero((obs == p).all(1))[0]) for p in diag.probe_obs]
    data_act = torch.as_tensor(ds.actions[rows]) / 2.0
    pi = torch.tanh(diag.probe_obs[:, :1])
    assert out["ActionMSE"] == pytest.approx(float(((pi - data_act) ** 2).mean()), rel=1e-5)
    ref = torch.cat([obs, torch.as_tensor(ds.actions) / 2.0], 1)
    nearest = torch.cdist(torch.cat([diag.probe_obs, pi], 1), ref).min(1).values.mean()
    assert out["NearestActionDistance"] == pytest.approx(float(nearest), rel=1e-5)
    assert out["NearestActionDistance"] <= np.sqrt(out["ActionMSE"]) + 1e-6  # own row included
    no_q = diag(FakeAlgo(1, with_q=False), result)
    assert no_q["QEstimateStart"] is None and no_q["Overestimation"] is None
    assert no_q["DiscountedReturnStart"] == pytest.approx(-2.0)


def test_q_value_is_the_ensemble_min_and_none_without_a_critic():
    from bearl.algos.bc import BC
    from bearl.algos.bear import BEAR

    small = {k: TINY[k] for k in ("actor_hidden", "critic_hidden", "vae_hidden")}
    _, bear_cfg = resolve({"algo": "BEAR", **small})
    bear = BEAR(bear_cfg, 3, 1)
    obs, act = torch.randn(5, 3), torch.rand(5, 1) * 2 - 1
    with torch.no_grad():
        direct = bear.critic(obs, act).min(0).values
    torch.testing.assert_close(bear.q_value(obs, act), direct)
    assert bear.q_value(obs, act).shape == (5,)
    _, bc_cfg = resolve({"algo": "BC"})
    assert BC(bc_cfg, 3, 1).q_value(obs, act) is None


def test_run_episodes_returns_discounted_returns_and_start_states():
    def policy(obs):
        return np.clip(obs[:, :1], -2, 2)

    res = run_episodes(policy, "Pendulum-v1", 2, seed=5, gamma=0.9)
    from bearl.envs import make_env

    for i in range(2):
        env = make_env("Pendulum-v1")
        o, _ = env.reset(seed=5 + i)
        np.testing.assert_allclose(res.start_obs[i], o)
        g, t, done = 0.0, 0, False
        while not done:
            o, r, term, trunc, _ = env.step(policy(o[None])[0])
            g += 0.9**t * r
            t += 1
            done = term or trunc
        assert res.discounted_returns[i] == pytest.approx(g)
    assert set(res.summary()) >= {"AverageReturn", "StdReturn", "MedianReturn"}


def test_short_runs_log_the_diagnostics_and_plot_them(tmp_path):
    for algo in ("BEAR", "BC"):
        cfg, algo_cfg = resolve(
            {**TINY, "algo": algo, "dataset": "memory", "steps": 40, "log_dir": str(tmp_path)}
            | {"run_name": algo}
        )
        train(cfg, algo_cfg, dataset=make_random_dataset())
    with open(tmp_path / "BEAR" / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(COLUMNS) <= set(rows[0]) and len(rows) == 2
    for r in rows:
        for c in COLUMNS:
            assert np.isfinite(float(r[c])), c
        over = float(r["QEstimateStart"]) - float(r["DiscountedReturnStart"])
        assert float(r["Overestimation"]) == pytest.approx(over, abs=1e-3)
    with open(tmp_path / "BC" / "progress.csv", newline="") as f:
        bc = list(csv.DictReader(f))
    assert bc[0]["QEstimateStart"] == "" and bc[0]["Overestimation"] == ""
    assert float(bc[0]["ActionMSE"]) > 0 and float(bc[0]["DiscountedReturnStart"]) < 0
    out = tmp_path / "over.png"
    assert main(["plot", str(tmp_path), "--metric", "Overestimation", "-o", str(out)]) == 0
    assert out.exists()


# -- sweep -------------------------------------------------------------------------------------
def test_spec_expansion_and_names(tmp_path):
    spec = load_spec(
        {
            "log_dir": str(tmp_path / "sw"),
            "algos": ["bear", "BC"],
            "datasets": ["hopper-medium", "data/x.hdf5"],
            "num_seeds": 2,
            "grid": {"mmd_sigma": [10, 20.5], "actor_hidden": [[32, 32]]},
            "base": {"steps": 100, "eval_freq": 10},
        }
    )
    trials = expand(spec)
    # BEAR: 2 datasets x 2 sigmas x 2 seeds; BC has no mmd_sigma: 2 datasets x 2 seeds
    assert len(trials) == 8 + 4
    names = [t.name for t in trials]
    assert len(set(names)) == len(names)
    # seed by seed: all six combinations with seed 0 first, in dataset, algorithm, grid order
    assert [t.values["seed"] for t in trials] == [0] * 6 + [1] * 6
    assert names[:4] == [
        "BEAR_hopper-medium_actor_hidden=32-32_mmd_sigma=10_seed0",
        "BEAR_hopper-medium_actor_hidden=32-32_mmd_sigma=20.5_seed0",
        "BC_hopper-medium_actor_hidden=32-32_seed0",
        "BEAR_x_actor_hidden=32-32_mmd_sigma=10_seed0",
    ]
    assert "BC_x_actor_hidden=32-32_seed1" in names
    t = trials[0]
    assert t.run_dir == tmp_path / "sw" / t.name
    assert t.values["eval_every"] == 10 and t.values["steps"] == 100
    assert t.values["mmd_sigma"] == 10 and t.values["progress"] is False
    bc = next(t for t in trials if t.algo == "BC")
    assert "mmd_sigma" not in bc.values
    assert [t.name for t in expand(spec)] == names  # deterministic


def test_spec_order_parts_runs_each_part_before_the_next(tmp_path):
    """``order: parts``: the first part's whole table (seed by seed) before the second's first
    trial; the default interleaves the parts seed by seed."""
    spec = {
        "log_dir": str(tmp_path / "sw"),
        "datasets": ["hopper-medium"],
        "num_seeds": 2,
        "parts": [{"algos": ["TD3", "BC"]}, {"algos": ["CQL"]}],
    }
    by_seed = [t.name for t in expand(load_spec(spec))]
    assert by_seed == [
        "TD3_hopper-medium_seed0", "BC_hopper-medium_seed0", "CQL_hopper-medium_seed0",
        "TD3_hopper-medium_seed1", "BC_hopper-medium_seed1", "CQL_hopper-medium_seed1",
    ]  # fmt: skip
    by_part = [t.name for t in expand(load_spec({**spec, "order": "parts"}))]
    assert by_part == [
        "TD3_hopper-medium_seed0", "BC_hopper-medium_seed0", "TD3_hopper-medium_seed1",
        "BC_hopper-medium_seed1", "CQL_hopper-medium_seed0", "CQL_hopper-medium_seed1",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="order must be one of seeds, parts, got 'algos'"):
        load_spec({**spec, "order": "algos"})
    with pytest.raises(ConfigError, match="'order' orders the trials of parts"):
        load_spec({"datasets": ["d"], "algos": ["BC"], "order": "parts"})


def test_spec_parts_set_their_own_seeds_and_settings_over_the_top(tmp_path):
    """A spec's parts: each takes what it does not set from the top (base and grid merged over
    it); the trials are their union, seed by seed; a part cannot remake another's trial with
    other settings."""
    spec = load_spec(
        {
            "log_dir": str(tmp_path / "sw"),
            "datasets": ["hopper-medium", "walker2d-medium"],
            "base": {"steps": 100, "eval_every": 10},
            "parts": [
                {"algos": ["BEAR"], "seeds": [1, 2], "base": {"precision": "bf16"}},
                {"algos": ["BC"], "num_seeds": 1},
                {"algos": ["TD3"], "datasets": ["hopper-medium"], "base": {"steps": 50}},
            ],
        },
        "stage2.yaml",
    )
    trials = expand(spec)
    by_name = {t.name: t for t in trials}
    assert len(trials) == 4 + 2 + 1
    assert [t.values["seed"] for t in trials] == [0, 0, 0, 1, 1, 2, 2]
    bear = by_name["BEAR_walker2d-medium_seed2"]
    assert bear.values["precision"] == "bf16" and bear.values["steps"] == 100
    assert "precision" not in by_name["BC_hopper-medium_seed0"].values
    assert by_name["TD3_hopper-medium_seed0"].values["steps"] == 50
    assert all(t.run_dir.parent == tmp_path / "sw" for t in trials)
    with pytest.raises(ConfigError, match=r"parts\[1\]: its trial BEAR_hopper-medium_seed1 is"):
        expand(
            load_spec(
                {
                    "datasets": ["hopper-medium"],
                    "parts": [
                        {"algos": ["BEAR"], "seeds": [1]},
                        {"algos": ["BEAR"], "seeds": [1], "base": {"precision": "bf16"}},
                    ],
                }
            )
        )
    with pytest.raises(ConfigError, match=r"spec: parts\[0\]: unknown key\(s\) log_dir"):
        load_spec({"datasets": ["d"], "parts": [{"algos": ["BEAR"], "log_dir": "x"}]})
    with pytest.raises(ConfigError, match="'parts' must be a non-empty list"):
        load_spec({"datasets": ["d"], "parts": []})


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"algos": ["BEAR"], "datasets": ["d"], "gird": {}}, "unknown key"),
        ({"algos": [], "datasets": ["d"]}, "'algos' must be a non-empty list"),
        ({"algos": ["BEAR"], "datasets": ["d"], "base": {"seed": 1}}, "may not set seed"),
        ({"algos": ["BEAR"], "datasets": ["d"], "grid": {"mmd_sigma": 3}}, "must be a non-empty"),
        ({"algos": ["BEAR"], "datasets": ["d"], "seeds": [0], "num_seeds": 2}, "either"),
    ],
)
def test_bad_specs_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        load_spec(bad)


def test_bad_settings_fail_before_anything_runs():
    with pytest.raises(ConfigError, match="unknown setting"):
        expand(load_spec({"algos": ["BEAR"], "datasets": ["d"], "grid": {"mmd_sigmaa": [1]}}))
    with pytest.raises(ConfigError, match="expected int"):
        expand(load_spec({"algos": ["BEAR"], "datasets": ["d"], "base": {"steps": "many"}}))
    with pytest.raises(ConfigError, match="unknown algorithm"):
        expand(load_spec({"algos": ["PPO"], "datasets": ["d"]}))
    with pytest.raises(ConfigError, match="none of BC has the setting mmd_sigma"):
        expand(load_spec({"algos": ["BC"], "datasets": ["d"], "grid": {"mmd_sigma": [1]}}))
    with pytest.raises(ConfigError, match="share the folder BEAR_x_seed0"):
        expand(load_spec({"algos": ["BEAR"], "datasets": ["a/x.hdf5", "b/x.hdf5"]}))


def test_finished_trials_are_skipped(tmp_path):
    spec = load_spec(
        {"log_dir": str(tmp_path), "algos": ["TD3"], "datasets": ["d"], "seeds": [0, 1]}
        | {"base": {"steps": 50}}
    )
    t0, t1 = expand(spec)
    t0.run_dir.mkdir()
    (t0.run_dir / "result.json").write_text(json.dumps({"steps": 50, "best_score": 12.5}))
    assert trial_status(t0) == ("done", "best 12.50")
    assert trial_status(t1)[0] == "new"
    out = io.StringIO()
    run_sweep(spec, dry_run=True, out=out)
    assert "done     TD3_d_seed0" in out.getvalue() and "new      TD3_d_seed1" in out.getvalue()


def test_dry_run_estimates_what_is_left_from_measured_paces(tmp_path):
    """bearl sweep --dry-run: each unfinished trial's core-hours left, at its own pace once it
    has run, else at the pace of finished trials of its algorithm and precision (those on this
    CPU first), else at that of such trials in progress, else none."""
    from bearl.perf import machine

    spec = load_spec(
        {"log_dir": str(tmp_path), "algos": ["TD3", "BC", "BEAR"], "datasets": ["d"]}
        | {"seeds": [0, 1, 2, 3], "base": {"steps": 7200}}
    )
    trials = {t.name: t for t in expand(spec)}
    here = machine()

    def finish(name: str, wall: float, cpu: dict) -> None:
        d = trials[name].run_dir
        d.mkdir()
        (d / "result.json").write_text(
            json.dumps({"steps": 7200, "wall_time": wall, "machine": cpu})
        )

    def in_progress(name: str, step: int, wall: float) -> None:
        d = trials[name].run_dir
        d.mkdir()
        (d / "progress.csv").write_text(f"Step,WallTime\n{step // 2},{wall / 2}\n{step},{wall}\n")
        (d / "checkpoint.pt").write_bytes(b"")

    finish("TD3_d_seed0", 3600, here)  # 2 steps/s on this CPU
    finish("TD3_d_seed1", 360, {**here, "model": -1})  # 20 steps/s on another CPU
    in_progress("TD3_d_seed2", 1800, 1800)  # its own pace: 1 step/s, 5400 steps left
    finish("BC_d_seed0", 720, {**here, "model": -1})  # only another CPU's: 10 steps/s
    in_progress("BEAR_d_seed0", 3600, 900)  # 4 steps/s
    # another spec's finished runs in the same folder (an earlier stage) count by their
    # params.json: BCQ's fp32 run does, its bf16 one is another pace, a folder without
    # params.json is nobody's
    for name, precision, wall in (("fp32", "fp32", 1800), ("bf16", "bf16", 100), ("x", "", 1)):
        d = tmp_path / f"BCQ_d_{name}"
        d.mkdir()
        (d / "result.json").write_text(json.dumps({"steps": 7200, "wall_time": wall}))
        if precision:
            params = {"algorithm": "BCQ", "algo": {}, "train": {"precision": precision}}
            (d / "params.json").write_text(json.dumps(params))
    bcq = {"log_dir": str(tmp_path), "algos": ["BCQ"], "datasets": ["d"], "base": {"steps": 7200}}
    trials |= {t.name: t for t in expand(load_spec(bcq))}
    status = {t.name: trial_status(t) for t in trials.values()}
    left = estimate_left(list(trials.values()), status)

    assert left["BCQ_d_seed0"][0] == pytest.approx(0.5)  # 4 steps/s, the fp32 run's pace
    assert "1 run finished on other CPUs" in left["BCQ_d_seed0"][1]
    for n in [n for n in trials if n.startswith("BCQ")]:
        del trials[n], left[n]
    assert set(left) == set(trials) - {"TD3_d_seed0", "TD3_d_seed1", "BC_d_seed0"}
    assert left["TD3_d_seed2"][0] == pytest.approx(1.5)
    assert left["TD3_d_seed3"][0] == pytest.approx(1.0)  # this CPU's run, not the mean of both
    assert "1 run finished on this CPU" in left["TD3_d_seed3"][1]
    assert left["BC_d_seed1"][0] == pytest.approx(0.2)
    assert "on other CPUs" in left["BC_d_seed1"][1]
    assert left["BEAR_d_seed0"][0] == pytest.approx(0.25)
    assert left["BEAR_d_seed1"][0] == pytest.approx(0.5)  # the run in progress: 7200 at 4/s
    assert "1 run in progress" in left["BEAR_d_seed1"][1]

    out = io.StringIO()
    run_sweep(spec, dry_run=True, out=out)
    text = out.getvalue()
    assert re.search(r"resume +TD3_d_seed2 +from its checkpoint; ~1.50 core-h left \(its own", text)
    assert re.search(r"new +BEAR_d_seed1 +~0.50 core-h left \(1 run in progress, 4.0 s", text)
    total = sum(e[0] for e in left.values())
    assert total == pytest.approx(1.5 + 1.0 + 3 * 0.2 + 0.25 + 3 * 0.5)
    assert f"left: ~{total:.1f} core-hours in 9 unfinished trials" in text


def test_a_trials_own_pace_is_its_recent_one(tmp_path):
    """A trial's own pace is the median over its last four progress-row intervals: a run that
    was slow for its first rows (another machine, denormal-slowed updates) and fast now is
    estimated at its pace now, and one paused interval among them does not count; with fewer
    rows, the intervals it has, the first from its start."""
    spec = load_spec({"log_dir": str(tmp_path), "algos": ["TD3"], "datasets": ["d"]} | {
        "seeds": [0, 1], "base": {"steps": 10000}})  # fmt: skip
    trials = expand(spec)
    rows = [  # (step, wall): 1 step/s to 4000, then 10 steps/s with a 1000 s pause
        [(s, s) for s in (1000, 2000, 3000, 4000)]
        + [(5000, 4100), (6000, 4200), (7000, 5300), (8000, 5400)],
        [(1000, 500), (2000, 1500)],  # 2 steps/s, then 1 step/s
    ]
    for t, rs in zip(trials, rows):
        t.run_dir.mkdir()
        lines = "".join(f"{a},{b}\n" for a, b in rs)
        (t.run_dir / "progress.csv").write_text("Step,WallTime\n" + lines)
        (t.run_dir / "checkpoint.pt").write_bytes(b"")
    status = {t.name: trial_status(t) for t in trials}
    left = estimate_left(trials, status)
    assert left[trials[0].name][0] == pytest.approx(2000 / 10 / 3600)
    assert left[trials[0].name][1] == "its own recent pace, 10.0 steps/s"
    assert left[trials[1].name][0] == pytest.approx(8000 / 1.5 / 3600)


def test_sweep_dry_run_cli(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"log_dir: {tmp_path / 'sw'}\nalgos: [BEAR, TD3]\ndatasets: [hopper-medium]\n"
        "seeds: [0, 1, 2]\ngrid:\n  tau: [0.005, 0.01]\n"
    )
    assert main(["sweep", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "12 trials" in out and "BEAR_hopper-medium_tau=0.01_seed2" in out
    assert not (tmp_path / "sw").exists()


def test_sweep_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    spec = {"log_dir": str(tmp_path), "algos": ["BEAR"], "datasets": ["d"]}
    with pytest.raises(BearlError, match=r"pip install 'bearl\[ray\]'"):
        run_sweep(spec, out=io.StringIO())


def _tiny_spec(tmp_path, steps=20, seeds=(0, 1)):
    data = tmp_path / "pendulum.hdf5"
    if not data.exists():
        write_d4rl(make_random_dataset(), data)
    return {
        "log_dir": str(tmp_path / "sweep"),
        "algos": ["BEAR"],
        "datasets": [str(data)],
        "seeds": list(seeds),
        "base": {**TINY, "steps": steps, "eval_every": 10},
    }


def test_local_sweep_runs_skips_and_resumes(tmp_path):
    out = io.StringIO()
    summary = run_sweep(_tiny_spec(tmp_path), local=True, out=out)
    assert summary["counts"]["done"] == 2 and not summary["errors"]
    text = out.getvalue()
    assert "2/2 done" in text and "best so far" in text
    names = ["BEAR_pendulum_seed0", "BEAR_pendulum_seed1"]
    assert summary["trials"] == names
    for n in names:
        result = json.loads((tmp_path / "sweep" / n / "result.json").read_text())
        assert result["steps"] == 20 and result["seed"] == int(n[-1])
    # again: nothing to run
    stamp = (tmp_path / "sweep" / names[0] / "result.json").stat().st_mtime_ns
    out = io.StringIO()
    run_sweep(_tiny_spec(tmp_path), local=True, out=out)
    assert "0 to run" in out.getvalue()
    assert (tmp_path / "sweep" / names[0] / "result.json").stat().st_mtime_ns == stamp
    # more steps: the trials continue from their checkpoints
    run_sweep(_tiny_spec(tmp_path, steps=30), local=True, out=io.StringIO())
    with open(tmp_path / "sweep" / names[0] / "progress.csv", newline="") as f:
        assert [int(r["Step"]) for r in csv.DictReader(f)] == [10, 20, 30]
    # other settings in the same folders: a conflict, nothing is overwritten
    spec = _tiny_spec(tmp_path, steps=30)
    spec["base"]["batch_size"] = 8
    summary = run_sweep(spec, local=True, out=io.StringIO())
    assert summary["counts"]["conflict"] == 2
    assert "batch_size" in next(iter(summary["errors"].values()))


@pytest.mark.parametrize("on_ray", [False, True])
def test_a_sweep_records_its_log_dir_as_written(tmp_path, monkeypatch, on_ray):
    """A relative log_dir stays relative in the trials' params.json (no machine path in
    committed run folders), on --local and in Ray workers alike."""
    if on_ray:
        pytest.importorskip("ray")
    spec = _tiny_spec(tmp_path, seeds=(0,))
    spec["log_dir"] = "studies/x/runs"
    monkeypatch.chdir(tmp_path)
    summary = run_sweep(spec, local=not on_ray, out=io.StringIO())
    assert summary["counts"]["done"] == 1, summary
    params = json.loads((tmp_path / "studies/x/runs/BEAR_pendulum_seed0/params.json").read_text())
    assert params["train"]["log_dir"] == "studies/x/runs"


def test_bf16_trials_wait_for_a_cpu_with_native_bf16(tmp_path, monkeypatch, capsys):
    """Where bf16 matmuls are converted (several times slower than fp32), a sweep defers its
    bf16 trials, runs the rest, and exits 3; --converted-bf16 runs them all the same."""
    import bearl.perf

    spec = _tiny_spec(tmp_path, seeds=(0,))
    data = spec.pop("datasets")
    spec.pop("algos")
    spec["datasets"] = data
    spec["parts"] = [
        {"algos": ["BEAR"], "base": {"precision": "bf16"}},
        {"algos": ["TD3"]},
    ]
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    monkeypatch.setattr(bearl.perf, "native_bf16", lambda device="cpu": False)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert re.search(
        r"deferred +BEAR_pendulum_seed0 +this cpu has no native", capsys.readouterr().out
    )
    assert main(["sweep", str(path), "--local"]) == 3
    text = capsys.readouterr().out
    assert "1 bf16 trials deferred" in text and "1 deferred (bf16)" in text
    sweep = tmp_path / "sweep"
    assert (sweep / "TD3_pendulum_seed0" / "result.json").exists()
    assert not (sweep / "BEAR_pendulum_seed0").exists()
    assert main(["sweep", str(path), "--local", "--converted-bf16"]) == 0
    saved = json.loads((sweep / "BEAR_pendulum_seed0" / "params.json").read_text())
    assert saved["train"]["precision"] == "bf16"
    # on a CPU that has it, nothing waits
    monkeypatch.setattr(bearl.perf, "native_bf16", lambda device="cpu": True)
    (sweep / "BEAR_pendulum_seed0" / "result.json").unlink()
    summary = run_sweep(path, local=True, out=io.StringIO())
    assert summary["counts"]["deferred"] == 0 and summary["counts"]["done"] == 2


def test_fp32_fallback_runs_new_bf16_trials_in_fp32_and_every_sweep_keeps_them(
    tmp_path, monkeypatch, capsys
):
    """--fp32-fallback on a CPU without native bf16: the bf16 trials not started run in fp32
    (recorded so), a started bf16 one stays deferred, and a later sweep of the same spec on a
    CPU with native bf16 counts the fp32 run as the trial's and resumes it in fp32; a bf16 run
    in an fp32 trial's folder is still a conflict."""
    import bearl.perf

    spec = _tiny_spec(tmp_path, seeds=(0, 1))
    spec["base"]["precision"] = "bf16"
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    sweep = tmp_path / "sweep"
    monkeypatch.setattr(bearl.perf, "native_bf16", lambda device="cpu": False)
    assert main(["sweep", str(path), "--dry-run", "--fp32-fallback"]) == 0
    assert "left: 2 unfinished trials, no pace measured yet" in capsys.readouterr().out
    # seed 1 started in bf16 (converted): its checkpoint kept, its result not yet there
    assert main(["sweep", str(path), "--local", "--converted-bf16"]) == 0
    shutil.rmtree(sweep / "BEAR_pendulum_seed0")  # seed 0 not started
    (sweep / "BEAR_pendulum_seed1" / "result.json").unlink()
    capsys.readouterr()
    assert main(["sweep", str(path), "--dry-run", "--fp32-fallback"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"new +BEAR_pendulum_seed0 +fp32 in place of bf16", text)
    assert re.search(r"deferred +BEAR_pendulum_seed1 +this cpu .*checkpoint is kept", text)
    assert main(["sweep", str(path), "--local", "--fp32-fallback"]) == 3  # seed 1 waits
    params = json.loads((sweep / "BEAR_pendulum_seed0" / "params.json").read_text())
    assert params["train"]["precision"] == "fp32"
    assert json.loads((sweep / "BEAR_pendulum_seed0" / "result.json").read_text())["steps"] == 20
    with pytest.raises(SystemExit):  # one or the other
        main(["sweep", str(path), "--local", "--fp32-fallback", "--converted-bf16"])
    capsys.readouterr()
    # a CPU with native bf16, the plain spec, longer: the fp32 run resumes in fp32, seed 1 in bf16
    monkeypatch.setattr(bearl.perf, "native_bf16", lambda device="cpu": True)
    spec["base"]["steps"] = 30
    summary = run_sweep(spec, local=True, out=io.StringIO())
    assert summary["counts"]["done"] == 2 and not summary["errors"]
    for seed, precision in ((0, "fp32"), (1, "bf16")):
        d = sweep / f"BEAR_pendulum_seed{seed}"
        assert json.loads((d / "params.json").read_text())["train"]["precision"] == precision
        assert json.loads((d / "result.json").read_text())["steps"] == 30
    # the reverse: the spec says fp32, the folder holds bf16 (seed 1): a conflict
    spec["base"]["precision"] = "fp32"
    summary = run_sweep(spec, local=True, out=io.StringIO())
    assert summary["counts"]["conflict"] == 1 and summary["counts"]["done"] == 1
    assert "precision" in summary["errors"]["BEAR_pendulum_seed1"]


def test_a_trial_training_in_another_process_is_left_to_it(tmp_path):
    """The same sweep started twice: a trial whose folder another process holds is not a
    failure; this sweep runs the others and says which it left."""
    spec = _tiny_spec(tmp_path)
    busy = tmp_path / "sweep" / "BEAR_pendulum_seed0"
    out = io.StringIO()
    with run_folders_held(busy):
        summary = run_sweep(spec, local=True, out=out)
    assert summary["counts"]["done"] == 1 and summary["counts"]["elsewhere"] == 1
    assert not summary["errors"]
    assert "BEAR_pendulum_seed0: another process is training it" in out.getvalue()
    assert "1 training in another process" in out.getvalue()
    assert (tmp_path / "sweep" / "BEAR_pendulum_seed1" / "result.json").exists()
    assert list(busy.iterdir()) == []  # this sweep wrote nothing into the held folder
    assert run_sweep(spec, local=True, out=io.StringIO())["counts"]["done"] == 2


def test_the_final_summary_counts_a_trial_the_other_process_finished(tmp_path):
    """A trial left to another process that has finished by the end counts as done."""
    trials = expand(load_spec(_tiny_spec(tmp_path)))
    progress = SweepProgress(trials, io.StringIO())
    for t in trials:
        progress.finish(t, {"status": "elsewhere"})
    progress.recheck_elsewhere()
    assert progress.counts()["elsewhere"] == 2  # both still unfinished
    done = trials[0].run_dir
    done.mkdir(parents=True)
    (done / "result.json").write_text(json.dumps({"steps": 20, "best_score": 1.5}))
    progress.recheck_elsewhere()
    assert progress.counts()["done"] == 1 and progress.counts()["elsewhere"] == 1
    assert f"{trials[0].name}: finished by another process" in progress.out.getvalue()
    summary = progress.summary()
    assert "1/2 done" in summary and "1 training in another process" in summary


def test_a_setting_added_later_is_not_a_conflict_at_its_default():
    """A run saved by an older bearl lacks settings added since; at their defaults they are
    what the old run did, set otherwise they are a real difference."""
    from bearl.runs.sweep import _differences

    saved = {"steps": 10, "batch_size": 32}
    defaults = {"eval_deterministic": False, "batch_size": 256}
    now = {"steps": 10, "batch_size": 32, "eval_deterministic": False}
    assert _differences(now, saved, defaults) == []
    assert _differences({**now, "eval_deterministic": True}, saved, defaults) == [
        "eval_deterministic"
    ]
    assert _differences({**now, "batch_size": 64}, saved, defaults) == ["batch_size"]
    assert _differences(now, saved) == ["eval_deterministic"]  # no defaults given: strict


def test_report_groups_treat_a_setting_added_later_as_its_default(tmp_path):
    """The same rule for ``bearl report`` / ``plot`` groups: an old run without the setting and
    a new one at its default are one experiment; a value off the default splits them."""
    from bearl.runs.folders import RunInfo, differing_settings

    old = RunInfo(tmp_path, "BEAR", "hopper-random", 0, {"steps": 10, "mmd_sigma": 20.0})
    new = RunInfo(
        tmp_path, "BEAR", "hopper-random", 1, {**old.settings, "eval_deterministic": False}
    )
    assert differing_settings([old, new]) == []
    on = RunInfo(tmp_path, "BEAR", "hopper-random", 2, {**old.settings, "eval_deterministic": True})
    assert differing_settings([old, new, on]) == ["eval_deterministic"]
    wide = RunInfo(tmp_path, "BEAR", "hopper-random", 3, {**old.settings, "mmd_sigma": 5.0})
    assert differing_settings([old, wide]) == ["mmd_sigma"]
    # an algorithm bearl does not know (d3rlpy's runs) has no defaults: missing is a value
    peer = [
        RunInfo(tmp_path, "BEAR-d3rlpy", "h", 0, {"a": 1}),
        RunInfo(tmp_path, "BEAR-d3rlpy", "h", 1, {}),
    ]
    assert differing_settings(peer) == ["a"]


def test_mixed_group_note_names_every_setting_to_split_by(tmp_path, capsys):
    """A group whose runs differ in two settings is split by both (``--by`` is repeatable):
    the note's command gives both, and a setting already in ``by`` is not named."""
    from bearl.runs.folders import RunInfo, warn_mixed_groups

    base = {"steps": 10, "target_mmd_thresh": 0.05, "vae_kl_weight": 0.5}
    runs = [
        RunInfo(tmp_path, "BEAR", "hopper-medium", 0, {**base, "target_mmd_thresh": 0.1}),
        RunInfo(tmp_path, "BEAR", "hopper-medium", 0, {**base, "vae_kl_weight": 0.05}),
    ]
    warn_mixed_groups({"BEAR / hopper-medium": runs})
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("split them with --by target_mmd_thresh --by vae_kl_weight")
    )
    warn_mixed_groups({"BEAR / hopper-medium": runs}, by=["vae_kl_weight"])
    assert capsys.readouterr().err.strip().endswith("split them with --by target_mmd_thresh")


def test_a_setting_an_algorithm_lacks_shows_as_a_dash(tmp_path):
    """``--by behavior_model`` over BEAR and TD3 runs: TD3 has no such setting ("-", not
    "None"); a run saved before a setting existed shows its algorithm's default."""
    from bearl.runs.folders import RunInfo, settings_suffix, shown_setting

    td3 = RunInfo(tmp_path, "TD3", "hopper-medium", 0, {"steps": 10})
    old_bear = RunInfo(tmp_path, "BEAR", "hopper-medium", 0, {"steps": 10})
    bear = RunInfo(tmp_path, "BEAR", "hopper-medium", 0, {"behavior_model": "prefit"})
    assert shown_setting(td3, "behavior_model") == "-"
    assert shown_setting(old_bear, "behavior_model") == "joint"
    assert settings_suffix(bear, ["behavior_model"]) == " (behavior_model=prefit)"
    none = RunInfo(tmp_path, "BEAR", "h", 0, {"actor_noise_clip": None})
    assert shown_setting(none, "actor_noise_clip") == "None"  # a value of None is shown


def _die(values):
    os._exit(3)  # no exception, no result: the process just ends


def test_a_trial_whose_process_dies_fails_alone():
    out = run_in_subprocess({"run_name": "X_d_seed0"}, fn=_die)
    assert out["status"] == "failed" and out["name"] == "X_d_seed0"
    assert "ended abruptly" in out["error"]


_TRIAL_FN = """
import os, time

def sleep(values):
    tmp = values["pidfile"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, values["pidfile"])
    time.sleep(120)
    return {"status": "done"}
"""

_PARENT = """
import sys
import trialfn
from bearl.runs.sweep import run_in_subprocess

if __name__ == "__main__":
    try:
        run_in_subprocess({"run_name": "t", "pidfile": sys.argv[1]}, fn=trialfn.sleep)
    except KeyboardInterrupt:
        sys.exit(130)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended (nobody has reaped it yet)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_a_trial_never_outlives_the_sweep(tmp_path, sig):
    """Killing `bearl sweep --local` ends its trial too: SIGTERM through the parent's cleanup,
    SIGKILL (no cleanup) through the trial watching its parent."""
    (tmp_path / "trialfn.py").write_text(_TRIAL_FN)
    (tmp_path / "parent.py").write_text(_PARENT)
    pidfile = tmp_path / "trial.pid"
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(pidfile)])
    try:
        deadline = time.time() + 60
        while not pidfile.exists():
            assert parent.poll() is None and time.time() < deadline, "the trial never started"
            time.sleep(0.1)
        child = int(pidfile.read_text())
        assert _running(child)
        parent.send_signal(getattr(signal, sig))
        code = parent.wait(30)
        assert code == (130 if sig == "SIGTERM" else -signal.SIGKILL)
        deadline = time.time() + 30
        while _running(child) and time.time() < deadline:
            time.sleep(0.1)
        assert not _running(child), f"the trial (pid {child}) outlived its sweep"
    finally:
        parent.kill()
        if pidfile.exists() and _running(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


_LOCKING_TRIAL = """
import multiprocessing, multiprocessing.util, time

def lock(values):
    globals()["lock"] = multiprocessing.get_context("spawn").Lock()  # a tracked semaphore
    multiprocessing.util.Finalize(None, time.sleep, (0.5,), exitpriority=10)  # a slow exit
    return {"status": "done"}
"""

_LOCKING_PARENT = """
import trialfn_lock
from bearl.runs.sweep import run_in_subprocess

if __name__ == "__main__":
    print(run_in_subprocess({"run_name": "t"}, fn=trialfn_lock.lock)["status"])
"""


def test_a_finished_trial_exits_by_itself_and_leaks_no_semaphore(tmp_path):
    """A trial that has sent its outcome is left to exit on its own: terminated during its exit
    handlers, it left its semaphores (tqdm's lock, ...) to the resource tracker, which printed
    "leaked semaphore objects" at the end of every `bearl sweep --local`."""
    (tmp_path / "trialfn_lock.py").write_text(_LOCKING_TRIAL)
    (tmp_path / "parent.py").write_text(_LOCKING_PARENT)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "parent.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert "leaked semaphore" not in proc.stderr


@pytest.mark.slow
def test_sweep_on_ray(tmp_path):
    pytest.importorskip("ray")
    out = io.StringIO()
    summary = run_sweep(_tiny_spec(tmp_path), max_concurrent=2, out=out)
    assert summary["counts"]["done"] == 2, summary
    assert "on a local Ray instance" in out.getvalue()
    for n in summary["trials"]:
        assert (tmp_path / "sweep" / n / "result.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals a process")
def test_sigterm_stops_a_sweep_on_ray_cleanly_and_it_resumes(tmp_path):
    """`kill` of `bearl sweep` on Ray stops it as on --local: the interrupted line and status
    130, not Ray's native crash dump (`*** SIGTERM received at ...`, status 1); the trial keeps
    its checkpoint and the same command resumes it."""
    pytest.importorskip("ray")
    import yaml

    spec = _tiny_spec(tmp_path, steps=400, seeds=(0,))
    spec["base"]["eval_every"] = 20
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    run = tmp_path / "sweep" / "BEAR_pendulum_seed0"
    cmd = [sys.executable, "-m", "bearl.cli", "sweep", str(tmp_path / "spec.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep = subprocess.Popen(
        [*cmd, "--max-concurrent", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 600  # Ray starts slowly on a busy 2-core machine
        while not (run / "checkpoint.pt").exists():
            assert sweep.poll() is None and time.time() < deadline, "the trial never started"
            time.sleep(0.1)
        sweep.send_signal(signal.SIGTERM)
        out, err = sweep.communicate(timeout=60)
    finally:
        sweep.kill()
    assert "SIGTERM received" not in err and "PC: @" not in err, err
    assert sweep.returncode == 130, err
    ray_log = r"^\d{4}-\d\d-\d\d [\d:,]+\s+(INFO|WARNING) "  # Ray's start-up lines
    assert [line for line in err.splitlines() if not re.match(ray_log, line)] == [
        "bearl: interrupted"
    ], err
    assert out.splitlines()[-1] == "sweep interrupted: run the same command again to resume it"
    assert not (run / "result.json").exists()
    assert run_sweep(str(tmp_path / "spec.yaml"), dry_run=True, out=io.StringIO())["counts"] == {
        "resume": 1
    }

    summary = run_sweep(str(tmp_path / "spec.yaml"), max_concurrent=1, out=io.StringIO())
    assert summary["counts"]["done"] == 1, summary
    assert "resumed at step" in (run / "debug.log").read_text()
    with open(run / "progress.csv", newline="") as f:
        assert [int(r["Step"]) for r in csv.DictReader(f)] == list(range(20, 401, 20))


def test_report_shows_precision_and_never_averages_bf16_with_fp32(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "old_0", "BEAR", "hopper-medium", 0, [10.0, 20.0])  # before --precision
    write_run(root, "fp32_1", "BEAR", "hopper-medium", 1, [30.0], settings={"precision": "fp32"})
    write_run(root, "bf16_0", "BEAR", "hopper-medium", 0, [50.0], settings={"precision": "bf16"})
    table = report([root])
    assert "| precision |" in table.splitlines()[0]
    rows = {line.split("|")[3].strip(): line for line in table.splitlines() if "| BEAR" in line}
    assert set(rows) == {"fp32", "bf16"}
    assert "25.0 ± 7.1" in rows["fp32"] and "| 2 |" in rows["fp32"]  # the old run is fp32
    assert "50.0" in rows["bf16"] and "| 1 |" in rows["bf16"]
    only_fp32 = report([root / "old_0", root / "fp32_1"])
    assert "precision" not in only_fp32  # nothing to show when every run is fp32


def _experiment_script(name: str):
    import importlib.util

    (path,) = (Path(__file__).resolve().parents[1] / "studies").rglob(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parity_verdict_is_twice_the_standard_error_of_the_difference():
    """parity_table.py: |mean difference| <= 2 * sqrt(s1^2/n1 + s2^2/n2) is within
    seed noise; fewer than three seeds on either side is incomplete."""
    mod = _experiment_script("parity_table")
    ref = [30.0, 32.0, 34.0]  # std 2: with the same spread, 2 SE = 2 * sqrt(8/3) = 3.27
    assert mod.verdict(ref, [33.0, 35.0, 37.0]).startswith("within seed noise (+3.0, 2 SE 3.3")
    assert mod.verdict(ref, [34.0, 36.0, 38.0]).startswith("differs (+4.0, 2 SE 3.3")
    assert mod.verdict(ref, [33.0, 35.0]) == "incomplete"


def test_study_reads_each_step_of_the_runs(tmp_path):
    """studies/bear_200k/study_results.py (its claims): the score at a step, the best up to it,
    the mean of the five evaluations ending there; runs short of the last step are in progress,
    not in it; a longer run is read up to it."""
    mod = _experiment_script("study_results")
    mod.STEPS = 60
    scores = [1.0, 5.0, 2.0, 3.0, 4.0, 6.0]  # evaluations at steps 10..60
    write_run(tmp_path, "BEAR_a_seed0", "BEAR", "a", 0, scores)
    write_run(tmp_path, "BEAR_a_seed1", "BEAR", "a", 1, scores[:3])
    write_run(tmp_path, "BEAR_a_seed2", "BEAR", "a", 2, [*scores, 90.0])  # to step 70
    done, running = mod.load([tmp_path])
    assert len(done[("a", "BEAR")]) == 2 and running == ["BEAR_a_seed1 (at step 30)"]
    for d in done[("a", "BEAR")]:
        assert mod.at_step(d, "NormalizedScore", 30) == (2.0, 5.0, 8.0 / 3)
        assert mod.at_step(d, "NormalizedScore", 60) == (6.0, 6.0, 4.0)
        assert mod.at_step(d, "NormalizedScore", 35) is None  # no evaluation at that step


def test_study_figure_marks_the_warm_start_where_the_runs_agree(tmp_path, monkeypatch):
    """studies/bear_200k/study_results.py's figure: a line where BEAR's warm start ends (from
    params.json), one per algorithm, only when its runs agree and it ends inside the curve."""
    mod = _experiment_script("study_results")
    mod.STEPS = 60
    scores = [1.0, 5.0, 2.0, 3.0, 4.0, 6.0]
    for seed in (0, 1):
        write_run(
            tmp_path,
            f"BEAR_a_seed{seed}",
            "BEAR",
            "a",
            seed,
            scores,
            algo_cfg={"warm_start_steps": 20},
        )
    write_run(tmp_path, "BC_a_seed0", "BC", "a", 0, scores)
    marks = []
    monkeypatch.setattr(
        mod,
        "mark_warm_start",
        lambda ax, step, steps, color, who: marks.append((who, step)) if step is not None else None,
    )
    done, _ = mod.load([tmp_path])
    mod.figure(done, tmp_path / "fig.png")
    assert marks == [("BEAR: ", 20)] and (tmp_path / "fig.png").stat().st_size > 0
    write_run(tmp_path, "BEAR_a_seed2", "BEAR", "a", 2, scores, algo_cfg={"warm_start_steps": 40})
    marks.clear()
    mod.figure(mod.load([tmp_path])[0], tmp_path / "fig.png")
    assert marks == []  # seeds that disagree get no line


def test_no_checkpoint_is_committed():
    """Checkpoints and their carried copies stay out of git (they survive a session untracked):
    the only tracked .pt files are the shipped behaviour policies, and nothing of a behaviour
    run's folder (SB3's model.zip and replay buffer) or of in_flight/ is tracked."""
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert tracked, "git ls-files listed nothing"
    wrong = [
        f
        for f in tracked
        if f.startswith(("in_flight/", "behavior/"))
        or f.endswith((".pkl", ".zip", ".hdf5"))
        or (f.endswith(".pt") and not f.startswith("bearl/data/policies/"))
    ]
    assert wrong == []


def test_study_claims_are_judged_by_the_parity_rule(tmp_path):
    """studies/bear_200k/study_results.py: "at or above" holds unless BEAR is more than 2 SE below,
    "above" and "below" need more than 2 SE; fewer than three seeds is open, a missing side
    pending; datasets that disagree make a claim mixed."""
    from bearl.runs.report import difference

    mod = _experiment_script("study_results")
    hi, lo, near = [40.0, 42.0, 44.0], [30.0, 32.0, 34.0], [41.0, 43.0, 45.0]
    assert mod.claim_verdict(hi, lo, "at or above")[0] == "confirmed"
    assert mod.claim_verdict(lo, hi, "at or above")[0] == "not confirmed"
    assert mod.claim_verdict(hi, near, "at or above")[0] == "confirmed"  # -1 < 2 SE: at
    assert mod.claim_verdict(hi, near, "above")[0] == "not confirmed"
    assert mod.claim_verdict(hi, lo, "above") == ("confirmed", "42.0 ± 2.0 vs 32.0 ± 2.0 "
                                                   "(+10.0), 2 SE 3.3")  # fmt: skip
    assert mod.claim_verdict([-10.0, -12.0, -11.0], [80.0, 90.0, 99.0], "below")[0] == "confirmed"
    assert mod.claim_verdict([80.0, 90.0, 99.0], [-10.0, -12.0, -11.0], "below")[0] == (
        "not confirmed"
    )
    assert mod.claim_verdict([38.1], [29.4], "at or above") == (
        "open",
        "38.1 vs 29.4 (+8.7); 1 seed: a direction only",
    )
    assert mod.claim_verdict([], [29.4], "at or above", "BC") == (
        "pending",
        "no finished run of BEAR",
    )
    assert difference([1.0], [2.0, 3.0]) is None

    mod.STEPS = 60
    for seed in range(3):
        write_run(tmp_path, f"BEAR_a_{seed}", "BEAR", "a", seed, [0, 0, 0, 0, 0, 40.0 + seed])
        write_run(tmp_path, f"BC_a_{seed}", "BC", "a", seed, [0, 0, 0, 0, 0, 10.0 + seed])
        write_run(tmp_path, f"BEAR_b_{seed}", "BEAR", "b", seed, [0, 0, 0, 0, 0, 5.0 + seed])
        write_run(tmp_path, f"BC_b_{seed}", "BC", "b", seed, [0, 0, 0, 0, 0, 50.0 + seed])
    done, _ = mod.load([tmp_path])
    rows = mod.claims(done).splitlines()
    assert (
        "| (a) BEAR at or above BC | a | 8.2 ± 0.2 vs 2.2 ± 0.2 (+6.0), 2 SE 0.3 | confirmed |"
        in rows
    )
    assert any(
        r.startswith("| (a) BEAR at or above BC | b |") and "| not confirmed |" in r for r in rows
    )
    assert "| (a) BEAR at or above BC | all | | **mixed** |" in rows
    assert "| (c) BEAR far above TD3 | all | | **open** |" in rows


def test_behavior_fit_tells_a_collapsed_vae_from_the_behaviour_policy():
    """studies/bear_200k/behavior_fit.py: a VAE whose decoder ignores z has no spread, a dead
    encoder layer is counted as dead and leaves the posterior at the prior (KL 0), and the
    behaviour policy measured against itself has its own spread and no mean gap."""
    import torch

    from bearl.nets import VAE, TanhGaussianActor

    mod = _experiment_script("behavior_fit")
    torch.manual_seed(0)
    obs, act = torch.randn(64, 3), torch.rand(64, 2) * 2 - 1
    behavior = TanhGaussianActor(3, 2, (8, 8))
    live = mod.diagnostics(VAE(3, 2, (8, 8)), obs, act, behavior, n=50)
    assert live["vae_std"] > 1e-3 and live["kl"] > 1e-3

    vae = VAE(3, 2, (8, 8))
    with torch.no_grad():
        vae.decoder[0].weight[:, 3:] = 0.0  # the decoder ignores z
        vae.encoder[2].weight.zero_()
        vae.encoder[2].bias.fill_(-1.0)  # the encoder's second layer is dead
        vae.encoder[4].bias.zero_()  # so q(z|s,a) = N(0, I) for every input
    d = mod.diagnostics(vae, obs, act, behavior, actor=behavior, n=400)
    assert d["vae_std"] < 1e-6 and abs(d["kl"]) < 1e-6
    assert d["dead_encoder"][1] == 1.0 and len(d["dead_decoder"]) == 2
    spread = d["behavior_std"]
    assert spread > 0.05 and abs(d["actor_std"] - spread) < 0.1 * spread
    assert d["actor_mean_gap"] < 0.15 * spread and d["vae_mean_gap"] > 0.0
    assert d["w1_floor"] < 0.15 * spread < d["vae_w1"]  # a point is far from a spread
    assert mod.w1(torch.zeros(1, 3, 1), torch.tensor([[[0.0], [1.0], [2.0]]])) == 1.0
    assert mod.behavior_policy("hopper-medium-replay") is None
    alone = mod.diagnostics(vae, obs, act, actor=behavior, n=400)  # no behaviour policy known
    assert alone["actor_std"] == pytest.approx(spread, rel=0.1) and "actor_mean_gap" not in alone
    assert mod.behavior_policy("not-a-dataset") is None


def test_study_results_of_another_folder_get_their_own_block(tmp_path):
    """A folder other than the study's (stage 3) writes its own block of the page, marked with
    its name, and leaves the study's block alone; its claims skip algorithms it never ran
    (stage 3 has no TD3), while an algorithm with only an unfinished run keeps its claim."""
    mod = _experiment_script("study_results")
    mod.STEPS = 60
    stage = tmp_path / "stage3"
    for seed in range(3):
        write_run(stage, f"BEAR_a_{seed}", "BEAR", "a", seed, [0, 0, 0, 0, 0, 40.0 + seed])
        write_run(stage, f"BC_a_{seed}", "BC", "a", seed, [0, 0, 0, 0, 0, 10.0 + seed])
    write_run(stage, "BCQ_a_0", "BCQ", "a", 0, [0, 0, 0])  # stopped at step 30
    algorithms: set[str] = set()
    done, running = mod.load([stage], algorithms)
    assert algorithms == {"BEAR", "BC", "BCQ"} and running == ["BCQ_a_0 (at step 30)"]
    rows = mod.claims(done, algorithms)
    assert "(a) BEAR at or above BC | all | | **confirmed**" in rows
    assert "(b) BEAR at or above BCQ | a | no finished run of BCQ | pending" in rows
    assert "TD3" not in rows and "TD3" in mod.claims(done)

    begin, end = mod.markers([stage])
    assert begin != mod.BEGIN and end != mod.END and "stage3" in begin and "stage3" in end
    assert mod.markers() == (mod.BEGIN, mod.END)
    doc = tmp_path / "results.md"
    doc.write_text(f"a\n{mod.BEGIN}\nold study\n{mod.END}\nb\n{begin}\nold\n{end}\nc\n")
    mod.write_block(doc, "new stage 3\n", begin, end)
    text = doc.read_text()
    assert "old study" in text and "new stage 3" in text and "\nold\n" not in text
    with pytest.raises(SystemExit, match="expected one"):
        mod.write_block(tmp_path / "results.md", "x", *mod.markers([tmp_path / "elsewhere"]))


def test_study_probes_are_named_by_their_setting_and_read_up_to_their_length(tmp_path):
    """studies/bear_200k/study_results.py --steps --by: a probe of one setting is its own curve,
    named after the setting (a run at the default, or from before the setting existed, stays
    under the algorithm's name), and a longer reference run is read only up to the probes'
    length."""
    mod = _experiment_script("study_results")
    mod.STEPS = 40
    write_run(tmp_path, "BEAR_ref", "BEAR", "a", 0, [1.0, 2.0, 3.0, 4.0, 50.0, 60.0])
    write_run(tmp_path, "BEAR_eps", "BEAR", "a", 0, [5.0, 6.0, 7.0, 8.0],
              algo_cfg={"target_mmd_thresh": 0.1})  # fmt: skip
    write_run(tmp_path, "BEAR_kl", "BEAR", "a", 0, [9.0, 9.0, 9.0, 9.0],
              algo_cfg={"vae_kl_weight": 0.5, "target_mmd_thresh": 0.05})  # fmt: skip
    by = ("target_mmd_thresh", "vae_kl_weight")
    done, running = mod.load([tmp_path], by=by)
    assert running == [] and sorted(done) == [("a", "BEAR"), ("a", "BEAR (target_mmd_thresh=0.1)")]
    assert len(done[("a", "BEAR")]) == 2  # the default's values: pooled with the reference
    ref = next(d for d in done[("a", "BEAR")] if d["NormalizedScore"][0] == 1.0)
    assert list(ref["Step"]) == [10, 20, 30, 40] and ref["NormalizedScore"].max() == 4.0
    (eps,) = done[("a", "BEAR (target_mmd_thresh=0.1)")]
    assert mod.at_step(eps, "NormalizedScore", 20) == (6.0, 6.0, 5.5)
    assert sorted(mod.load([tmp_path])[0]) == [("a", "BEAR")]  # without --by: one algorithm


def test_study_claim_d_reads_the_end_and_the_largest_over_the_run():
    """Claim (d) twice: Overestimation at the study's last step, and the largest of any
    evaluation up to it, so that a critic that diverges upwards and then swings negative is
    not read as bounded by its last value alone (NaN evaluations are skipped)."""
    import numpy as np

    mod = _experiment_script("study_results")
    mod.STEPS = 40
    steps = np.array([10, 20, 30, 40, 50])
    diverged = {"Step": steps, "Overestimation": np.array([5.0, 2e5, np.nan, -8e5, 9e9])}
    calm = {"Step": steps, "Overestimation": np.array([-3.0, 7.0, 1.0, -2.0, 9e9])}
    assert mod._final([diverged, calm], "over") == [-8e5, -2.0]
    assert mod._final([diverged, calm], "peak") == [2e5, 7.0]
    assert [c[2] for c in mod.CLAIMS if c[1] == "TD3" and c[3] == "below"] == ["over", "peak"]


def test_parity_summary_judges_each_variant_and_names_the_missing_ones():
    """A variant may be used only when it is within seed noise on both datasets; a variant with
    no runs yet is incomplete, not passed over."""
    from collections import defaultdict

    mod = _experiment_script("parity_table")
    table = defaultdict(dict)
    for ds in mod.DATASETS:
        for seed in range(3):
            same = {"final": 30.0, "best": 35.0, "last5": 30.0 + seed}
            table[("BEAR", ds, "fp32")][seed] = same
            table[("BEAR", ds, "bf16")][seed] = dict(same)
            table[("BC", ds, "fp32")][seed] = same
            low = 20.0 + seed if ds == mod.DATASETS[0] else 30.0 + seed
            table[("BC", ds, "bf16")][seed] = {**same, "last5": low}
            table[("BEAR", ds, "bf16 + prefit")][seed] = dict(same)  # not the table's
    text = mod.markdown(table)
    assert "| bf16 + prefit |" not in text and "| BEAR | hopper-medium | bf16 | 3 |" in text
    assert (
        "* BEAR: bf16 within seed noise on both datasets: it may be used; "
        "bf16 + pretrained incomplete." in text
    )
    assert "* BC: bf16 NOT within seed noise: keep it off." in text
    assert "* TD3: bf16 incomplete." in text


def test_parity_followup_judges_each_seed_group_and_all_of_them():
    """parity_table.py --followup: the table's seeds, the follow-up's and all six,
    each with the table's rule; a group not yet run is incomplete."""
    from collections import defaultdict

    mod = _experiment_script("parity_table")
    algo, ds, variant = mod.FOLLOWUP
    table = defaultdict(dict)
    for seed in range(3):  # the table: +9 with a small spread (differs)
        table[(algo, ds, "fp32")][seed] = {"final": 25.0, "last5": 24.0 + seed}
        table[(algo, ds, variant)][seed] = {"final": 34.0, "last5": 33.0 + seed}
    lines = mod.followup_markdown(table).splitlines()
    assert lines[2].startswith("| 0-2 (the table) | 25.0 ± 1.0 | 34.0 ± 1.0 |")
    assert lines[2].endswith("| differs (+9.0, 2 SE 1.6, p 0.00) |")
    assert lines[3].endswith("| incomplete |") and "| all (3 and 3) |" in lines[4]
    for seed in range(3, 6):  # the follow-up: no difference, so all six come closer
        table[(algo, ds, "fp32")][seed] = {"final": 30.0, "last5": 30.0 + seed}
        table[(algo, ds, variant)][seed] = {"final": 30.0, "last5": 30.0 + seed}
    lines = mod.followup_markdown(table).splitlines()
    assert lines[3].endswith("| within seed noise (+0.0, 2 SE 1.6, p 1.00) |")
    assert lines[4].startswith("| all (6 and 6) | 29.5 ± 5.0 | 34.0 ± 0.9 |")


def test_parity_prefit_judges_each_variant_against_those_above_it():
    """parity_table.py --prefit: fp32, bf16 + pretrained and bf16 + prefit on the
    follow-up's seeds; prefit judged against both, pretrained against fp32 only."""
    from collections import defaultdict

    mod = _experiment_script("parity_table")
    algo, ds, _ = mod.FOLLOWUP
    table = defaultdict(dict)
    seeds = (3, 4, 5)
    for seed in seeds:
        table[(algo, ds, "fp32")][seed] = {"final": 30.0, "best": 35.0, "last5": 27.0 + seed}
        table[(algo, ds, "bf16 + pretrained")][seed] = {
            **{"final": 35.0, "best": 38.0, "last5": 33.0 + seed},
        }
    lines = mod.prefit_markdown(table).splitlines()
    assert lines[2] == "| fp32 | 3 | 30.0 ± 0.0 | 35.0 ± 0.0 | 31.0 ± 1.0 | - | reference |  |"
    assert lines[3].endswith("| differs (+6.0, 2 SE 1.6, p 0.00) | reference |")
    assert lines[4] == "| bf16 + prefit | 0 | - | - | - | - | incomplete | incomplete |"
    for seed in seeds:  # as the frozen VAE: differs from fp32, not from pretrained
        table[(algo, ds, "bf16 + prefit")][seed] = {
            **{"final": 35.0, "best": 38.0, "last5": 33.0 + seed},
            "distance": 0.07 + 0.01 * seed,
        }
    lines = mod.prefit_markdown(table).splitlines()
    assert "| 37.0 ± 1.0 | 0.110 ± 0.010 |" in lines[4]
    assert lines[4].endswith(
        "| differs (+6.0, 2 SE 1.6, p 0.00) | within seed noise (+0.0, 2 SE 1.6, p 1.00) |"
    )


def test_parity_longer_compares_each_20k_steps_of_runs_that_reached_60k(tmp_path):
    """parity_table.py --longer: per evaluation step and per 20k steps (each seed's
    mean of its evaluations there), the pretrained runs against the study's; a run that has
    not reached 60k steps is left out."""
    import json

    mod = _experiment_script("parity_table")

    def runs(folder: Path, scores, seeds=(0, 1, 2), last=60_000) -> Path:
        for seed in seeds:
            run = folder / f"BEAR_hopper-medium_seed{seed}"
            run.mkdir(parents=True)
            train = {"dataset": "hopper-medium", "seed": seed}
            (run / "params.json").write_text(json.dumps({"algorithm": "BEAR", "train": train}))
            rows = ["Step,NormalizedScore"] + [
                f"{t},{scores(t) + seed}" for t in range(5000, last + 1, 5000)
            ]
            (run / "progress.csv").write_text("\n".join(rows) + "\n")
        return folder

    joint = runs(tmp_path / "joint", lambda t: t / 2000)  # 2.5 at 5k ... 30 at 60k
    pre = runs(tmp_path / "pre", lambda t: 30.0)
    runs(tmp_path / "pre", lambda t: 0.0, seeds=(7,), last=30_000)  # unfinished: left out
    text = mod.longer_markdown({"joint": joint, "pre": pre})
    assert "| 5,000 | 3.5 ± 1.0 | 31.0 ± 1.0 |" in text
    assert "| 60,000 | 31.0 ± 1.0 | 31.0 ± 1.0 |" in text
    assert "| 5k-20k | 7.2 ± 1.0 | 31.0 ± 1.0 | differs (+23.8, 2 SE 1.6, p 0.00) |" in text
    assert "| 45k-60k | 27.2 ± 1.0 | 31.0 ± 1.0 | differs (+3.8, 2 SE 1.6, p 0.01) |" in text
    assert "80k-100k" not in text  # 60k runs: no window past them

    # to the study's budget: the same 20k windows, then the last five evaluations up to
    # 100k, 150k and 200k; runs that stopped at 60k are left out
    joint200 = runs(tmp_path / "joint200", lambda t: t / 10_000, last=200_000)
    pre200 = runs(tmp_path / "pre200", lambda t: 20.0, last=200_000)
    runs(tmp_path / "pre200", lambda t: 0.0, seeds=(8,))  # reached 60k only
    text = mod.longer_markdown({"joint": joint200, "pre": pre200}, steps=200_000)
    assert mod.longer_windows(200_000) == [
        (0, 20_000), (20_000, 40_000), (40_000, 60_000),
        (75_000, 100_000), (125_000, 150_000), (175_000, 200_000),
    ]  # fmt: skip
    assert "| 200,000 | 21.0 ± 1.0 | 21.0 ± 1.0 |" in text
    assert "| 80k-100k | 10.0 ± 1.0 | 21.0 ± 1.0 | differs (+11.0, 2 SE 1.6, p 0.00) |" in text
    assert "| 180k-200k | 20.0 ± 1.0 | 21.0 ± 1.0 | within seed noise (+1.0, 2 SE 1.6," in text
    assert "| 105k-" not in text and "| 65k-" not in text


def test_no_machine_path_in_committed_run_folders():
    """Committed run folders (studies/) name no absolute folder of the machine they ran on: not
    the checkout, not the home folder (the behaviour-VAE cache is logged as ~/.cache/...)."""
    import re
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "studies"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert tracked, "no committed run folders"
    machine = re.compile(r"(?:^|[\s\"'(=,])/(?:root|home|Users|work|tmp|mnt)/")
    wrong = [
        f"{f}:{n}"
        for f in tracked
        if f.endswith((".json", ".log", ".csv", ".txt"))
        for n, line in enumerate((repo / f).read_text(errors="replace").splitlines(), 1)
        if machine.search(line)
    ]
    assert wrong == []


def test_home_relative_paths():
    from bearl.files import home_relative

    home = Path.home()
    assert home_relative(home / ".cache" / "bearl" / "vae-1.pt") == "~/.cache/bearl/vae-1.pt"
    assert home_relative("/elsewhere/x.pt") == "/elsewhere/x.pt"
    assert home_relative("runs/x") == "runs/x"


def test_ledger_sums_finished_runs_fits_and_unfinished_ones(tmp_path):
    """studies/ledger.py: finished runs count their result.json wall time, pretrained runs
    add the VAE fit their debug.log reports, unfinished ones the wall time of their last row,
    and ope.json its FQE seconds (CPU seconds where it has them)."""
    mod = _experiment_script("ledger")
    done = write_run(tmp_path, "BEAR_a_seed0", "BEAR", "a", 0, [1.0, 2.0])
    result = json.loads((done / "result.json").read_text())
    (done / "result.json").write_text(json.dumps({**result, "wall_time": 3600.0}))
    (done / "debug.log").write_text(
        "2026-12-02 01:31:12,805 behaviour model: VAE fitted alone for 50000 steps in 931 s "
        "(final loss 0.0294), cached at ~/.cache/bearl/behavior/vae-x.pt\n"
    )
    running = write_run(tmp_path, "BEAR_a_seed1", "BEAR", "a", 1, [1.0], result=False)
    rows = (running / "progress.csv").read_text().splitlines()  # give its row a wall time
    (running / "progress.csv").write_text(
        rows[0] + ",WallTime\n" + "\n".join(r + ",1800.0" for r in rows[1:]) + "\n"
    )
    (done / "ope.json").write_text(json.dumps({"seconds": 444.5, "snapshots": []}))
    lines, finished, fits, unfinished, fqe = mod.ledger(tmp_path)
    assert (finished, fits, unfinished, fqe) == (3600.0, 931.0, 1800.0, 444.5)
    assert "done       1.00 h + 931 s VAE fit + 444 s FQE" in lines[0]
    assert "at      10   0.50 h so far" in lines[1]

    # the finished run extended past its result.json: unfinished, at its last row's time
    rows = (done / "progress.csv").read_text().splitlines()
    steps = json.loads((done / "result.json").read_text())["steps"]
    (done / "progress.csv").write_text(
        rows[0] + ",WallTime\n"
        + "\n".join(r + ",3600.0" for r in rows[1:])
        + f"\n{steps + 10}," + ",".join(rows[-1].split(",")[1:]) + ",5400.0\n"
    )  # fmt: skip
    lines, finished, fits, unfinished, fqe = mod.ledger(tmp_path)
    assert (finished, fits, unfinished, fqe) == (0.0, 931.0, 5400.0 + 1800.0, 444.5)
    assert f"at {steps + 10:>7,}   1.50 h so far (extending from {steps:,})" in lines[0]
    # a newer ope.json reports its CPU time: core-seconds, what the ledger counts
    (done / "ope.json").write_text(json.dumps({"seconds": 900.0, "cpu_seconds": 450.0}))
    assert mod.ledger(tmp_path)[4] == 450.0


STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.mark.parametrize(
    "spec",
    sorted(
        p.relative_to(STUDIES).as_posix()
        for p in STUDIES.rglob("*.yaml")
        if p.parent.parent == STUDIES
    ),
)
def test_every_committed_sweep_spec_expands_to_valid_trials(spec):
    """The studies' specs are what their READMEs run: each must load and expand into trials
    whose settings resolve (an unknown or mistyped setting fails here, not in the background
    hours later), all in one log folder inside the spec's own study folder."""
    from bearl.config import resolve
    from bearl.runs.sweep import expand, load_spec

    trials = expand(load_spec(STUDIES / spec))
    assert trials and len({t.name for t in trials}) == len(trials)
    for t in trials:
        resolve(t.values)
    log_dirs = {Path(t.values["log_dir"]).resolve() for t in trials}
    assert len(log_dirs) == 1 and (STUDIES / spec).parent in next(iter(log_dirs)).parents
