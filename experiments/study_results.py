"""The 200k-step study's figure and table (docs/results.md, issue #20), from the committed run
folders of ``results/study_200k``:

    python experiments/study_results.py                  # table to stdout, figure to docs/figures

Figure ``docs/figures/study_200k.png``: one panel per dataset, the normalized score of every
algorithm against gradient steps (mean ± std over seeds when there are several), the mean
action (``--eval_deterministic``) dashed beside the own rule of the algorithms that sample
(``SAMPLING``: BEAR's best of sampled actions by Q, IQL's and CQL's policy samples), and the
data's own level as a grey line. Only runs that have reached the last step of the
study are drawn; runs in progress are listed as such.

Table: per algorithm, dataset and action rule, at 50k, 100k and 200k steps: the score of that
evaluation, the best up to it, and the mean of the five evaluations ending there (the final one
alone is noisy), each as mean ± std over seeds; and the critic's ``Overestimation`` at the same
steps (claim d of the issue).

Claims: the paper's four, per dataset, from the runs at 200k steps (BEAR's own rule; the mean
of the last five evaluations, as mean over seeds): (a) BEAR at or above BC, (b) BEAR at or
above BCQ, (c) BEAR far above TD3, (d) BEAR's critic overestimates less than TD3's
(``Overestimation`` at 200k). With three seeds or more on both sides a claim is "confirmed" or
"not confirmed" by the rule of the parity table (the difference against twice its standard
error: "at or above" holds unless BEAR is more than 2 SE below, "far above" and "less" need
more than 2 SE); with fewer it is "open" and only the direction is shown; "pending" while a
side has no finished run. Over datasets a claim is confirmed or not confirmed when all agree,
"mixed" when they disagree, open while any is open or pending.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from bearl.experiments.plot import read_progress
from bearl.experiments.report import difference
from bearl.experiments.runs import cost_settings, find_runs, run_info
from bearl.files import read_json
from bearl.training.curve import (
    data_level,
    format_steps,
    mark_data_level,
    mark_warm_start,
    warm_start_end,
)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 200_000
AT = (50_000, 100_000, 200_000)
RULES = {"NormalizedScore": "own rule", "DeterministicNormalizedScore": "mean action"}
SAMPLING = ("BEAR", "IQL", "CQL")  # their own rule samples: the mean action is drawn too


def load(paths):
    """{(dataset, algorithm): [progress dict per finished seed]}, and the unfinished runs."""
    done, running = defaultdict(list), []
    for path in find_runs(paths, ("progress.csv",)):
        info = run_info(path)
        d = read_progress(path)
        if len(d.get("Step", [])) == 0 or d["Step"][-1] < STEPS:
            last = int(d["Step"][-1]) if len(d.get("Step", [])) else 0
            running.append(f"{path.name} (at step {last:,})")
            continue
        params = read_json(path / "params.json") or {}
        level = data_level(params, "NormalizedScore")
        d["_warm"] = warm_start_end(params)
        if level is None:  # (result.json names it too)
            level = (read_json(path / "result.json") or {}).get("data_score")
        d["_level"] = None if level is None else round(float(level), 6)
        d["_settings"] = cost_settings(info)
        done[(info.dataset, info.algorithm)].append(d)
    return done, running


def at_step(d, col: str, step: int) -> tuple[float, float, float] | None:
    """(score at ``step``, best up to it, mean of the five evaluations ending there)."""
    if col not in d:
        return None
    keep = (d["Step"] <= step) & np.isfinite(d[col])
    y = d[col][keep]
    if len(y) == 0 or d["Step"][keep][-1] != step:
        return None
    return float(y[-1]), float(y.max()), float(y[-5:].mean())


def pm(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{xs[0]:.1f}" if len(xs) == 1 else f"{np.mean(xs):.1f} ± {np.std(xs, ddof=1):.1f}"


def settings_of(runs) -> str:
    """Which settings made the seeds: ``fp32``, or ``fp32 x1, bf16 + pretrained x2``."""
    counts: dict[str, int] = defaultdict(int)
    for d in runs:
        counts[d.get("_settings", "fp32")] += 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))


def table(done) -> str:
    head = " | ".join(f"{s // 1000}k: at / best / last 5" for s in AT)
    lines = [
        f"| dataset | algorithm | rule | seeds | settings | {head} |",
        "|---" * (5 + len(AT)) + "|",
    ]
    for (ds, algo), runs in sorted(done.items()):
        for col, rule in RULES.items():
            if not any(col in d for d in runs):
                continue
            if col != "NormalizedScore" and all(
                np.array_equal(d[col], d["NormalizedScore"], equal_nan=True) for d in runs
            ):
                continue  # the same rule (e.g. BC's mean action)
            cells = []
            for s in AT:
                vals = [v for v in (at_step(d, col, s) for d in runs) if v is not None]
                cells.append(" / ".join(pm([v[i] for v in vals]) for i in range(3)))
            lines.append(
                f"| {ds} | {algo} | {rule} | {len(runs)} | {settings_of(runs)} "
                f"| {' | '.join(cells)} |"
            )
    lines += [
        "",
        "| dataset | algorithm | seeds | "
        + " | ".join(f"Overestimation at {s // 1000}k" for s in AT)
        + " |",
    ]
    lines.append("|---" * (3 + len(AT)) + "|")
    for (ds, algo), runs in sorted(done.items()):
        cells = []
        for s in AT:
            vals = [float(d["Overestimation"][d["Step"] == s][0]) for d in runs
                    if "Overestimation" in d and np.any(d["Step"] == s)
                    and np.isfinite(d["Overestimation"][d["Step"] == s][0])]  # fmt: skip
            cells.append(pm(vals) if vals else "-")
        if set(cells) == {"-"}:
            continue  # no critic (BC)
        lines.append(f"| {ds} | {algo} | {len(runs)} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


# (claim, the algorithm BEAR is compared with, the column, the test BEAR must pass)
CLAIMS = (
    ("(a) BEAR at or above BC", "BC", "last5", "at or above"),
    ("(b) BEAR at or above BCQ", "BCQ", "last5", "at or above"),
    ("(c) BEAR far above TD3", "TD3", "last5", "above"),
    ("(d) BEAR overestimates less than TD3", "TD3", "over", "below"),
)


def _final(runs, key: str) -> list[float]:
    """Per seed at the study's last step: the own rule's last-five mean, or Overestimation."""
    out = []
    for d in runs:
        if key == "last5":
            v = at_step(d, "NormalizedScore", STEPS)
            v = None if v is None else v[2]
        else:
            v = d["Overestimation"][d["Step"] == STEPS] if "Overestimation" in d else []
            v = float(v[0]) if len(v) and np.isfinite(v[0]) else None
        if v is not None:
            out.append(v)
    return out


def claim_verdict(
    bear: list[float], other: list[float], test: str, name: str = "the other"
) -> tuple[str, str]:
    """``(verdict, numbers)`` of one claim on one dataset (see the module's docstring)."""
    if not bear or not other:
        missing = " and ".join(n for n, v in (("BEAR", bear), (name, other)) if not v)
        return "pending", f"no finished run of {missing}"
    numbers = f"{pm(bear)} vs {pm(other)} ({np.mean(bear) - np.mean(other):+.1f})"
    if len(bear) < 3 or len(other) < 3:
        n = min(len(bear), len(other))
        return "open", f"{numbers}; {n} seed{'s' if n > 1 else ''}: a direction only"
    d = difference(other, bear)
    ok = {"at or above": d.diff >= -2 * d.se, "above": d.diff > 2 * d.se}.get(
        test, d.diff < -2 * d.se
    )
    return ("confirmed" if ok else "not confirmed"), f"{numbers}, 2 SE {2 * d.se:.1f}"


def claims(done) -> str:
    datasets = sorted({ds for ds, _ in done})
    lines = ["| claim | dataset | BEAR vs the other at 200k | verdict |", "|---|---|---|---|"]
    for name, other, key, test in CLAIMS:
        verdicts = []
        for ds in datasets:
            v, numbers = claim_verdict(
                _final(done.get((ds, "BEAR"), []), key),
                _final(done.get((ds, other), []), key),
                test,
                other,
            )
            verdicts.append(v)
            lines.append(f"| {name} | {ds} | {numbers} | {v} |")
        if {"open", "pending"} & set(verdicts) or not verdicts:
            overall = "open"
        else:
            overall = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
        lines.append(f"| {name} | all | | **{overall}** |")
    return "\n".join(lines) + "\n"


def figure(done, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({ds for ds, _ in done})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 3.8), squeeze=False)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    algos = sorted({a for _, a in done})
    for ax, ds in zip(axes.flat, datasets):
        for i, algo in enumerate(algos):
            runs = done.get((ds, algo), [])
            for col, style in (("NormalizedScore", "-"), ("DeterministicNormalizedScore", "--")):
                if (
                    not runs
                    or not all(col in d for d in runs)
                    or (algo not in SAMPLING and style == "--")
                ):
                    continue
                ys = np.stack([d[col] for d in runs])
                x, m = runs[0]["Step"], np.nanmean(ys, 0)
                rule = "" if style == "-" else ", mean action"
                ax.plot(
                    x, m, style, color=palette[i], lw=1.6, label=f"{algo}{rule} (n={len(runs)})"
                )
                if len(runs) > 1:
                    sd = np.nanstd(ys, 0)
                    ax.fill_between(x, m - sd, m + sd, color=palette[i], alpha=0.15, lw=0)
            warm = {d["_warm"] for d in runs}
            if len(warm) == 1 and runs:  # one line per algorithm, where its runs agree
                mark_warm_start(ax, warm.pop(), runs[0]["Step"], palette[i], f"{algo}: ")
        levels = {d["_level"] for a in algos for d in done.get((ds, a), []) if d["_level"]}
        mark_data_level(ax, levels.pop() if len(levels) == 1 else None)
        ax.set_title(ds, fontsize=10)
        format_steps(ax)
        ax.set_ylabel("normalized score", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", default=[str(ROOT / "results" / "study_200k")])
    p.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "study_200k.png"))
    a = p.parse_args()
    done, running = load(a.paths)
    if done:
        figure(done, Path(a.figure))
    print(table(done), end="")
    print("\n" + claims(done), end="")
    if running:
        print("\nIn progress: " + ", ".join(running))


if __name__ == "__main__":
    main()
