"""A run's learning curve, ``progress.png``: the training loop draws it at the end of every run,
so ``bearl.train`` writes it as ``bearl train`` does.

It lives here, beside the other run files the loop writes, because one run's curve needs only
that run's folder (``progress.csv``, ``params.json``). Comparing runs (seeds, algorithms,
datasets, settings) is ``bearl plot`` (bearl/experiments/plot.py), one layer up, which reads
the rows and labels the axes with the helpers below. Drawing uses matplotlib's ``Figure``
without pyplot, so a run started from a notebook leaves its matplotlib backend alone.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from bearl.errors import BearlError
from bearl.files import dataset_label, read_json, write_atomic

AXIS_LABELS = {
    "NormalizedScore": "normalized score (0 random, 100 expert)",
    "AverageReturn": "average return",
    "BestScore": "best normalized score so far",
    "Overestimation": "Q(s0, pi(s0)) - discounted return",
    "QEstimateStart": "Q(s0, pi(s0))",
    "DiscountedReturnStart": "discounted return from s0",
    "ActionMSE": "MSE(pi(s), dataset action)",
    "NearestActionDistance": "distance of (s, pi(s)) to the data",
}


def read_progress(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Columns of a run's progress.csv as float arrays (empty cells are NaN)."""
    path = Path(run_dir) / "progress.csv"
    if not path.exists():
        raise BearlError(f"{run_dir}: no progress.csv (not a bearl run folder?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise BearlError(f"{path}: no rows yet")
    return {k: np.array([_float(r.get(k)) for r in rows]) for k in rows[0]}


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in ("", None) else np.nan
    except ValueError:
        return np.nan


def has_values(columns: dict[str, np.ndarray], metric: str) -> bool:
    return metric in columns and bool(np.isfinite(columns[metric]).any())


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the run's normalized score (its average return without reference scores) against
    gradient steps into ``out`` (default: ``RUN_DIR/progress.png``); returns the file."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "progress.png"
    columns = read_progress(run_dir)
    metric = "NormalizedScore" if has_values(columns, "NormalizedScore") else "AverageReturn"
    if not has_values(columns, metric):
        raise BearlError(f"{run_dir}: no evaluation in progress.csv yet")
    params = read_json(run_dir / "params.json") or {}
    train = params.get("train") or {}
    algo = params.get("algorithm") or train.get("algo") or run_dir.name
    dataset = dataset_label(str(train.get("dataset", "?")))

    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    steps, y = columns["Step"], columns[metric]
    ok = np.isfinite(y)
    ax.plot(steps[ok], y[ok], lw=1.8, marker="o", ms=3, label=algo)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(AXIS_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    seed = train.get("seed")
    ax.set_title(f"{algo} on {dataset}" + (f", seed {seed}" if seed is not None else ""))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix.lstrip(".") or "png", dpi=150)
    write_atomic(out, buf.getvalue())
    return out
