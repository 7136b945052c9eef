"""bearl report's windows (--at, --last), its robust aggregates with stratified bootstrap
intervals, the probability of improvement, bearl plot's performance profiles and titles; and the
200k study's table made by one bearl report command, checked against the study's own script."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bearl.cli import main
from bearl.errors import BearlError
from bearl.runs import stats
from bearl.runs.plot import plot_profile, plot_runs, title_of
from bearl.runs.report import Window, report, summarize, window_values

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "bear_200k"


def write_run(root, name, algo, dataset, seed, scores, every=10, settings=None, level=None):
    """A run folder as ``bearl train`` writes it (cf. tests/test_experiments.py's ``write_run``):
    progress rows every ``every`` steps with NormalizedScore = ``scores``, a result.json, and the
    data's level (``level``) in params.json's dataset entry."""
    d = root / name
    d.mkdir(parents=True)
    train = {"algo": algo, "dataset": dataset, "seed": seed, "steps": every * len(scores)}
    data = {"source": dataset}
    if level is not None:
        data["normalized_return_mean"] = level
    params = {
        "algorithm": algo,
        "train": {**train, **(settings or {})},
        "algo": {"gamma": 0.99},
        "dataset": data,
        "seed": seed,
    }
    for file in ("variant.json", "params.json"):
        (d / file).write_text(json.dumps(params))
    with open(d / "progress.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Step", "AverageReturn", "NormalizedScore", "Overestimation"])
        for i, s in enumerate(scores):
            w.writerow([every * (i + 1), 10.0 * s, s, float(i)])
    result = {"algo": algo, "dataset": dataset, "seed": seed, "steps": every * len(scores)}
    result.update(final_score=scores[-1], best_score=max(scores))
    (d / "result.json").write_text(json.dumps(result))
    return d


def cells(table: str, start: str) -> list[str]:
    """The cells of the Markdown row that begins with ``start``."""
    line = next(row for row in table.splitlines() if row.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


# -- the statistics on small cases -----------------------------------------------------------------
def test_mean_median_and_iqm_of_the_pooled_runs():
    strata = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 100.0]]
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0])
    assert stats.aggregate(strata, "mean").value == pytest.approx(x.mean())
    assert stats.aggregate(strata, "median").value == pytest.approx(4.5)  # (4 + 5) / 2
    # IQM: the middle 50 % of the 8 sorted values are 3, 4, 5, 6; the outlier 100 is cut
    assert stats.aggregate(strata, "IQM").value == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert stats.iqm(np.array([10.0, 0.0, 1.0, 2.0])) == pytest.approx(1.5)  # middle: 1, 2


def test_bootstrap_interval_is_seeded_and_stratified():
    rng = np.random.default_rng(1)
    strata = [rng.normal(0, 1, 12), rng.normal(5, 2, 9)]
    for name in stats.AGGREGATES:
        e = stats.aggregate(strata, name, resamples=500, seed=0)
        assert e.low <= e.value <= e.high, name
        assert stats.aggregate(strata, name, resamples=500, seed=0) == e  # same seed, same
        other = stats.aggregate(strata, name, resamples=500, seed=1)
        if name != "median":  # (a median's resamples take the data's values: may coincide)
            assert (other.low, other.high) != (e.low, e.high), name  # another seed, another
    # stratified: each dataset keeps its number of runs in every resample, so two datasets of
    # equal runs have a mean that never moves (pooled resampling would move it)
    flat = stats.aggregate([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]], "mean", resamples=300)
    assert (flat.low, flat.value, flat.high) == (5.0, 5.0, 5.0)
    # a dataset of one run stays in every resample as it is; none with two runs: no interval
    one = stats.aggregate([[1.0, 2.0, 3.0], [100.0]], "mean", resamples=300)
    assert one.low >= (1.0 * 3 + 100.0) / 4 and one.high <= (3.0 * 3 + 100.0) / 4
    assert not stats.aggregate([[1.0], [2.0]], "mean").has_interval


def test_probability_of_improvement_counts_ties_half():
    x, y = [1.0, 2.0, 3.0], [2.0, 2.0, 0.0]
    # the 9 pairs (x, y): 1 vs 2, 2, 0 -> 0, 0, 1; 2 vs ... -> .5, .5, 1; 3 vs ... -> 1, 1, 1
    assert stats.p_greater(x, y) == pytest.approx(6.0 / 9.0)
    assert stats.p_greater(x, y) + stats.p_greater(y, x) == pytest.approx(1.0)
    # averaged over datasets (the second: a tie, 0.5), each counted once whatever its runs
    p = stats.probability_of_improvement([x, [5.0]], [y, [5.0]], resamples=500)
    assert p.value == pytest.approx((6.0 / 9.0 + 0.5) / 2)
    assert p.low <= p.value <= p.high
    assert stats.probability_of_improvement([[2.0, 3.0]], [[0.0, 1.0]]).value == 1.0


def test_performance_profile_is_the_fraction_of_runs_above_tau():
    strata = [[1.0, 2.0, 3.0, 4.0], [10.0, 11.0, 12.0]]
    taus = [0.0, 2.5, 10.0, 20.0]
    frac, low, high = stats.performance_profile(strata, taus, resamples=300)
    np.testing.assert_allclose(frac, [7 / 7, 5 / 7, 2 / 7, 0.0])  # 12 > 10 and 11 > 10
    assert np.all(low <= frac + 1e-12) and np.all(frac <= high + 1e-12)
    assert low[0] == high[0] == 1.0 and low[-1] == high[-1] == 0.0
    assert high[1] > low[1]  # the first dataset's runs resampled: a band


# -- windows of a run's evaluations ----------------------------------------------------------------
SCORES = [1.0, 5.0, 2.0, 3.0, 4.0, 6.0]  # at steps 10, 20, ..., 60


def test_window_values_at_a_step_best_and_last_k():
    steps, y = np.arange(10.0, 70.0, 10.0), np.array(SCORES)
    assert window_values(steps, y, 30, 5) == (2.0, 5.0, pytest.approx(8.0 / 3))  # only 3 so far
    assert window_values(steps, y, 35, 5) == window_values(steps, y, 30, 5)  # the last before
    assert window_values(steps, y, 60, 5) == (6.0, 6.0, pytest.approx(np.mean(SCORES[1:])))
    assert window_values(steps, y, None, 2) == (6.0, 6.0, 5.0)
    assert window_values(steps, y, 5, 2) is None  # no evaluation yet
    gaps = np.array([1.0, np.nan, 2.0, np.nan, 4.0, 6.0])  # empty cells are no evaluations
    assert window_values(steps, gaps, 40, 2) == (2.0, 2.0, 1.5)


def test_report_windows_leave_out_runs_short_of_the_step(tmp_path):
    write_run(tmp_path, "a0", "BEAR", "d", 0, SCORES)
    write_run(tmp_path, "a1", "BEAR", "d", 1, [s + 1 for s in SCORES] + [50.0, 50.0])  # to 80
    write_run(tmp_path, "a2", "BEAR", "d", 2, SCORES[:3])  # stopped at step 30
    (row,) = summarize([tmp_path], window=Window(60, 5))
    assert row.seeds == 2 and row.short == ["a2 (ended at step 30)"]  # it has its result.json
    at, best, last5 = [6.0, 7.0], [6.0, 7.0], [np.mean(SCORES[1:]), np.mean(SCORES[1:]) + 1]
    assert (row.final_mean, row.final_std) == pytest.approx((np.mean(at), np.std(at, ddof=1)))
    assert (row.best_mean, row.best_std) == pytest.approx((np.mean(best), np.std(best, ddof=1)))
    assert row.last_mean == pytest.approx(np.mean(last5))
    assert row.last_std == pytest.approx(np.std(last5, ddof=1))
    table = report([tmp_path], window=Window(60, 5))
    assert cells(table, "| algorithm")[-3:] == ["score at 60", "best to 60", "last 5 to 60"]
    assert cells(table, "| BEAR")[2] == "2 (+1 short)"
    assert "Short: 1 run that has not reached step 60" in table and "a2 (ended at step" in table
    # at step 30 every run counts, each read up to it
    (row,) = summarize([tmp_path], window=Window(30, 5))
    assert row.seeds == 3 and not row.short
    assert row.final_mean == pytest.approx(np.mean([2.0, 3.0, 2.0]))
    # no --at: each run's last evaluation, the last K of the whole run
    (row,) = summarize([tmp_path], window=Window(None, 2))
    assert row.final_mean == pytest.approx(np.mean([6.0, 50.0, 2.0]))
    assert row.last_mean == pytest.approx(np.mean([5.0, 50.0, 3.5]))
    rows = list(csv.DictReader(io.StringIO(report([tmp_path], "csv", window=Window(60, 5)))))
    assert rows[0]["at_mean"] and rows[0]["last5_mean"] and rows[0]["short"] == "1"


def test_several_steps_side_by_side(tmp_path, capsys):
    """``--at`` more than once: the columns of each step side by side, the earliest first, each
    the numbers that ``--at`` that step alone gives, over the runs that reached the largest step
    (a run short of it is left out of every column and named)."""
    write_run(tmp_path, "a0", "BEAR", "d", 0, SCORES)
    write_run(tmp_path, "a1", "BEAR", "d", 1, [s + 1 for s in SCORES] + [50.0, 50.0])  # to 80
    write_run(tmp_path, "a2", "BEAR", "d", 2, SCORES[:3])  # stopped at step 30
    window = Window.of([60, 30], 5)
    assert window == Window(60, 5, (30,)) and window.steps == [30, 60]
    (row,) = summarize([tmp_path], window=window)
    (at60,) = summarize([tmp_path], window=Window(60, 5))
    assert row.seeds == 2 and row.short == ["a2 (ended at step 30)"]
    # a0 and a1 up to step 30 (a2, short of 60, is in no column): at, best and last-5 mean
    at30, best30, last30 = [2.0, 3.0], [5.0, 6.0], [np.mean(SCORES[:3]), np.mean(SCORES[:3]) + 1]
    expected = [x for v in (at30, best30, last30) for x in (np.mean(v), np.std(v, ddof=1))]
    assert [x for pair in row.earlier[30] for x in pair] == pytest.approx(expected)
    assert row.windows(window)[3:] == at60.windows(Window(60, 5))
    table = report([tmp_path], window=window)
    assert cells(table, "| algorithm")[-6:] == [
        "score at 30", "best to 30", "last 5 to 30", "score at 60", "best to 60", "last 5 to 60",
    ]  # fmt: skip
    assert cells(table, "| BEAR")[2:5] == ["2 (+1 short)", "30-80", "2.5 ± 0.7"]
    assert "At 30 and 60: the evaluation at that step" in table and "a2 (ended at step 30)" in table
    assert main(["report", str(tmp_path), "--at", "30", "--at", "60", "--format", "csv"]) == 0
    (csv_row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert float(csv_row["at_mean_30"]) == pytest.approx(2.5)
    assert float(csv_row["best_mean_60"]) == pytest.approx(at60.best_mean)
    assert "at_mean" not in csv_row and csv_row["short"] == "1"
    with pytest.raises(BearlError, match="give one --at"):
        report([tmp_path], window=window, matrix=True)
    with pytest.raises(BearlError, match="steps before at"):
        Window(30, None, (60,))


def test_the_table_uses_the_sample_std(tmp_path):
    for seed, final in enumerate([20.0, 40.0, 60.0]):
        write_run(tmp_path, f"r{seed}", "BC", "d", seed, [1.0, final])
    (row,) = summarize([tmp_path])
    assert row.final_std == pytest.approx(np.std([20, 40, 60], ddof=1))  # 20.0, not 16.3
    assert cells(report([tmp_path]), "| BC")[-2] == "40.0 ± 20.0"
    assert "sample std, ddof=1" in report([tmp_path])


def test_data_level_pooled_precision_and_interval_columns(tmp_path):
    write_run(tmp_path, "r0", "BEAR", "d", 0, [1.0, 2.0], level=36.03)
    write_run(
        tmp_path, "r1", "BEAR", "d", 1, [3.0, 4.0], level=36.04, settings={"precision": "bf16"}
    )
    write_run(tmp_path, "r2", "BEAR", "d", 2, [5.0, 6.0], level=26.4)
    split = report([tmp_path])
    assert "| precision |" in split.splitlines()[0]  # by default bf16 gets its own row
    table = report([tmp_path], pool_precision=True, data_level=True, ci=True, resamples=200)
    head, row = cells(table, "| algorithm"), cells(table, "| BEAR")
    assert head == [
        "algorithm", "dataset", "settings", "seeds", "steps", "data's level",
        "final score", "best score", "95% CI",
    ]  # fmt: skip
    assert row[2] == "bf16 x1, fp32 x2" and row[3] == "3"
    assert row[5] == "26.4-36.0"  # the seeds' data differ: the range
    (r,) = summarize([tmp_path], pool_precision=True, ci=True, resamples=200)
    assert r.ci.value == pytest.approx(4.0) and r.ci.low <= 4.0 <= r.ci.high
    assert row[-1] == f"[{r.ci.low:.1f}, {r.ci.high:.1f}]"
    write_run(tmp_path / "one", "r0", "BEAR", "d", 0, [1.0, 2.0], level=36.03)
    one = report([tmp_path / "one"], data_level=True, ci=True)
    assert cells(one, "| BEAR")[-4:] == ["36.0", "2.0", "2.0", "–"]  # one seed: no interval


def test_matrix_has_a_row_per_dataset_and_a_column_per_algorithm(tmp_path, capsys):
    for seed, scores in enumerate([[1.0, 2.0, 3.0], [1.0, 4.0, 5.0], [9.0, 9.0]]):
        write_run(tmp_path, f"a{seed}", "BEAR", "x", seed, scores, level=30.0)
    (tmp_path / "a2" / "result.json").unlink()  # a2: running, and short of step 30
    write_run(tmp_path, "b0", "BC", "y", 0, [7.0, 8.0, 9.0], level=20.0)
    window = Window(30, 2)
    table = report([tmp_path], window=window, ci=True, data_level=True, matrix=True)
    assert cells(table, "| dataset") == ["dataset", "BC", "BEAR", "data's level"]
    (bear,) = [r for r in summarize([tmp_path], window=window, ci=True) if r.algorithm == "BEAR"]
    assert bear.last_mean == pytest.approx(np.mean([2.5, 4.5]))
    ci = f"[{bear.ci.low:.1f}, {bear.ci.high:.1f}]"
    assert cells(table, "| x") == ["x", "–", f"3.5 {ci} (2, +1 short)", "30.0"]
    assert cells(table, "| y") == ["y", "8.5 (1)", "–", "20.0"]
    assert "Short: 1 run that has not reached step 30, left out: a2 (at step 20)." in table
    plain = report([tmp_path], window=window, matrix=True)
    assert cells(plain, "| x")[2] == f"3.5 ± {np.std([2.5, 4.5], ddof=1):.1f} (2, +1 short)"
    args = ["report", str(tmp_path), "--at", "30", "--last", "2", "--matrix", "--format", "csv"]
    assert main(args) == 0
    (x, y) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert float(x["BEAR_mean"]) == pytest.approx(3.5) and x["BEAR_seeds"] == "2"
    assert y["BEAR_mean"] == "" and float(y["BC_mean"]) == pytest.approx(8.5)


# -- across datasets -----------------------------------------------------------------------------
@pytest.fixture
def suite(tmp_path):
    """A and B on two datasets (3 seeds each on x, 2 on y) and C on x alone."""
    finals = {
        ("A", "x"): [10.0, 20.0, 30.0],
        ("B", "x"): [15.0, 15.0, 5.0],
        ("A", "y"): [50.0, 60.0],
        ("B", "y"): [60.0, 70.0],
        ("C", "x"): [1.0, 2.0],
    }
    for (algo, ds), values in finals.items():
        for seed, v in enumerate(values):
            write_run(tmp_path, f"{algo}_{ds}_{seed}", algo, ds, seed, [0.0, v])
    return tmp_path, finals


def test_aggregate_table_pools_each_algorithms_datasets(suite, capsys):
    root, finals = suite
    table = report([root], aggregate=True, resamples=300, seed=3)
    assert cells(table, "| algorithm") == ["algorithm", "datasets", "runs", "mean", "median", "IQM"]
    a = np.array(finals["A", "x"] + finals["A", "y"])
    strata = [finals["A", "x"], finals["A", "y"]]
    expected = [stats.aggregate(strata, n, 300, 3) for n in ("mean", "median", "IQM")]
    row = cells(table, "| A ")
    assert row[:3] == ["A", "2", "5"]
    assert expected[0].value == pytest.approx(a.mean())
    assert row[3:] == [f"{e.value:.1f} [{e.low:.1f}, {e.high:.1f}]" for e in expected]
    assert "The algorithms differ in their datasets" in table  # C has x alone
    assert main(["report", str(root), "--aggregate", "--format", "csv"]) == 0
    out = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert float(out[0]["iqm"]) == pytest.approx(stats.iqm(a)) and out[0]["iqm_low"]


def test_compare_and_improvement_tables(suite, capsys):
    root, f = suite
    xs, ys = [f["A", "x"], f["A", "y"]], [f["B", "x"], f["B", "y"]]
    # by hand: on x, A's 10 beats only B's 5, its 20 and 30 beat all three -> (1 + 3 + 3) / 9;
    # on y, 50 < 60 and 70, 60 = 60 (a tie: half) and 60 < 70 -> 0.5 / 4
    on_x, on_y = (1 + 3 + 3) / 9, 0.5 / 4
    p = stats.probability_of_improvement(xs, ys, 300, 0)
    assert p.value == pytest.approx((on_x + on_y) / 2)
    table = report([root], compare=[("A", "B")], resamples=300)
    assert cells(table, "| A | B | x")[4] == f"{on_x:.2f}"
    assert cells(table, "| A | B | y")[4] == f"{on_y:.2f}"
    assert cells(table, "| A | B | all (2)")[3:] == [
        "5 / 5", f"{p.value:.2f}", f"[{p.low:.2f}, {p.high:.2f}]"
    ]  # fmt: skip
    matrix = report([root], improvement=True, resamples=300)
    assert cells(matrix, "| P(row > column)") == ["P(row > column)", "A", "B", "C"]
    assert cells(matrix, "| A ")[2].startswith(f"{p.value:.2f} [")
    assert cells(matrix, "| B ")[1].startswith(f"{1 - p.value:.2f} [")
    with pytest.raises(BearlError, match="no runs of 'D'"):
        report([root], compare=[("A", "D")])
    with pytest.raises(BearlError, match="one table at a time"):
        report([root], "csv", aggregate=True, improvement=True)
    assert main(["report", str(root), "--compare", "A", "C", "--resamples", "100"]) == 0
    assert "| A | C | all (1) | 3 / 2 | 1.00 |" in capsys.readouterr().out


# -- bearl plot ------------------------------------------------------------------------------------
def test_performance_profile_figure_is_written(suite, tmp_path, capsys):
    import matplotlib

    root, _ = suite
    out = plot_profile([root], tmp_path / "profile.png", resamples=100)
    assert out.read_bytes().startswith(b"\x89PNG")
    svg = tmp_path / "fig" / "profile.svg"
    args = ["plot", str(root), "--profile", "--last", "1", "--at", "20", "-o", str(svg)]
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # (text as text)
        assert main(args) == 0
    assert "performance profile: normalized score (mean of the last 1 evaluations up to 20)" in (
        svg.read_text()
    )
    assert main(["plot", str(root), "--at", "20", "-o", str(tmp_path / "c.png")]) == 2
    assert "--at and --last go with --profile" in capsys.readouterr().err


def test_plot_titles_are_readable(tmp_path):
    import matplotlib

    assert title_of("NormalizedScore") == "normalized score"
    assert title_of("Overestimation") == "overestimation of the critic at the start states"
    assert title_of("critic_loss") == "critic loss"  # the fallback: the column's words
    assert title_of("AverageEpisodeLength") == "average episode length"
    assert title_of("ActionKL") == "action KL"
    for seed in (0, 1):
        write_run(tmp_path / "runs", f"r{seed}", "BEAR", "d", seed, [1.0, 2.0 + seed])
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot_runs([tmp_path / "runs"], tmp_path / "c.svg", metric="Overestimation")
    words = " ".join(re.findall(r">([^<>]+)</text>", (tmp_path / "c.svg").read_text()))
    assert "overestimation of the critic at the start states: mean ± 1 std over seeds" in words


# -- the 200k study's table, from bearl report ---------------------------------------------------
def _study_script():
    spec = importlib.util.spec_from_file_location("study_results", STUDY / "study_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_makes_the_200k_studys_table():
    """``bearl report studies/bear_200k/runs --at 50000 --at 100000 --at 200000 --last 5
    --pool-precision`` (the study's table, in its README) gives at each step the numbers of
    study_results.py's reading of the runs (``at_step``: the score at the step, the best up to
    it, the mean of the five evaluations ending there; its claims use them), mean ± sample std
    over the seeds, and each step's columns are those of ``--at`` that step alone."""
    mod = _study_script()
    runs = STUDY / "runs"
    done, running = mod.load([runs])
    assert len(done) >= 15 and not running
    steps = (50_000, 100_000, mod.STEPS)
    window = Window.of(steps, 5)
    ours = {
        (r.dataset, r.algorithm): r for r in summarize([runs], window=window, pool_precision=True)
    }
    assert set(ours) == set(done)
    for column, step in enumerate(steps):
        alone = summarize([runs], window=Window(step, 5), pool_precision=True)
        for r in alone:
            assert ours[r.dataset, r.algorithm].windows(window)[3 * column : 3 * column + 3] == (
                r.windows(Window(step, 5))
            ), (r.dataset, r.algorithm, step)
        for (ds, algo), seeds in done.items():
            r = ours[ds, algo]
            assert r.seeds == len(seeds)
            vals = [mod.at_step(d, "NormalizedScore", step) for d in seeds]
            assert None not in vals
            for i, (mean, std) in enumerate(r.windows(window)[3 * column : 3 * column + 3]):
                xs = [v[i] for v in vals]
                assert mean == pytest.approx(np.mean(xs), abs=1e-9), (ds, algo, step, i)
                if len(xs) > 1:
                    assert std == pytest.approx(np.std(xs, ddof=1), abs=1e-9), (ds, algo, i)
    assert "Short" not in report([runs], window=window)
