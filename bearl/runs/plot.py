"""Learning curves from run folders: runs grouped by algorithm and dataset (and optionally by
settings), the mean over seeds with a shaded band (sample std, ddof=1, or min-max over seeds).
Runs on several datasets get one panel per dataset, each algorithm in the same colour in every
panel. With ``--profile``, performance profiles instead: per algorithm, the fraction of its runs
(on all its datasets) with a score above tau, against tau, with a stratified bootstrap band.

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
from bearl.files import read_json
from bearl.runs import stats
from bearl.runs.folders import (
    find_runs,
    group_runs,
    run_info,
    settings_suffix,
    warn_mixed_groups,
    with_ope,
)
from bearl.training.curve import (
    AXIS_LABELS,
    data_level,
    format_steps,
    mark_data_level,
    mark_warm_start,
    read_progress,
    warm_start_end,
)

__all__ = ["AXIS_LABELS", "curves", "plot_profile", "plot_runs", "read_progress", "title_of"]

BANDS = ("std", "minmax", "none")
FORMATS = (".png", ".svg", ".pdf")

TITLES = {
    "NormalizedScore": "normalized score",
    "DeterministicNormalizedScore": "normalized score of the mean action",
    "AverageReturn": "average return",
    "DeterministicAverageReturn": "average return of the mean action",
    "BestScore": "best normalized score so far",
    "Overestimation": "overestimation of the critic at the start states",
    "QEstimateStart": "the critic's estimate at the start states",
    "DiscountedReturnStart": "discounted return from the start states",
    "ActionMSE": "mean squared difference of the policy's actions from the data's",
    "NearestActionDistance": "distance of the policy's state-action pairs to the data",
    "UpdatesPerSecond": "gradient steps per second",
}
"""Figure titles of progress.csv columns; any other column is spelt out by ``title_of``."""


def title_of(metric: str) -> str:
    """A readable title for a progress.csv column: ``TITLES``, else its words in lower case
    (``critic_loss`` -> "critic loss", ``AverageEpisodeLength`` -> "average episode length";
    acronyms kept: ``ActionKL`` -> "action KL")."""
    import re

    if metric in TITLES:
        return TITLES[metric]
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+|[A-Z]+", metric.replace("_", " "))
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text or metric


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
            data[r] = with_ope(r, read_progress(r))
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
            low, high = mean - _sample_std(ys), mean + _sample_std(ys)
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
    name = title_of(metric)
    title = f"{name}: {what.get(band, 'mean over seeds')}" if seeds else name
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


def plot_profile(
    runs: Sequence[str | Path],
    out: str | Path,
    metric: str = "NormalizedScore",
    at: int | None = None,
    last: int | None = None,
    by: Sequence[str] = (),
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
) -> Path:
    """Performance profiles (``bearl plot --profile``): per algorithm (and ``by`` settings), the
    fraction of its runs, on all its datasets, whose score is above tau, against tau, with a
    95 % stratified bootstrap band (runs resampled within each dataset). A run's score is its
    final value, its value at step ``at``, or with ``last`` the mean of its last ``last``
    evaluations (up to ``at``), as in ``bearl report``; runs short of ``at`` are left out."""
    from bearl.runs.report import Window, _comparable, strata, summarize
    from bearl.training.curve import step_label

    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise BearlError(f"{out}: choose an output file ending in {', '.join(FORMATS)}")
    if resamples < 1:
        raise BearlError(f"--resamples {resamples}: give 1 or more")
    window = Window(at, last)
    rows = summarize(runs, by, metric, window, pool_precision=True)
    short = [s for r in rows for s in r.short]
    if short:
        print(f"bearl: left out, short of step {at:,}: {', '.join(short)}", file=sys.stderr)
    used, note = _comparable(rows)
    if note:
        print(f"bearl: {note}", file=sys.stderr)
    groups = strata(used)
    if not groups:
        raise BearlError("no run has a score to profile" + (f" at step {at:,}" if at else ""))
    everything = np.concatenate([v for g in groups.values() for v in g.values()])
    lo, hi = float(everything.min()), float(everything.max())
    pad = 0.05 * (hi - lo) or 1.0
    taus = np.linspace(lo - pad, hi + pad, 241)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    banded = False
    for i, (series, by_data) in enumerate(groups.items()):
        parts = list(by_data.values())
        frac, low, high = stats.performance_profile(parts, taus, resamples, seed)
        n, k = sum(map(len, parts)), len(parts)
        color = palette[i % len(palette)]
        label = f"{series}  (n={n}, {k} dataset{'s' if k > 1 else ''})"
        ax.plot(taus, frac, color=color, lw=1.8, label=label, drawstyle="steps-post")
        if low is not None:
            ax.fill_between(taus, low, high, color=color, alpha=0.2, lw=0, step="post")
            banded = True
    measure = "return" if used and all(r.measure == "return" for r in used) else None
    name = title_of("AverageReturn" if measure else metric)
    ax.set_xlabel(f"{name} τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    if last:
        score = f"mean of the last {last} evaluations" + (f" up to {step_label(at)}" if at else "")
    else:
        score = f"evaluation at {step_label(at)}" if at is not None else "final evaluation"
    title = f"performance profile: {name} ({score})"
    if banded:
        title += "\n95% stratified bootstrap band"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def _common(values: list) -> object:
    """The value all of ``values`` share, else None."""
    first = values[0] if values else None
    return first if all(v == first for v in values) else None


def _sample_std(ys: np.ndarray) -> np.ndarray:
    """The sample std (ddof=1) over runs (rows) at each step, ignoring empty cells; 0 where
    fewer than two runs have a value (no spread to show)."""
    n = np.isfinite(ys).sum(axis=0)
    sd = _nan_reduce(lambda y, axis: np.nanstd(y, axis=axis, ddof=1), np.where(n >= 2, ys, 0.0))
    return np.where(n >= 2, sd, 0.0)


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
