"""Which FQE settings? Each variant's estimates of the same snapshots, every ``--trace`` steps,
against the truth at the snapshots' steps (progress.csv), with the seconds each fit took.

    python studies/offline_selection/fqe_settings.py RUN [RUN...] --steps 6000 --trace 1000 \
        --every 2 --json studies/offline_selection/fqe_settings.json

All the runs must share one dataset. ``--every 2`` takes every other snapshot of each run.

    cd studies/offline_selection
    python fqe_settings.py --table fqe_convergence.json fqe_small*.json
    python fqe_settings.py --parity fqe_bf16.json      # also fqe_table.json

summarize the measurements (the tables in README.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from scipy import stats

from bearl.ope.estimate import run_dataset
from bearl.perf import machine_line
from bearl.policy.load import load_policy
from bearl.training.checkpoint import snapshot_steps
from bearl.training.fqe import FQEConfig, fit_fqe

VARIANTS = {
    "256x2 lr1e-4 tau.005": FQEConfig(
        hidden=(256, 256), lr=1e-4, tau=0.005, heads=1, init_mean=False, next_actions="fresh"
    ),
    "128x2 lr3e-4 tau.01": FQEConfig(
        hidden=(128, 128), lr=3e-4, tau=0.01, heads=1, init_mean=False, next_actions="fresh"
    ),
    # the target's lag (1 / tau steps) times the horizon (1 / (1 - gamma)) bounds how fast
    # values propagate: 20k steps at tau .005 are only ~100 backups (0.99^100 = 0.37 left)
    "128x2 lr3e-4 tau.005": FQEConfig(
        hidden=(128, 128), lr=3e-4, tau=0.005, heads=1, init_mean=False, next_actions="fresh"
    ),
    "128x2 lr3e-4 tau.02": FQEConfig(
        hidden=(128, 128), lr=3e-4, tau=0.02, heads=1, init_mean=False, next_actions="fresh"
    ),
    "128x2 lr3e-4 tau.05": FQEConfig(
        hidden=(128, 128), lr=3e-4, tau=0.05, heads=1, init_mean=False, next_actions="fresh"
    ),
    "256x2 lr3e-4 tau.02": FQEConfig(
        hidden=(256, 256), lr=3e-4, tau=0.02, heads=1, init_mean=False, next_actions="fresh"
    ),
    # the critic starts at the data's mean reward / (1 - gamma) instead of about 0
    "128x2 lr3e-4 tau.02 init": FQEConfig(
        hidden=(128, 128), lr=3e-4, tau=0.02, heads=1, init_mean=True, next_actions="fresh"
    ),
    "128x2 lr3e-4 tau.05 init": FQEConfig(
        hidden=(128, 128), lr=3e-4, tau=0.05, heads=1, init_mean=True, next_actions="fresh"
    ),
    "256x2 lr3e-4 tau.02 init": FQEConfig(
        hidden=(256, 256), lr=3e-4, tau=0.02, heads=1, init_mean=True, next_actions="fresh"
    ),
    "128x2 lr1e-3 tau.02 init": FQEConfig(
        hidden=(128, 128), lr=1e-3, tau=0.02, heads=1, init_mean=True, next_actions="fresh"
    ),
    # bf16 against the seed-to-seed spread of fp32 (the defaults, one head, fresh draws)
    "default 1 head": FQEConfig(heads=1, next_actions="fresh"),
    "default 1 head seed1": FQEConfig(heads=1, seed=1, next_actions="fresh"),
    "default 1 head bf16": FQEConfig(heads=1, precision="bf16", next_actions="fresh"),
    # the next actions drawn once per transition (a table) against fresh draws' seed spread
    "default 1 head table": FQEConfig(heads=1, next_actions="table"),
    "default 1 head table seed1": FQEConfig(heads=1, seed=1, next_actions="table"),
}


def truth(run: Path) -> dict[int, float]:
    with open(run / "progress.csv", newline="") as f:
        return {int(float(r["Step"])): float(r["DiscountedReturnStart"]) for r in csv.DictReader(f)}


def summary(paths: list[str], at: tuple[int, ...] = (2000, 10000, 20000)) -> str:
    """One row per variant of the given JSON files: the mean absolute error of the snapshots
    whose policies stay near the data (all but TD3's) at the steps ``at``, and the range of
    TD3's final estimates (whose fits diverge)."""
    lines = [
        "| file | snapshots | settings | abs. error at " + " / ".join(f"{s // 1000}k" for s in at)
        + " | TD3's estimates at the end | seconds |",
        "|---|---:|---|---|---|---:|",
    ]  # fmt: skip
    for path in paths:
        d = json.loads(Path(path).read_text())
        truth = np.array(d["truth"])
        near = np.array([not n.startswith("TD3_") for n in d["snapshots"]])
        for name, v in d["variants"].items():
            steps = [r["step"] for r in v["trace"]]
            est = np.array(v["trace_estimates"])
            errs = [
                f"{np.mean(np.abs(est[steps.index(s)][near] - truth[near])):.0f}"
                if s in steps else "-"
                for s in at
            ]  # fmt: skip
            td3 = est[-1][~near]
            spread = f"{td3.min():,.0f} to {td3.max():,.0f}" if td3.size else "-"
            lines.append(
                f"| {Path(path).name} | {len(truth)} | {name} | {' / '.join(errs)} | "
                f"{spread} | {v['seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def parity(path: str) -> str:
    """How far each variant's final estimates are from the file's first variant's (mean
    absolute difference over the snapshots near the data): bf16 against the seed-to-seed
    spread of fp32, the action table against that of fresh draws."""
    d = json.loads(Path(path).read_text())
    near = np.array([not n.startswith("TD3_") for n in d["snapshots"]])
    variants = list(d["variants"].items())
    base_name, base = variants[0]
    ref = np.array(base["estimates"])[near]
    lines = [f"against `{base_name}` ({near.sum()} snapshots near the data):"]
    for name, v in variants[1:]:
        diff = np.abs(np.array(v["estimates"])[near] - ref)
        lines.append(
            f"- {name}: mean absolute difference {diff.mean():.1f} (largest {diff.max():.1f}), "
            f"{v['seconds'] / base['seconds']:.2f}x the seconds"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*")
    p.add_argument("--table", nargs="+", metavar="JSON", help="summarize earlier measurements")
    p.add_argument("--parity", metavar="JSON", help="each variant against the file's first")
    p.add_argument("--at", default="2000,10000,20000", help="--table's steps, comma-separated")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--trace", type=int, default=1000)
    p.add_argument("--every", type=int, default=1, help="every N-th snapshot of each run")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    p.add_argument("--json", default=None, help="written after every variant")
    a = p.parse_args()
    if a.table or a.parity:
        at = tuple(int(x) for x in a.at.split(","))
        print(summary(a.table, at) if a.table else parity(a.parity), end="")
        return
    runs = [Path(r) for r in a.runs]
    data = run_dataset(runs[0], None)
    rules, true, names = [], [], []
    for run in runs:
        t = truth(run)
        for step in snapshot_steps(run)[a.every - 1 :: a.every]:
            rules.append(load_policy(run, checkpoint=f"step_{step}").module(deterministic=False))
            true.append(t[step])
            names.append(f"{run.name}@{step}")
    gamma = 0.99
    out = {"machine": machine_line(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out["snapshots"], out["truth"], out["variants"] = names, true, {}
    for name in a.variants.split(","):
        cfg = VARIANTS[name]
        res = fit_fqe(rules, data, replace(cfg, steps=a.steps), gamma, trace_every=a.trace)
        rows = []
        for step, est in res.trace:
            rho = stats.spearmanr(est, true).statistic
            err = float(np.mean(np.abs(est - np.array(true))))
            rows.append({"step": step, "spearman": round(float(rho), 3), "abs_error": err})
            print(f"{name:24s} step {step:6d}: Spearman {rho:+.2f}, abs. error {err:8.1f}")
        print(f"{name:24s} {res.seconds:.0f} s for {a.steps} steps of {len(rules)} critics")
        out["variants"][name] = {
            "settings": asdict(replace(cfg, steps=a.steps)),
            "seconds": round(res.seconds, 1),
            "trace": rows,
            "estimates": [float(x) for x in res.estimate],
            "trace_estimates": [[round(float(x), 3) for x in est] for _, est in res.trace],
        }
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
