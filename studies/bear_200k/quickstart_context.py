"""What `bearl train` says at its end to put a score in context: per suite dataset of this
study, the data's own level, BC at the quick start's budget, and BC and BEAR at 200k steps.
Writes the package's bearl/data/study_200k.json from the committed run folders.

    python studies/bear_200k/quickstart_context.py          # print
    python studies/bear_200k/quickstart_context.py --write  # bearl/data/study_200k.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from bearl.config import TrainConfig
from bearl.runs.folders import find_runs
from bearl.runs.report import Window, run_scores

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "bearl" / "data" / "study_200k.json"
QUICK = TrainConfig().steps  # the quick start's budget


def context() -> dict:
    """``{dataset: {"data": level, "BC": {"at_quick": .., "last5_200k": ..}, "BEAR": {..}}}``;
    each value the mean over seeds (fp32 and bf16 pooled, as the study's table)."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    levels: dict = defaultdict(list)
    for run in find_runs([HERE / "runs", HERE / "stage3"]):
        at_quick = run_scores(run, window=Window(at=QUICK))
        end = run_scores(run, window=Window(at=200_000, last=5))
        algo, data = at_quick.info.algorithm, at_quick.info.dataset
        if algo not in ("BC", "BEAR") or not end.reached:
            continue
        values[data][algo]["last5_200k"].append(end.last_score)
        if algo == "BC":  # BEAR's runs here warm up for 40k steps: not the quick start's BEAR
            values[data][algo]["at_quick"].append(at_quick.final_score)
        if at_quick.level is not None:
            levels[data].append(at_quick.level)
    out = {}
    for data in sorted(values):
        entry = {"data": round(float(np.median(levels[data])), 1), "quick_steps": QUICK}
        for algo, cols in sorted(values[data].items()):
            entry[algo] = {k: round(float(np.mean(v)), 1) for k, v in cols.items()}
            entry[algo]["seeds"] = len(cols["last5_200k"])
        out[data] = entry
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"write {OUT.name} into the package")
    text = json.dumps(context(), indent=2) + "\n"
    if p.parse_args().write:
        OUT.write_text(text)
        print(f"{OUT}: written")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
