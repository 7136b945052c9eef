"""Learning curves from run folders: runs grouped by algorithm and dataset (and optionally by
settings), the mean over seeds with a shaded band (std or min-max over seeds). Runs on several
datasets get one panel per dataset, each algorithm in the same colour in every panel.

``bearl plot RUN_DIR... -o fig.png``: each argument is a run folder or a folder of runs (searched
one level down). The format follows the output extension (.png, .svg, .pdf).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bearl.errors import BearlError
from bearl.runs.folders import (
    find_runs,
    group_runs,
    run_info,
    settings_suffix,
    warn_mixed_groups,
)
from bearl.files import read_json
from bearl.training.curve import (
    AXIS_LABELS,
    data_level,
    format_steps,
    mark_data_level,
    mark_warm_start,
    read_progress,
    warm_start_end,
)

__all__ = ["AXIS_LABELS", "curves", "plot_runs", "read_progress"]

BANDS = ("std", "minmax", "none")
FORMATS = (".png", ".svg", ".pdf")


@dataclass
class Curve:
    """One group's curve: mean over its runs at the steps all of them logged, and the band."""

    label: str
    dataset: str
    series: str
    """The label without the dataset: the algorithm (and ``by`` settings)."""
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: int
    data_level: float | None = None
    """The data's own level on the metric, when every run of the group has the same."""
    warm_start: int | None = None
    """The step the warm start ends at, when every run of the group has the same."""


def curves(
    paths: Sequence[str | Path],
    metric: str = "NormalizedScore",
    smooth: int = 1,
    band: str = "std",
    by: Sequence[str] = (),
) -> tuple[str, list[Curve]]:
    """The curves ``plot_runs`` draws, and the metric actually used (``NormalizedScore`` falls
    back to ``AverageReturn`` when no run has reference scores)."""
    if band not in BANDS:
        raise BearlError(f"--band {band}: choose one of {', '.join(BANDS)}")
    data = {}
    for r in find_runs(paths):
        try:
            data[r] = read_progress(r)
        except BearlError as e:
            print(f"bearl: skipping {r}: {e}", file=sys.stderr)
    if not data:
        raise BearlError("no run has progress rows yet")

    def has(d: dict[str, np.ndarray], m: str) -> bool:
        return m in d and bool(np.isfinite(d[m]).any())

    if metric == "NormalizedScore" and not any(has(d, metric) for d in data.values()):
        metric = "AverageReturn"
    usable = {r: d for r, d in data.items() if has(d, metric)}
    if not usable:
        columns = sorted({k for d in data.values() for k in d})
        raise BearlError(f"no run has values of '{metric}' (columns: {', '.join(columns)})")
    for r in data.keys() - usable.keys():
        print(f"bearl: skipping {r}: no values of '{metric}'", file=sys.stderr)

    groups = group_runs([run_info(r) for r in usable], by)
    warn_mixed_groups(groups, by)
    out = []
    for label, infos in groups.items():
        name = infos[0].algorithm + settings_suffix(infos[0], by)
        series = [usable[i.path] for i in infos]
        steps = series[0]["Step"]
        for d in series[1:]:
            steps = np.intersect1d(steps, d["Step"])
        ys = np.stack([_smooth(d[metric], smooth)[np.isin(d["Step"], steps)] for d in series])
        mean = _nan_reduce(np.nanmean, ys)
        if band == "std":
            sd = _nan_reduce(np.nanstd, ys)
            low, high = mean - sd, mean + sd
        elif band == "minmax":
            low, high = _nan_reduce(np.nanmin, ys), _nan_reduce(np.nanmax, ys)
        else:
            low = high = mean
        params = [read_json(i.path / "params.json") or {} for i in infos]
        level = _common([data_level(p, metric) for p in params])
        warm = _common([warm_start_end(p) for p in params])
        c = Curve(label, infos[0].dataset, name, steps, mean, low, high, len(series), level, warm)
        out.append(c)
    return metric, out


def plot_runs(
    runs: Sequence[str | Path],
    out: str | Path,
    metric: str = "NormalizedScore",
    smooth: int = 1,
    band: str = "std",
    by: Sequence[str] = (),
) -> Path:
    """Plot ``metric`` against gradient steps for run folders (or folders of runs); returns the
    written file. ``band``: ``std`` (mean ± one std over seeds), ``minmax`` or ``none``."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise BearlError(f"{out}: choose an output file ending in {', '.join(FORMATS)}")
    metric, items = curves(runs, metric, smooth, band, by)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(c.dataset for c in items))
    cols = min(3, len(datasets))
    rows = -(-len(datasets) // cols)
    size = (7.5, 4.5) if len(datasets) == 1 else (4.6 * cols, 3.4 * rows + 0.6)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(c.series for c in items))
    color = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    for ax, dataset in zip(axes.flat, datasets):
        panel = [c for c in items if c.dataset == dataset]
        for c in panel:
            text = c.label if len(datasets) == 1 else c.series
            ax.plot(c.steps, c.mean, color=color[c.series], lw=1.8, label=f"{text}  (n={c.runs})")
            if c.runs > 1 and band != "none":
                ax.fill_between(c.steps, c.low, c.high, color=color[c.series], alpha=0.2, lw=0)
        if metric == "Overestimation":
            ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
        mark_data_level(ax, _common([c.data_level for c in panel]))
        warms = {c.series: c.warm_start for c in panel if c.warm_start is not None}
        for series, step in warms.items():
            steps = np.concatenate([c.steps for c in panel if c.series == series])
            who = f"{series}'s " if len(names) > 1 else ""
            mark_warm_start(ax, step, steps, color[series], who)
        if len(datasets) > 1:
            ax.set_title(dataset, fontsize=10)
        format_steps(ax)
        ax.set_ylabel(AXIS_LABELS.get(metric, metric), fontsize=8 if len(datasets) > 1 else 10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7 if len(datasets) > 1 else 8, loc="best", framealpha=0.85)
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    seeds = max(c.runs for c in items) > 1  # a band over seeds to speak of
    what = {"std": "mean ± 1 std over seeds", "minmax": "mean, min-max over seeds"}
    title = f"{metric}: {what.get(band, 'mean over seeds')}" if seeds else metric
    if smooth > 1:
        title += f", moving average of {smooth} evaluations"
    if len(datasets) == 1:
        axes[0, 0].set_title(title, fontsize=10)
    else:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def _common(values: list) -> object:
    """The value all of ``values`` share, else None."""
    first = values[0] if values else None
    return first if all(v == first for v in values) else None


def _nan_reduce(fn, ys: np.ndarray) -> np.ndarray:
    """``fn(ys, axis=0)`` without the all-NaN-slice warning (an all-NaN column stays NaN)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(ys, axis=0)


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    """Trailing moving average over ``k`` rows, ignoring empty (NaN) cells."""
    if k <= 1:
        return y
    valid = np.isfinite(y)
    sums = np.cumsum(np.where(valid, y, 0.0))
    counts = np.cumsum(valid)
    sums[k:] = sums[k:] - sums[:-k]
    counts[k:] = counts[k:] - counts[:-k]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
