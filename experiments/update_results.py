"""Regenerate the generated parts of docs/results.md from the finished runs of the suite.

    python experiments/update_results.py

Reads every run folder of the suite's ``log_dir`` that has ``result.json`` and rewrites the
blocks of docs/results.md between ``<!-- generated:NAME -->`` and ``<!-- end:NAME -->``:
``runs`` (which seeds have finished, per algorithm and dataset), ``scores`` (``bearl report``),
``overestimation`` and ``action_distance`` (``bearl report --metric Overestimation`` and
``--metric NearestActionDistance``); it also redraws the three figures (``bearl plot``). The
prose around them is written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

from bearl.experiments.plot import plot_runs
from bearl.experiments.report import report

ROOT = Path(__file__).resolve().parents[1]
PEER = "BEAR-d3rlpy"
REPAIRED = "BEAR-d3rlpy-repaired"  # experiments/peer_bear.py --repaired: not part of the plan
DISTANCE = "NearestActionDistance"


def finished(log_dir: Path) -> list[Path]:
    return sorted(d for d in log_dir.iterdir() if (d / "result.json").is_file())


def runs_table(runs: list[Path], algos: list[str], datasets: list[str], seeds: int) -> str:
    """Seeds finished per (algorithm, dataset), as a Markdown table; d3rlpy's repaired BEAR
    gets a row of its own when it has runs, outside the planned count."""
    done: dict[tuple[str, str], list[int]] = {}
    for d in runs:
        variant = json.loads((d / "variant.json").read_text())
        train = variant.get("train", variant)
        key = (str(train["algo"]), str(train["dataset"]))
        done.setdefault(key, []).append(int(train["seed"]))
    planned = sum(len(done.get((algo, ds), [])) for algo in algos for ds in datasets)
    extra = sum(len(v) for (algo, _), v in done.items() if algo == REPAIRED)
    lines = ["| algorithm | " + " | ".join(datasets) + " |", "|---" + "|---" * len(datasets) + "|"]
    for algo in algos + ([REPAIRED] if extra else []):
        cells = []
        for ds in datasets:
            got = sorted(done.get((algo, ds), []))
            cells.append(", ".join(map(str, got)) if got else "–")
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    total = len(algos) * len(datasets) * seeds
    lines.append("")
    more = f"; also {extra} of {REPAIRED}" if extra else ""
    lines.append(
        f"{planned} of {total} runs finished (seeds listed per cell; {seeds} seeds planned{more})."
    )
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(
        rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- end:{name} -->)", flags=re.DOTALL
    )
    if not pattern.search(text):
        raise SystemExit(f"docs/results.md has no block <!-- generated:{name} -->")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "experiments" / "hopper_suite.yaml"))
    p.add_argument("--doc", default=str(ROOT / "docs" / "results.md"))
    a = p.parse_args()
    spec = yaml.safe_load(Path(a.spec).read_text())
    log_dir = ROOT / spec["log_dir"]
    runs = finished(log_dir)
    seeds = int(spec.get("num_seeds", len(spec.get("seeds", [0]))))
    doc = Path(a.doc)
    text = doc.read_text()
    text = replace_block(
        text, "runs", runs_table(runs, [*spec["algos"], PEER], spec["datasets"], seeds)
    )
    text = replace_block(text, "scores", report(runs))
    with_critic = [d for d in runs if not d.name.startswith(("BC_", PEER))]  # d3rlpy: not logged
    text = replace_block(text, "overestimation", report(with_critic, metric="Overestimation"))
    own = [d for d in runs if not d.name.startswith(PEER)]  # d3rlpy's runs: not logged
    text = replace_block(text, "action_distance", report(own, metric=DISTANCE))
    doc.write_text(text)
    figures = ROOT / "docs" / "figures"
    plot_runs(runs, figures / "hopper_suite_score.png")
    plot_runs(with_critic, figures / "hopper_suite_overestimation.png", metric="Overestimation")
    plot_runs(own, figures / "hopper_suite_action_distance.png", metric=DISTANCE)
    print(f"{doc}: {len(runs)} finished runs; figures in {figures}")


if __name__ == "__main__":
    main()
