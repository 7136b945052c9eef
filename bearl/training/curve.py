"""A run's learning curve, ``progress.png``: the training loop draws it at the end of every run,
so ``bearl.train`` writes it as ``bearl train`` does.

It lives here, beside the other run files the loop writes, because one run's curve needs only
that run's folder (``progress.csv``, ``params.json``). Comparing runs (seeds, algorithms,
datasets, settings) is ``bearl plot`` (bearl/runs/plot.py), one layer up, which reads
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


# -- what the axes show, for one run here and for runs compared in bearl plot ----------------------
def step_label(x: float, _pos: object = None) -> str:
    """A gradient-step tick in plain numbers: 500, 2.5k, 50k, 1.5M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:g}{suffix}"
    return f"{x:g}"


def format_steps(ax) -> None:
    """Label the x axis of ``ax`` in gradient steps, with ticks such as 5k, 10k, 15k."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.set_xlabel("gradient steps")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10], integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(step_label))


def data_level(params: dict, metric: str) -> float | None:
    """The data's own level on ``metric`` (the mean over its episodes), from a run's params.json
    dataset entry: its normalized return for NormalizedScore, its return for AverageReturn
    (normalized from the entry's reference scores when the entry has only the return); None
    when the entry does not have it (a run of an older bearl) or for another metric."""
    entry = params.get("dataset") or {}
    if metric == "AverageReturn":
        return _number(entry.get("return_mean"))
    if metric != "NormalizedScore":
        return None
    level = _number(entry.get("normalized_return_mean"))
    ret, lo, hi = (_number(entry.get(k)) for k in ("return_mean", "ref_min_score", "ref_max_score"))
    if level is None and None not in (ret, lo, hi) and hi != lo:
        level = 100.0 * (ret - lo) / (hi - lo)
    return level


def warm_start_end(params: dict) -> int | None:
    """The step a run's warm start ends at (BEAR's ``warm_start_steps``), or None."""
    warm = _number((params.get("algo") or {}).get("warm_start_steps"))
    return int(warm) if warm else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else None


def mark_data_level(ax, level: float | None) -> None:
    if level is not None:
        ax.axhline(level, color="0.35", lw=1.0, ls="--", label=f"the data's level ({level:.1f})")


def mark_warm_start(ax, step: int | None, steps: np.ndarray, color: str, who: str = "") -> None:
    """A dotted line where the warm start ends, when it ends inside the logged steps."""
    if step is not None and len(steps) and step < steps.max():
        label = f"{who}warm start ends ({step_label(step)})"
        ax.axvline(step, color=color, lw=1.0, ls=":", label=label)


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
    (line,) = ax.plot(steps[ok], y[ok], lw=1.8, marker="o", ms=3, label=algo)
    mark_data_level(ax, data_level(params, metric))
    mark_warm_start(ax, warm_start_end(params), steps, line.get_color())
    format_steps(ax)
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
