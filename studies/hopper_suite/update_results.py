"""Regenerate which seeds of the suite have finished, and its figures, from its runs.

    python studies/hopper_suite/update_results.py   # the hopper suite (BEAR, BCQ, BC, TD3, d3rlpy)
    python studies/hopper_suite/update_results.py --modern   # TD3+BC, IQL and CQL on it (issue #23)

Reads every run folder of the suite's ``log_dir`` that has ``result.json`` and rewrites the
block ``runs`` of the study's README.md, between ``<!-- generated:runs -->`` and
``<!-- end:runs -->`` (which seeds have finished, per algorithm and dataset); it also redraws
the three figures (``bearl plot``). With ``--modern`` it reads
``studies/modern_references/hopper_suite_modern.yaml``'s runs and rewrites the block ``modern``
of that study's README.md: which of its seeds have finished. The score tables of both pages are
``bearl report`` commands, each printed above its table; the prose is written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

from bearl.runs.plot import plot_runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODERN = HERE.parent / "modern_references"
PEER = "BEAR-d3rlpy"
REPAIRED = "BEAR-d3rlpy-repaired"  # peer_bear.py --repaired: not in the plan
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
        raise SystemExit(f"the page has no block <!-- generated:{name} -->")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def spec_algos(spec: dict) -> list[str]:
    """The algorithms of a sweep spec, in its order (top-level ``algos`` or its ``parts``')."""
    out = list(spec.get("algos", []))
    for part in spec.get("parts", []):
        out += [a for a in part.get("algos", []) if a not in out]
    return out


def modern(doc: Path) -> None:
    """Rewrite block ``modern`` of the modern references' README.md (see the module's
    docstring)."""
    spec = yaml.safe_load((MODERN / "hopper_suite_modern.yaml").read_text())
    runs = finished(ROOT / spec["log_dir"])
    body = runs_table(runs, spec_algos(spec), spec["datasets"], int(spec["num_seeds"]))
    doc.write_text(replace_block(doc.read_text(), "modern", body))
    print(f"{doc}: block modern, {len(runs)} finished runs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(HERE / "hopper_suite.yaml"))
    p.add_argument("--doc", default=None, help="the page to rewrite (default: its README.md)")
    p.add_argument("--modern", action="store_true", help="only the block of issue #23's runs")
    a = p.parse_args()
    if a.modern:
        modern(Path(a.doc or MODERN / "README.md"))
        return
    spec = yaml.safe_load(Path(a.spec).read_text())
    log_dir = ROOT / spec["log_dir"]
    runs = finished(log_dir)
    seeds = int(spec.get("num_seeds", len(spec.get("seeds", [0]))))
    doc = Path(a.doc or HERE / "README.md")
    text = doc.read_text()
    text = replace_block(
        text, "runs", runs_table(runs, [*spec["algos"], PEER], spec["datasets"], seeds)
    )
    doc.write_text(text)
    with_critic = [d for d in runs if not d.name.startswith(("BC_", PEER))]  # d3rlpy: not logged
    own = [d for d in runs if not d.name.startswith(PEER)]  # d3rlpy's runs: not logged
    figures = HERE / "figures"
    plot_runs(runs, figures / "hopper_suite_score.png")
    plot_runs(with_critic, figures / "hopper_suite_overestimation.png", metric="Overestimation")
    plot_runs(own, figures / "hopper_suite_action_distance.png", metric=DISTANCE)
    print(f"{doc}: {len(runs)} finished runs; figures in {figures}")


if __name__ == "__main__":
    main()
