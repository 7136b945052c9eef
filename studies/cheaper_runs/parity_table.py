"""The learning-parity table of docs/performance.md (issue #19): each cheaper variant against
fp32 at the same data, seeds, budget and evaluation.

    python studies/cheaper_runs/parity_table.py                       # markdown to stdout
    python studies/cheaper_runs/parity_table.py --out docs/figures/parity_20k.md

Runs: ``runs/`` beside this script (``parity_20k.sh``) and, for hopper-medium's fp32
reference, ``studies/hopper_suite/runs`` (the same settings: paper preset, 20k steps, evaluation
every 2,000 steps on 10 episodes, seeds 0-2). Per (algorithm, dataset, variant) it shows, as
mean ± std over seeds: the final score, the best score, the mean of the last five evaluations
(steps 12k-20k: the final one alone is noisy), ``Overestimation`` and BEAR's ``alpha`` at the
end. The verdict compares the last-five mean with fp32's: "within seed noise" when the
difference of the means is at most twice its standard error (sqrt(s1^2/n1 + s2^2/n2)), with
Welch's t-test p-value beside it; "differs" otherwise; "incomplete" until both sides have three
finished seeds. A variant of an algorithm may be used when it is within seed noise on both
datasets; one not yet run on both is incomplete. The table reads seeds 0-2 only.

``--followup`` prints instead the follow-up set after the table
(``studies/cheaper_runs/parity_20k_followup.yaml``): BEAR on hopper-medium, fp32 against bf16 +
pretrained, for the table's seeds (0-2), the follow-up's (3-5) and all six, with the same rule.

``--prefit`` prints what tells the pretrained VAE's head start from its freezing
(``studies/cheaper_runs/prefit_20k.yaml``): on the six seeds of the table and the follow-up, BEAR on
hopper-medium with the VAE fitted alone first and then fitted on at every step (bf16 + prefit),
beside fp32 and bf16 + pretrained, each judged against those above it with the same rule, and
the constraint's distance (the actor's sampled MMD to the VAE) at the last step.

``--longer`` prints whether the effect lasts (``studies/cheaper_runs/pretrained_60k.yaml``): BEAR on
hopper-medium with the pretrained VAE for 60k steps at the 200k-step study's settings, against
the study's own BEAR runs (joint VAE) over the same steps: the mean score at each evaluation,
then the mean of each seed's evaluations in each 20k steps (5k-20k, 25k-40k, 45k-60k), judged
with the same rule. ``--longer --to 200000`` does the same for those runs continued to the
study's budget (``studies/cheaper_runs/pretrained_200k.yaml``), with the windows of five evaluations
up to 100k, 150k and 200k added (the last is the study's "last 5" at 200k).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from bearl.errors import BearlError
from bearl.runs.folders import cost_settings, find_runs, run_info
from bearl.runs.plot import read_progress
from bearl.runs.report import difference

HERE = Path(__file__).resolve().parent
STUDIES = HERE.parent
SOURCES = [HERE / "runs", STUDIES / "hopper_suite" / "runs"]
ALGOS = ("BEAR", "BCQ", "BC", "TD3")
DATASETS = ("hopper-medium", "walker2d-medium")
# the cheaper variants each algorithm is run in (the pretrained VAE only where there is a VAE)
PLANNED = {
    "BEAR": ("bf16", "bf16 + pretrained"),
    "BCQ": ("bf16", "bf16 + pretrained"),
    "BC": ("bf16",),
    "TD3": ("bf16",),
}
STEPS = 20_000
LAST = 5
TABLE_SEEDS = (0, 1, 2)
# the follow-up: (algorithm, dataset, variant) against fp32, and its seed groups
FOLLOWUP = ("BEAR", "hopper-medium", "bf16 + pretrained")
FOLLOWUP_GROUPS = {"0-2 (the table)": (0, 1, 2), "3-5 (follow-up)": (3, 4, 5)}
# head start or freezing: the variants side by side on the table's and the follow-up's seeds
PREFIT_VARIANTS = ("fp32", "bf16 + pretrained", "bf16 + prefit")
PREFIT_SEEDS = (0, 1, 2, 3, 4, 5)


def run_values(path: Path) -> dict[str, float] | None:
    """The run's numbers at its last row, or None while it has not reached STEPS."""
    d = read_progress(path)
    steps = d.get("Step")
    if steps is None or len(steps) == 0 or steps[-1] < STEPS:
        return None
    score = d["NormalizedScore"]
    evaluated = score[np.isfinite(score)]
    out = {
        "final": float(evaluated[-1]),
        "best": float(evaluated.max()),
        "last5": float(evaluated[-LAST:].mean()),
    }
    for col, key in (("Overestimation", "over"), ("alpha", "alpha"), ("distance", "distance")):
        v = d.get(col)
        if v is not None and np.isfinite(v).any():
            out[key] = float(v[np.isfinite(v)][-1])
    return out


def collect(sources, seeds=TABLE_SEEDS) -> dict[tuple[str, str, str], dict[int, dict[str, float]]]:
    table: dict[tuple[str, str, str], dict[int, dict[str, float]]] = defaultdict(dict)
    for path in find_runs([s for s in sources if Path(s).exists()], ("progress.csv",)):
        info = run_info(path)
        if info.algorithm not in ALGOS or info.dataset not in DATASETS:
            continue
        if info.setting("steps") not in (STEPS, None) or info.setting("preset") not in (
            "paper",
            None,
        ):
            continue
        values = run_values(path)
        if values is not None and info.seed in seeds:
            table[(info.algorithm, info.dataset, cost_settings(info))][info.seed] = values
    return table


def pm(values: list[float], places: int = 1) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{places}f}"
    return f"{np.mean(values):.{places}f} ± {np.std(values, ddof=1):.{places}f}"


def verdict(ref: list[float], other: list[float]) -> str:
    if len(ref) < 3 or len(other) < 3:
        return "incomplete"
    d = difference(ref, other)
    word = "within seed noise" if d.within(2.0) else "differs"
    return f"{word} ({d.diff:+.1f}, 2 SE {2 * d.se:.1f}, p {d.p:.2f})"


def markdown(table) -> str:
    lines = [
        "| algorithm | dataset | variant | seeds | final | best | mean of last 5 "
        "| Overestimation | alpha | against fp32 (last 5) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    passes: dict[str, list[str]] = defaultdict(list)
    for algo in ALGOS:
        for ds in DATASETS:
            variants = sorted(  # the table's variants only (prefit has its own: --prefit)
                {
                    v
                    for (a, d, v) in table
                    if a == algo and d == ds and v in ("fp32", *PLANNED[algo])
                },
                key=lambda v: (v != "fp32", v),
            )
            ref = [r["last5"] for r in table.get((algo, ds, "fp32"), {}).values()]
            for v in variants:
                runs = table[(algo, ds, v)]
                rows = [runs[s] for s in sorted(runs)]

                def col(k: str, rows=rows) -> list[float]:
                    return [r[k] for r in rows if k in r]

                judged = "reference" if v == "fp32" else verdict(ref, col("last5"))
                if v != "fp32":
                    passes[(algo, v)].append(judged.split(" (")[0])
                alpha = pm(col("alpha"), 2) if algo == "BEAR" else ""
                lines.append(
                    f"| {algo} | {ds} | {v} | {len(rows)} | {pm(col('final'))} | "
                    f"{pm(col('best'))} | {pm(col('last5'))} | {pm(col('over'), 0)} | {alpha} "
                    f"| {judged} |"
                )
    lines.append("")
    for algo in ALGOS:
        parts = []
        for v in PLANNED[algo]:
            words = passes.get((algo, v), [])
            if len(words) < len(DATASETS) or "incomplete" in words:
                parts.append(f"{v} incomplete")
            elif all(w == "within seed noise" for w in words):
                parts.append(f"{v} within seed noise on both datasets: it may be used")
            else:
                parts.append(f"{v} NOT within seed noise: keep it off")
        lines.append(f"* {algo}: {'; '.join(parts)}.")
    return "\n".join(lines) + "\n"


def followup_markdown(table) -> str:
    """The follow-up's rows: each seed group and all of them, fp32 against the variant."""
    algo, ds, variant = FOLLOWUP
    ref_runs, var_runs = table.get((algo, ds, "fp32"), {}), table.get((algo, ds, variant), {})
    groups = {**FOLLOWUP_GROUPS, "all": tuple(sorted(set(ref_runs) | set(var_runs)))}
    lines = [
        f"| seeds | fp32: last 5 | {variant}: last 5 | fp32: final | {variant}: final "
        "| against fp32 (last 5) |",
        "|---|---|---|---|---|---|",
    ]
    for name, seeds in groups.items():
        ref = [ref_runs[s]["last5"] for s in seeds if s in ref_runs]
        other = [var_runs[s]["last5"] for s in seeds if s in var_runs]
        ref_final = [ref_runs[s]["final"] for s in seeds if s in ref_runs]
        other_final = [var_runs[s]["final"] for s in seeds if s in var_runs]
        label = name if name != "all" else f"all ({len(ref)} and {len(other)})"
        lines.append(
            f"| {label} | {pm(ref)} | {pm(other)} | {pm(ref_final)} | {pm(other_final)} "
            f"| {verdict(ref, other)} |"
        )
    return "\n".join(lines) + "\n"


def prefit_markdown(table) -> str:
    """BEAR on hopper-medium, seeds 0-5: fp32, bf16 + pretrained and bf16 + prefit, each
    judged against those above it."""
    algo, ds, _ = FOLLOWUP
    runs = {v: table.get((algo, ds, v), {}) for v in PREFIT_VARIANTS}
    last5 = {v: [r["last5"] for _, r in sorted(runs[v].items())] for v in PREFIT_VARIANTS}
    ref, frozen = PREFIT_VARIANTS[0], PREFIT_VARIANTS[1]
    lines = [
        f"| variant | seeds | final | best | mean of last 5 | MMD to the VAE at the end "
        f"| against {ref} (last 5) | against {frozen} (last 5) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, v in enumerate(PREFIT_VARIANTS):
        rows = [r for _, r in sorted(runs[v].items())]
        against = [  # each variant against those above it
            "reference" if k == i else verdict(last5[other], last5[v]) if k < i else ""
            for k, other in enumerate((ref, frozen))
        ]
        lines.append(
            f"| {v} | {len(rows)} | {pm([r['final'] for r in rows])} | "
            f"{pm([r['best'] for r in rows])} | {pm(last5[v])} | "
            f"{pm([r['distance'] for r in rows if 'distance' in r], 3)} | "
            f"{against[0]} | {against[1]} |"
        )
    return "\n".join(lines) + "\n"


LONGER_STEPS = 60_000
# the pretrained runs to each length: pretrained_200k continues pretrained_60k's runs
LONGER_RUNS = {
    LONGER_STEPS: HERE / "pretrained_60k",
    200_000: HERE / "pretrained_200k",
}


def longer_sources(steps: int = LONGER_STEPS) -> dict[str, Path]:
    """The study's joint runs and the pretrained runs of ``steps`` (a key of LONGER_RUNS)."""
    return {
        "joint (the study)": STUDIES / "bear_200k" / "runs",
        "bf16 + pretrained": LONGER_RUNS[steps],
    }


def longer_windows(steps: int) -> list[tuple[int, int]]:
    """(start, end] of each window: every 20k steps up to 60k (four evaluations), then the
    last five evaluations (every 5k steps) up to 100k, 150k, 200k, ... ``steps``, the study's
    "last 5"."""
    windows = [(e - 20_000, e) for e in (20_000, 40_000, 60_000) if e <= steps]
    return windows + [(e - 25_000, e) for e in range(100_000, steps + 1, 50_000)]


def longer_scores(folder: Path, steps: int = LONGER_STEPS) -> dict[int, dict[int, float]]:
    """seed -> {step: score} of the BEAR hopper-medium runs in ``folder``, up to ``steps``;
    only runs that reached ``steps``."""
    out: dict[int, dict[int, float]] = {}
    try:
        paths = find_runs([folder], ("progress.csv",))
    except BearlError:  # no runs there yet
        return out
    for path in paths:
        info = run_info(path)
        if (info.algorithm, info.dataset) != FOLLOWUP[:2] or info.seed is None:
            continue
        d = read_progress(path)
        score = d["NormalizedScore"]
        rows = {int(t): float(v) for t, v in zip(d["Step"], score) if np.isfinite(v) and t <= steps}
        if rows and max(rows) == steps:
            out[info.seed] = rows
    return out


def longer_markdown(sources: dict[str, Path] | None = None, steps: int = LONGER_STEPS) -> str:
    sources = sources or longer_sources(steps)
    runs = {name: longer_scores(folder, steps) for name, folder in sources.items()}
    (ref_name, ref), (var_name, var) = runs.items()
    evaluated = sorted({t for r in (ref, var) for seed in r.values() for t in seed})
    lines = [f"| step | {ref_name} | {var_name} |", "|---|---|---|"]
    for t in evaluated:
        cells = [pm([seed[t] for seed in r.values() if t in seed]) for r in (ref, var)]
        lines.append(f"| {t:,} | {cells[0]} | {cells[1]} |")
    lines += ["", f"| mean of the evaluations at | {ref_name} | {var_name} | against {ref_name} |"]
    lines.append("|---|---|---|---|")
    for start, end in longer_windows(steps):
        window = [t for t in evaluated if start < t <= end]
        if not window:
            continue
        # each seed's mean over the window (every run kept reached ``steps``)
        a, b = (
            [float(np.mean([seed[t] for t in window])) for seed in r.values()] for r in (ref, var)
        )
        span = f"{window[0] // 1000}k-{window[-1] // 1000}k"
        lines.append(f"| {span} | {pm(a)} | {pm(b)} | {verdict(a, b)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", default=[str(s) for s in SOURCES])
    p.add_argument("--out", help="write the markdown here instead of stdout")
    p.add_argument(
        "--followup",
        action="store_true",
        help="the follow-up (studies/cheaper_runs/parity_20k_followup.yaml) instead of the table",
    )
    p.add_argument(
        "--prefit",
        action="store_true",
        help="head start or freezing (studies/cheaper_runs/prefit_20k.yaml) instead of the table",
    )
    p.add_argument(
        "--longer",
        action="store_true",
        help="whether the pretrained VAE's effect lasts (pretrained_60k.yaml; reads "
        "studies/bear_200k/runs and studies/cheaper_runs/pretrained_60k, not PATHS)",
    )
    p.add_argument(
        "--to",
        type=int,
        choices=sorted(LONGER_RUNS),
        default=LONGER_STEPS,
        help="with --longer: the runs continued to 200000 steps (pretrained_200k.yaml, "
        "studies/cheaper_runs/pretrained_200k) instead of 60000",
    )
    a = p.parse_args()
    if a.to != LONGER_STEPS and not a.longer:
        p.error("--to goes with --longer")
    if a.longer:
        text = longer_markdown(steps=a.to)
    elif a.prefit:
        text = prefit_markdown(collect(a.paths, PREFIT_SEEDS))
    elif a.followup:
        seeds = sorted({s for group in FOLLOWUP_GROUPS.values() for s in group})
        text = followup_markdown(collect(a.paths, seeds))
    else:
        text = markdown(collect(a.paths))
    if a.out:
        Path(a.out).write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
