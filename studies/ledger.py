"""The core-hour ledgers of the studies' READMEs, from the committed run folders.

    python studies/ledger.py studies/bear_200k/runs studies/cheaper_runs/runs
    python studies/ledger.py behavior/halfcheetah-tqc     # a behaviour-policy run

For each folder: the finished runs (``result.json``) with their wall time on one core, the
behaviour-VAE fits their debug.log reports (``behavior_model=pretrained``: fitted once per
dataset, VAE settings, seed and precision, before the run's own clock starts), and the
unfinished runs with the step and wall time of their last progress row (a finished run being
extended to more steps counts as unfinished until its result.json catches up). Wall time is what a
run's wall clock saw: a run paused with SIGSTOP for a benchmark counts the pause, a run
restarted from step 0 counts only its last start. The FQE fits of ``bearl ope`` count the
CPU seconds its ope.json reports (``cpu_seconds``, the last call's fit with the next-action
table: core time, whatever else shared the cores), or its wall seconds in a file from before.
One line per run, then the totals. A folder of ``bearl data train-behavior`` (it has
``evaluations.csv``) gets one line: its env steps and wall time at the last evaluation.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

from bearl.errors import BearlError
from bearl.files import read_json
from bearl.training.curve import read_progress

FIT = re.compile(r"behaviour model: VAE fitted alone for \d+ steps in ([\d.]+) s")


def vae_fit_seconds(run: Path) -> float:
    """Seconds of the behaviour-VAE fits that ``run``'s debug.log reports (0 without any)."""
    log = run / "debug.log"
    if not log.exists():
        return 0.0
    return sum(float(m.group(1)) for m in FIT.finditer(log.read_text(errors="replace")))


def ope_seconds(run: Path) -> float:
    """Core-seconds of the FQE fit that ``run``'s ope.json reports (its CPU time, else its wall
    time; 0 without one)."""
    ope = read_json(run / "ope.json") or {}
    return float(ope.get("cpu_seconds", ope.get("seconds", 0.0)))


def last_progress(run: Path) -> tuple[int, float] | None:
    """(step, wall time in s) of the last row of ``run``'s progress.csv, or None (no rows, or
    no wall time logged)."""
    try:
        d = read_progress(run)
    except BearlError:  # no progress.csv or no rows yet
        return None
    if "WallTime" not in d:
        return None
    return int(d["Step"][-1]), float(d["WallTime"][-1])


def ledger(folder: Path) -> tuple[list[str], float, float, float, float]:
    """Lines for ``folder``, and its (finished, VAE-fit, unfinished, FQE) seconds."""
    lines: list[str] = []
    done = fits = running = fqe = 0.0
    for run in sorted(p for p in folder.iterdir() if p.is_dir()):
        result = read_json(run / "result.json")
        fit, ope = vae_fit_seconds(run), ope_seconds(run)
        fits, fqe = fits + fit, fqe + ope
        extra = (f" + {fit:,.0f} s VAE fit" if fit else "") + (
            f" + {ope:,.0f} s FQE" if ope else ""
        )
        last = last_progress(run)
        if result and last and result.get("steps") and last[0] > int(result["steps"]):
            # a finished run being extended to more steps: its old result.json stays until
            # the longer run ends, and its wall time goes on from the result's
            running += last[1]
            lines.append(
                f"  {run.name:<56} at {last[0]:>7,} {last[1] / 3600:6.2f} h so far (extending "
                f"from {int(result['steps']):,}){extra}"
            )
        elif result and "wall_time" in result:
            done += float(result["wall_time"])
            lines.append(f"  {run.name:<56} done     {result['wall_time'] / 3600:6.2f} h{extra}")
        elif last is not None:
            running += last[1]
            lines.append(f"  {run.name:<56} at {last[0]:>7,} {last[1] / 3600:6.2f} h so far{extra}")
    return lines, done, fits, running, fqe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    a = p.parse_args()
    for folder in a.folders:
        if (folder / "evaluations.csv").exists():
            with open(folder / "evaluations.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            last = rows[-1] if rows else {"step": 0, "wall_time": 0}
            hours = float(last["wall_time"]) / 3600
            print(f"{folder}: behaviour run at {int(last['step']):,} env steps, {hours:.2f} h")
            continue
        lines, done, fits, running, fqe = ledger(folder)
        print(f"{folder}:")
        print("\n".join(lines))
        total = (done + fits + running + fqe) / 3600
        print(
            f"  finished runs {done / 3600:.2f} core-hours, VAE fits {fits / 3600:.2f}, "
            f"unfinished runs so far {running / 3600:.2f}, FQE fits {fqe / 3600:.2f}; "
            f"total {total:.2f}"
        )


if __name__ == "__main__":
    main()
