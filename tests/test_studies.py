"""The studies' own scripts (studies/*/*.py), on small cases computed by hand."""

from __future__ import annotations

import importlib.util
import json
import re
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


def write_run(
    folder: Path, name: str, algo: str, steps, truth, fqe, critic, low=None, bad=(), gaps=None
):
    run = folder / name
    run.mkdir(parents=True)
    train = {"algo": algo, "dataset": "hopper-medium"}
    (run / "params.json").write_text(json.dumps({"algorithm": algo, "train": train}))
    rows = "\n".join(
        f"{s},{t},{t / 10}" for s, t in zip(steps, truth)
    )  # NormalizedScore = truth / 10
    (run / "progress.csv").write_text(f"Step,DiscountedReturnStart,NormalizedScore\n{rows}\n")
    low = low or [None] * len(steps)
    entries = [
        {"step": s, "fqe_return": f, "critic_return": c, "fqe_low_return": lo, "diverged": s in bad}
        for s, f, c, lo in zip(steps, fqe, critic, low)
    ]
    for e, g in zip(entries, gaps or []):
        e["action_gap"] = g
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
    assert np.isnan(v.metrics(points, "fqe-low")["regret@1"])  # no interval: no choice
    oracle = v.metrics(points, "discounted truth")  # picks B's step 2 (300): score 30, no regret
    assert oracle["regret@1"] == 0.0 and oracle["spearman"] == pytest.approx(1.0)
    text = v.table(points)
    assert "| hopper-medium | fqe | 4 | 1.00 | 0.0 |" in text
    assert "| mean of datasets | final |" in text


def test_the_pessimistic_rule_ranks_by_the_intervals_lower_end(tmp_path):
    """fqe-low: a snapshot whose heads disagree (a wide interval) ranks below a sure one."""
    v = script("validate")
    truth, fqe, low = [100.0, 50.0, 20.0], [90.0, 400.0, 30.0], [80.0, 15.0, 10.0]
    write_run(tmp_path, "A", "TD3", [1, 2, 3], truth, fqe, [0, 0, 0], low=low)
    points = v.load([tmp_path])
    assert v.metrics(points, "fqe")["regret@1"] == pytest.approx(10.0 - 5.0)  # takes step 2
    low = v.metrics(points, "fqe-low")
    assert low["regret@1"] == 0.0 and low["spearman"] == pytest.approx(1.0)
    assert np.isnan(low["abs_error"])


def test_fqe_near_ranks_the_snapshots_far_from_the_data_below_the_near_ones(tmp_path):
    """Gaps 0.1, 0.5, 0.15: step 2 is over twice the smallest, so its high estimate ranks
    below the near steps (1, then 3); a diverged fit below both."""
    v = script("validate")
    write_run(tmp_path, "A", "TD3", [1, 2, 3], [100.0, 50.0, 20.0], [90.0, 400.0, 30.0],
              [0, 0, 0], gaps=[0.1, 0.5, 0.15])  # fmt: skip
    points = v.load([tmp_path])
    assert v.metrics(points, "fqe")["regret@1"] == pytest.approx(10.0 - 5.0)  # takes step 2
    near = v.metrics(points, "fqe-near")
    assert near["regret@1"] == 0.0 and near["spearman"] == pytest.approx(0.5)  # ranks 3, 1, 2
    assert "| hopper-medium | fqe-near | TD3_A@1 |" not in v.table(points)  # run names as given
    assert "| hopper-medium | fqe-near | A@1 | 90.0 | 100.0 | 10.0 | 10.0 |" in v.table(points)
    assert "action gap with FQE's error" in v.table(points)


def test_choosing_a_step_within_each_run_per_algorithm(tmp_path):
    """Within-run regret@1 is each run's best score minus its chosen step's, averaged over the
    algorithm's runs; errors leave out diverged fits."""
    v = script("validate")
    # A: FQE picks step 1 (step 2 diverged: it ranks last), regret 0; final picks 3 (regret 8)
    write_run(tmp_path, "A", "TD3", [1, 2, 3], [100.0, 50.0, 20.0], [90.0, 400.0, 30.0],
              [10.0, 20.0, 30.0], bad=(2,))  # fmt: skip
    # B: FQE picks step 1 (diverged step 2 ranks last; score 10, best 30: regret 20)
    write_run(tmp_path, "B", "TD3", [1, 2, 3], [100.0, 50.0, 300.0], [120.0, 9e4, 30.0],
              [0.0, 0.0, 0.0], bad=(2,))  # fmt: skip
    write_run(tmp_path, "C", "BC", [1, 2], [200.0, 100.0], [190.0, 130.0], [None, None])
    rows = {r.split(" | ")[0]: r for r in v.by_algorithm(v.load([tmp_path])) if r.startswith("| ")}
    # TD3: 2 runs, 6 snapshots, 2 diverged; FQE's error over A1, A3, B1, B3, the critic's over
    # all six; regret@1 of fqe (0 + 20) / 2 (diverged steps rank last); of the critic, A's step
    # 3 (8) and B's three tied steps drawn at random (30 - mean(10, 5, 30) = 15)
    td3 = rows["| TD3"].split(" | ")
    assert td3[1:4] == ["2", "6", "2"]
    assert float(td3[4]) == pytest.approx((10 + 10 + 20 + 270) / 4, abs=0.05)
    critic_err = (90 + 30 + 10 + 100 + 50 + 300) / 6
    assert float(td3[5]) == pytest.approx(critic_err, abs=0.05)
    assert float(td3[6]) == pytest.approx((0 + 20) / 2)  # fqe
    assert float(td3[8]) == pytest.approx((8 + 15) / 2, abs=0.05)  # critic
    assert float(td3[9]) == pytest.approx((8 + 0) / 2)  # final: the last step
    assert float(td3[10].rstrip(" |")) == 0.0  # discounted truth: the best return is the best score
    bc = rows["| BC"].split(" | ")  # no critic: its cells say so
    assert bc[5] == "-" and bc[8] == "-" and float(bc[9]) == 10.0


def test_the_validation_readme_table_is_validate_py_output():
    """The table in studies/offline_selection/README.md is what validate.py makes of the
    committed runs (rerun `validate.py --write` after adding runs)."""
    v = script("validate")
    readme = (STUDIES / "offline_selection" / "README.md").read_text()
    block = readme[readme.index(v.BEGIN) + len(v.BEGIN) : readme.index(v.END)]
    assert block.strip() == v.table(v.load([STUDIES / "offline_selection" / "runs"])).strip()


def test_bearl_select_chooses_what_the_validation_scores_for_fqe_near():
    """`bearl select runs/` (once per dataset) and validate.py's fqe-near rule make the same
    choice on the committed runs: the study measures the tool as shipped."""
    from bearl.ope.select import select_each

    v = script("validate")
    runs = STUDIES / "offline_selection" / "runs"
    points = v.load([runs])
    chosen = {c.dataset: (c.run.name, c.step) for c, _ in select_each([runs], "fqe-near")}
    for d in sorted({p.dataset for p in points}):
        pts = [p for p in points if p.dataset == d]
        top = pts[int(np.nanargmax(v.scores(pts, "fqe-near")))]
        assert chosen[d] == (top.run, top.step)


def test_a_diverged_fit_ranks_last_but_counts_in_the_error(tmp_path):
    v = script("validate")
    write_run(tmp_path, "A", "TD3", [1, 2, 3], [100.0, 50.0, 20.0], [90.0, 9e4, 30.0], [0, 0, 0],
              bad=(2,))  # fmt: skip
    points = v.load([tmp_path])
    fqe = v.metrics(points, "fqe")
    assert fqe["regret@1"] == 0.0 and fqe["spearman"] == pytest.approx(0.5)  # ranks 3, 1, 2
    assert fqe["abs_error"] == pytest.approx((10 + (9e4 - 50) + 10) / 3)
    assert "diverged (left the values the rewards allow) for 1 of 3" in v.table(points)


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


# -- the READMEs' tables that bearl report makes --------------------------------------------------
ROOT = STUDIES.parent
# a fenced block holding one `bearl report` command, then a blank line, then its output; or
# (the README's results) the command in an HTML comment right above its table
REPORT = re.compile(
    r"^```bash\n(bearl report [^\n]*)\n```\n\n|^<!-- (bearl report [^\n]*) -->\n", re.M
)


def readme_reports() -> list[tuple[str, str, str]]:
    """(README, command, the README's text after the command) for every table the READMEs say
    ``bearl report`` makes."""
    out = []
    for readme in [ROOT / "README.md", *sorted(STUDIES.glob("*/README.md"))]:
        text = readme.read_text()
        for m in REPORT.finditer(text):
            name = readme.relative_to(ROOT).as_posix()
            out.append((name, m.group(1) or m.group(2), text[m.end() :]))
    return out


def test_the_readmes_have_report_tables():
    """The pattern finds the tables (were it to find none, the next test would check nothing)."""
    found = {readme for readme, _, _ in readme_reports()}
    assert len(readme_reports()) >= 19
    assert {
        "README.md",
        "studies/bear_200k/README.md",
        "studies/hopper_suite/README.md",
        "studies/modern_references/README.md",
    } <= found


def _ids(reports) -> list[str]:
    """``README#n``: the n-th report table of the README."""
    seen: dict[str, int] = {}
    out = []
    for readme, _, _ in reports:
        seen[readme] = seen.get(readme, 0) + 1
        out.append(f"{readme}#{seen[readme]}")
    return out


@pytest.mark.parametrize("readme, command, after", readme_reports(), ids=_ids(readme_reports()))
def test_readme_table_is_the_output_of_its_command(readme, command, after, capsys, monkeypatch):
    """Each table printed under a ``bearl report`` command is that command's output now, over
    the committed run folders (the command run from the checkout's root, its globs expanded
    as a shell does)."""
    import glob
    import shlex

    from bearl.cli import main

    monkeypatch.chdir(ROOT)
    argv = []
    for arg in shlex.split(command)[1:]:
        argv += sorted(glob.glob(arg)) if any(c in arg for c in "*?[") else [arg]
    assert "-o" not in argv and "--out" not in argv
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("| ") and after.startswith(out), f"{readme}: `{command}`"
