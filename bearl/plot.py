"""Learning curves from run folders: runs grouped by algorithm and dataset, mean and a band
(min to max over seeds) per group."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from bearl.errors import BearlError


def read_progress(run_dir: Path) -> dict[str, np.ndarray]:
    """Columns of a run's progress.csv as float arrays (empty cells are NaN)."""
    path = Path(run_dir) / "progress.csv"
    if not path.exists():
        raise BearlError(f"{run_dir}: no progress.csv (not a bearl run folder?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise BearlError(f"{path}: no rows yet")
    return {
        k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows])
        for k in rows[0]
    }


def _group(run_dir: Path) -> str:
    try:
        v = json.loads((Path(run_dir) / "variant.json").read_text())
        return f"{v['algorithm']} / {Path(str(v['train']['dataset'])).name}"
    except (OSError, KeyError, ValueError):
        return Path(run_dir).name


def plot_runs(
    runs: list[Path], out: Path, metric: str = "NormalizedScore", smooth: int = 1
) -> Path:
    """Plot ``metric`` against gradient steps; returns the written file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    for r in runs:
        data = read_progress(r)
        if metric not in data:
            if metric == "NormalizedScore" and "AverageReturn" in data:
                metric = "AverageReturn"
            else:
                raise BearlError(f"{r}: progress.csv has no column '{metric}'")
        groups[_group(r)].append(data)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, items in sorted(groups.items()):
        n = min(len(d["Step"]) for d in items)
        steps = items[0]["Step"][:n]
        ys = np.stack([_smooth(d[metric][:n], smooth) for d in items])
        mean = np.nanmean(ys, axis=0)
        ax.plot(steps, mean, label=f"{label} ({len(items)} seed{'s' * (len(items) > 1)})")
        if len(items) > 1:
            ax.fill_between(steps, np.nanmin(ys, 0), np.nanmax(ys, 0), alpha=0.2)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or len(y) < k:
        return y
    kernel = np.ones(k) / k
    pad = np.concatenate([np.full(k - 1, y[0]), y])
    return np.convolve(pad, kernel, mode="valid")
