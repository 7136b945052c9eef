"""Result tables: one row per (algorithm, dataset) with the final and best normalized score as
mean ± std over seeds (or, with ``--metric``, the final and largest value of another
progress.csv column, e.g. ``Overestimation``); windows of evaluations up to a step; robust
aggregates over datasets and the probability that one algorithm beats another.

``bearl report RUN_DIR... [--format markdown|csv] [--metric COLUMN] [--at STEP]... [--last K]``.
Each run's numbers come from its ``result.json`` (``final_score``, ``best_score``, ``steps``),
or from ``progress.csv`` for a run that has not finished (last row's ``NormalizedScore``, the
max over rows, the last ``Step``); such runs are counted in the row's ``running`` and marked in
the Markdown table, so that a number still moving is not read as a result.
Where a run has no normalized score (no reference scores), the group uses raw returns and the
table says so. The ± is the sample std over seeds (ddof=1; one seed: its value alone). Any
other metric is read from ``progress.csv`` (its last value and its maximum over the
evaluations); runs without values of it (BC has no Q) are left out with a note.

Windows (``--at STEP``, ``--last K``; every number then from ``progress.csv``): the evaluation
at STEP (or the last one before it), the best up to it, and the mean of the last K evaluations
up to it. Runs that have not reached STEP are left out of the numbers, counted apart in the
seeds cell (``2 (+1 short)``) and named under the table. Without ``--at`` the window ends at
each run's last evaluation. ``--at`` more than once (``Window.also_at``): the columns of each
step side by side, over the runs that reached the largest.

Across runs (bearl/runs/stats.py; the score of a run is its last-K mean with ``--last``, else
its value at ``--at`` or its final one): ``--ci`` adds each row's 95 % bootstrap interval of the
mean over seeds, ``--matrix`` lays the rows out as datasets by algorithms, ``--aggregate`` a
table per algorithm of the mean, median and IQM of its runs on all its datasets with stratified
bootstrap intervals, ``--compare A B`` and ``--improvement`` the probability of improvement
P(A > B).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bearl.errors import BearlError, one_line
from bearl.files import as_int, read_json
from bearl.runs import stats
from bearl.runs.folders import (
    RunInfo,
    cost_settings,
    diverged_steps,
    find_runs,
    group_runs,
    run_info,
    settings_suffix,
    shown_setting,
    warn_mixed_groups,
    with_ope,
)

FORMATS = ("markdown", "csv")
SCORE = "NormalizedScore"


@dataclass
class RunScores:
    """A run's final and best score, normalized and raw, and its gradient steps; in a window
    (``--at``/``--last``) the value at its end (in the final fields), the best up to it, and the
    mean of its last K evaluations."""

    info: RunInfo
    steps: int | None
    final_score: float | None
    best_score: float | None
    final_return: float | None
    best_return: float | None
    finished: bool = True
    """Whether the run has its result.json (else: its numbers so far, from progress.csv)."""
    last_score: float | None = None
    last_return: float | None = None
    reached: bool = True
    """Whether the run has reached the window's step (``--at``)."""
    level: float | None = None
    """The data's own level as a normalized score (params.json), when the run records it."""
    level_return: float | None = None
    """The same as a return."""


@dataclass(frozen=True)
class Window:
    """Which evaluations a row's numbers come from: up to step ``at`` (None: every evaluation),
    and the mean of the last ``last`` of them (None: no such column); ``also_at``: earlier steps
    whose windows are shown beside it, in columns of their own (``--at`` given more than once:
    ``at`` is the largest, the one a run must reach and the one its score is read at)."""

    at: int | None = None
    last: int | None = None
    also_at: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for step in (self.at, *self.also_at):
            if step is not None and step < 0:
                raise BearlError(f"--at {step}: give a step of 0 or more")
        if self.last is not None and self.last < 1:
            raise BearlError(f"--last {self.last}: give a number of evaluations of 1 or more")
        if self.also_at and (self.at is None or max(self.also_at) >= self.at):
            raise BearlError("Window.also_at: steps before at")

    @classmethod
    def of(cls, at: int | Sequence[int] | None = None, last: int | None = None) -> Window:
        """The window of ``--at`` (one step, several, or none) and ``--last``."""
        if at is None or isinstance(at, int):
            return cls(at, last)
        steps = sorted(set(at))
        if not steps:
            return cls(None, last)
        return cls(steps[-1], last, tuple(steps[:-1]))

    @property
    def steps(self) -> list[int | None]:
        """Every window's step, the earlier ones first."""
        return [*self.also_at, self.at]

    def ending(self, step: int | None) -> Window:
        """The one window that ends at ``step``."""
        return Window(step, self.last)

    @property
    def active(self) -> bool:
        return self.at is not None or self.last is not None


@dataclass
class ReportRow:
    """One (algorithm, dataset[, by settings]) group."""

    algorithm: str
    dataset: str
    by: dict[str, str]
    seeds: int
    steps: str
    measure: str  # "normalized", "return" or the --metric column
    final_mean: float | None
    final_std: float | None
    best_mean: float | None
    best_std: float | None
    running: int = 0
    """How many of the seeds have not finished (their numbers so far)."""
    last_mean: float | None = None
    last_std: float | None = None
    short: list[str] = field(default_factory=list)
    """Runs of the group that have not reached ``--at`` (left out): ``name (at step N)``."""
    level: tuple[float, float] | None = None
    """The data's own level on the row's measure: the lowest and highest over the group's runs
    (they differ where seeds ran on different versions of the data); None where none has it."""
    settings: str = ""
    """With precisions pooled: which settings made the seeds (``bf16 x2, fp32 x1``)."""
    scores: list[float] = field(default_factory=list)
    """Each used run's score: its last-K mean with ``--last``, else its (final) value."""
    ci: stats.Estimate | None = None
    """With ``--ci``: the mean of ``scores`` and its bootstrap interval."""
    series: str = ""
    """The algorithm and the ``by`` settings: what ``--aggregate`` and ``--compare`` name."""
    earlier: dict[int, list[tuple[float | None, float | None]]] = field(default_factory=dict)
    """With ``Window.also_at``: per earlier step, (mean, std) of the value at it, the best up
    to it and (with ``last``) the last-K mean, over the same runs as the row's own numbers."""

    def windows(self, window: Window) -> list[tuple[float | None, float | None]]:
        """(mean, std) of every number column, the earlier windows' first."""
        own = [(self.final_mean, self.final_std), (self.best_mean, self.best_std)]
        own += [(self.last_mean, self.last_std)] if window.last else []
        return [pair for s in window.also_at for pair in self.earlier[s]] + own


@dataclass(frozen=True)
class Difference:
    """``other`` against ``ref`` over seeds: the difference of the means, its standard error
    sqrt(s1^2/n1 + s2^2/n2) (sample variances), and Welch's t-test p-value."""

    diff: float
    se: float
    p: float

    def within(self, k: float = 2.0) -> bool:
        """Whether ``|diff| <= k * se``: within seed noise at k standard errors."""
        return abs(self.diff) <= k * self.se


def difference(ref: Sequence[float], other: Sequence[float]) -> Difference | None:
    """The :class:`Difference` of ``other`` from ``ref``; None while a side has fewer than two
    values (no spread to measure)."""
    if len(ref) < 2 or len(other) < 2:
        return None
    from scipy import stats as scipy_stats

    a, b = np.asarray(ref, float), np.asarray(other, float)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    p = float(scipy_stats.ttest_ind(b, a, equal_var=False).pvalue) if se > 0 else float("nan")
    return Difference(float(b.mean() - a.mean()), se, p)


def window_values(
    steps: np.ndarray, values: np.ndarray, at: int | None = None, last: int | None = None
) -> tuple[float, float, float | None] | None:
    """(the last evaluation up to step ``at``, the best up to it, the mean of the last ``last``
    evaluations up to it, fewer where the run has fewer); evaluations are the finite values;
    None when there is none up to ``at``."""
    keep = np.isfinite(values)
    if at is not None:
        keep &= steps <= at
    y = values[keep]
    if len(y) == 0:
        return None
    return float(y[-1]), float(y.max()), float(y[-last:].mean()) if last else None


def run_scores(run_dir: str | Path, metric: str = SCORE, window: Window = Window()) -> RunScores:
    """Scores of one run: ``result.json`` when it exists, else ``progress.csv``. For another
    ``metric`` the last and largest value of that column (in the score fields). With an active
    ``window``, every number from ``progress.csv``, up to ``window.at``."""
    run_dir = Path(run_dir)
    info = run_info(run_dir)
    path = run_dir / "result.json"
    level, level_return = _levels(run_dir)
    if metric == SCORE and path.exists() and not window.active:
        try:
            r = json.loads(path.read_text())
        except ValueError as e:
            raise BearlError(f"{path}: not valid JSON ({one_line(e)})") from None
        final_score = _num(r.get("final_score"))
        return RunScores(
            info,
            as_int(r.get("steps")),
            final_score,
            # without reference scores the loop's best_score is a return: not a score then
            _num(r.get("best_score")) if final_score is not None else None,
            _num(r.get("final_return")),
            _num(r.get("best_return")),
            level=level,
            level_return=level_return,
        )
    from bearl.runs.plot import read_progress

    d = with_ope(run_dir, read_progress(run_dir))
    finished = path.exists()
    steps = as_int(d["Step"][-1]) if "Step" in d and len(d["Step"]) else None
    if window.active:
        reached = window.at is None or (steps is not None and steps >= window.at)
        step_col = d.get("Step", np.full(len(next(iter(d.values()))), np.nan))

        def win(col: str) -> tuple[float | None, float | None, float | None]:
            w = window_values(step_col, d[col], window.at, window.last) if col in d else None
            return (None, None, None) if w is None else w

        if metric != SCORE:
            f, b, k = win(metric)
            return RunScores(info, steps, f, b, None, None, finished, k, None, reached)
        (fs, bs, ks), (fr, br, kr) = win(SCORE), win("AverageReturn")
        return RunScores(
            info, steps, fs, bs, fr, br, finished, ks, kr, reached, level, level_return
        )

    def last(col: str) -> float | None:
        return _num(d[col][-1]) if col in d else None

    def best(col: str) -> float | None:
        v = d.get(col)
        return _num(np.nanmax(v)) if v is not None and np.isfinite(v).any() else None

    if metric != SCORE:
        return RunScores(info, steps, last(metric), best(metric), None, None, finished)
    return RunScores(
        info,
        steps,
        last("NormalizedScore"),
        best("NormalizedScore"),
        last("AverageReturn"),
        best("AverageReturn"),
        finished,
        level=level,
        level_return=level_return,
    )


def summarize(
    paths: Sequence[str | Path],
    by: Sequence[str] = (),
    metric: str = SCORE,
    window: Window = Window(),
    pool_precision: bool = False,
    ci: bool = False,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
) -> list[ReportRow]:
    """The table rows for run folders (or folders of runs), sorted by algorithm and dataset.
    ``pool_precision``: bf16 and fp32 seeds in one row (``settings`` says which made them);
    ``ci``: each row's bootstrap interval of the mean score over seeds."""
    runs = [
        run_scores(r, metric, window) for r in find_runs(paths, ("result.json", "progress.csv"))
    ]
    before = {  # the earlier windows (several --at), of the runs that reached the last one
        step: {
            r.info.path: run_scores(r.info.path, metric, window.ending(step))
            for r in runs
            if r.reached
        }
        for step in window.also_at
    }
    if metric != SCORE:
        for r in runs:
            if r.final_score is None and r.reached:
                bad = diverged_steps(r.info.path) if metric.startswith("fqe") else []
                why = (
                    f" (FQE diverged at steps {', '.join(map(str, bad))}: left out)" if bad else ""
                )
                print(
                    f"bearl: skipping {r.info.path}: no values of '{metric}'{why}", file=sys.stderr
                )
        runs = [r for r in runs if r.final_score is not None or not r.reached]
        if not runs:
            raise BearlError(f"no run has values of '{metric}'")
    scores = {s.info.path: s for s in runs}
    if (
        not pool_precision
        and "precision" not in by
        and any(s.info.setting("precision") != "fp32" for s in runs)
    ):
        by = [*by, "precision"]  # bf16 runs are shown, and never averaged with fp32 ones
    groups = group_runs([s.info for s in runs], by)
    warn_mixed_groups(groups, [*by, "precision"] if pool_precision else by)
    rows = []
    for infos in groups.values():
        every = [scores[i.path] for i in infos]
        group = [s for s in every if s.reached]
        normalized = all(s.final_score is not None for s in group)
        if metric != SCORE or normalized:
            finals, bests = [s.final_score for s in group], [s.best_score for s in group]
            lasts, levels = [s.last_score for s in group], [s.level for s in group]
        else:
            finals, bests = [s.final_return for s in group], [s.best_return for s in group]
            lasts, levels = [s.last_return for s in group], [s.level_return for s in group]
        main = [v for v in (lasts if window.last else finals) if v is not None]
        steps = sorted({s.steps for s in every if s.steps is not None})
        first = infos[0]
        row = ReportRow(
            first.algorithm,
            first.dataset,
            {k: shown_setting(first, k) for k in by},
            len(group),
            "?" if not steps else str(steps[0]) + (f"-{steps[-1]}" if len(steps) > 1 else ""),
            metric if metric != SCORE else "normalized" if normalized else "return",
            *_mean_std(finals),
            *_mean_std(bests),
            0 if window.at is not None else sum(not s.finished for s in group),
            *_mean_std(lasts),
            short=[_short(s) for s in every if not s.reached],
            level=_level_range(levels) if metric == SCORE else None,
            settings=_settings_of([s.info for s in group]) if pool_precision else "",
            scores=main,
            series=first.algorithm + settings_suffix(first, by),
        )
        for step, scored in before.items():
            early = [scored[s.info.path] for s in group]
            if metric != SCORE or normalized:
                columns = [[e.final_score, e.best_score, e.last_score] for e in early]
            else:
                columns = [[e.final_return, e.best_return, e.last_return] for e in early]
            row.earlier[step] = [
                _mean_std([c[i] for c in columns]) for i in range(3 if window.last else 2)
            ]
        if ci and main:
            row.ci = stats.aggregate([main], "mean", resamples, seed)
        rows.append(row)
    return rows


def _short(run: RunScores) -> str:
    """A run short of ``--at`` for the note: ``name (at step N)`` while it has no result.json,
    ``name (ended at step N)`` when it has."""
    if run.steps is None:
        return f"{run.info.path.name} (no rows)"
    return f"{run.info.path.name} ({'ended at' if run.finished else 'at'} step {run.steps:,})"


def report(
    paths: Sequence[str | Path],
    fmt: str = "markdown",
    by: Sequence[str] = (),
    metric: str = SCORE,
    window: Window = Window(),
    *,
    pool_precision: bool = False,
    ci: bool = False,
    data_level: bool = False,
    aggregate: bool = False,
    compare: Sequence[Sequence[str]] = (),
    improvement: bool = False,
    matrix: bool = False,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
) -> str:
    """The table as Markdown or CSV text: the rows per group (with ``matrix``, one row per
    dataset and one column per algorithm), or, with ``aggregate``, ``compare`` (pairs of
    algorithms) or ``improvement``, those tables instead (in that order; CSV takes one)."""
    if fmt not in FORMATS:
        raise BearlError(f"--format {fmt}: choose markdown or csv")
    if resamples < 1:
        raise BearlError(f"--resamples {resamples}: give 1 or more")
    for pair in compare:
        if len(pair) != 2:
            raise BearlError(f"--compare takes two algorithms, not {' '.join(pair)}")
    sections = [s for s, on in (("aggregate", aggregate), ("compare", compare)) if on]
    sections += ["improvement"] if improvement else []
    if fmt == "csv" and len(sections) > 1:
        raise BearlError(
            "--format csv: one table at a time (give --aggregate, --compare or --improvement alone)"
        )
    if matrix and sections:
        raise BearlError(
            "--matrix lays out the table of groups: not with --aggregate, "
            "--compare or --improvement"
        )
    if window.also_at and (matrix or sections):
        raise BearlError(
            "--at more than once adds columns to the table of groups: give one --at with "
            "--matrix, --aggregate, --compare or --improvement"
        )
    rows = summarize(paths, by, metric, window, pool_precision, ci, resamples, seed)
    boot = f"{resamples} resamples, seed {seed}"
    by = list(rows[0].by) if rows else list(by)  # (summarize may add precision)
    if matrix:
        return format_matrix(rows, fmt, metric, window, data_level, ci, boot)
    if not sections:
        if fmt == "csv":
            return format_csv(rows, by, window, pool_precision, data_level, ci)
        return format_markdown(rows, by, metric, window, pool_precision, data_level, ci, boot)
    used, note = _comparable(rows)
    measure = _measure_words(used, metric)
    what = _score_words(window)
    out = []
    if aggregate:
        table = aggregate_rows(used, resamples, seed)
        if fmt == "csv":
            return _csv_aggregate(table)
        out.append(_markdown_aggregate(table, measure, what, boot, _places(rows, metric), note))
    if compare:
        table = [c for x, y in compare for c in compare_rows(used, x, y, resamples, seed)]
        if fmt == "csv":
            return _csv_compare(table)
        out.append(_markdown_compare(table, measure, what, boot, note))
    if improvement:
        table = improvement_rows(used, resamples, seed)
        if fmt == "csv":
            return _csv_compare(table)
        out.append(_markdown_improvement(table, measure, what, boot, note))
    return "\n".join(out)


# -- the table of groups ---------------------------------------------------------------------------
def _columns(metric: str, window: Window) -> list[str]:
    """The headers of the numbers of a group: final (or at), best, and last K; with several
    steps (``also_at``), those of each step, the earliest first."""
    from bearl.training.curve import step_label

    if window.also_at:
        return [c for s in window.steps for c in _columns(metric, window.ending(s))]

    k = f"last {window.last}" if window.last else None
    if window.at is not None:
        at = step_label(window.at)
        what = "score" if metric == SCORE else metric
        cols = [f"{what} at {at}", f"{'best' if metric == SCORE else 'max'} to {at}"]
        return cols + ([f"{k} to {at}"] if k else [])
    if metric == SCORE:
        return ["final score", "best score"] + ([k] if k else [])
    return [f"final {metric}", f"max {metric}"] + ([f"{k} {metric}"] if k else [])


def format_markdown(
    rows: Sequence[ReportRow],
    by: Sequence[str] = (),
    metric: str = SCORE,
    window: Window = Window(),
    pool_precision: bool = False,
    data_level: bool = False,
    ci: bool = False,
    boot: str = f"{stats.RESAMPLES} resamples, seed {stats.SEED}",
) -> str:
    numbers = _columns(metric, window)
    extra = (["data's level"] if data_level else []) + numbers + (["95% CI"] if ci else [])
    left = ["algorithm", "dataset", *by] + (["settings"] if pool_precision else [])
    head = [*left, "seeds", "steps", *extra]
    align = ["---"] * len(left) + ["---:"] * (2 + len(extra))
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    places = _places(rows, metric)
    for r in rows:
        mark = " (return)" if r.measure == "return" else ""
        seeds = str(r.seeds) + (f" ({r.running} running)" if r.running else "")
        seeds += f" (+{len(r.short)} short)" if r.short else ""
        values = r.windows(window)
        cells = [
            r.algorithm,
            r.dataset,
            *(r.by[k] for k in by),
            *([r.settings] if pool_precision else []),
            seeds,
            r.steps,
            *([_level(r.level, places)] if data_level else []),
            *(_pm(m, s, r.seeds, places) + mark for m, s in values),
            *([_interval(r.ci, places)] if ci else []),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    if any(r.running for r in rows):
        lines.append(
            "Running: seeds without a result.json yet, counted with the numbers of their last "
            "evaluation so far (steps: the range over the group's runs)."
        )
        lines.append("")
    short = [s for r in rows for s in r.short]
    if short:
        lines.append(
            f"Short: {len(short)} run{'s' if len(short) > 1 else ''} that {_have(short)} not "
            f"reached step {window.at:,}, left out of the numbers (counted as +N short in the "
            f"seeds): {', '.join(short)}."
        )
        lines.append("")
    spread = "mean ± std over seeds (sample std, ddof=1; one seed: its value alone)"
    if metric == SCORE:
        text = (
            "Scores: D4RL normalized score (0 = random, 100 = expert; raw return where marked), "
            f"{spread}."
        )
        if not window.active:
            text += " Final: the last evaluation; best: the best evaluation of each run."
    else:
        text = f"{metric} from progress.csv, {spread}."
        if not window.active:
            text += " Final: the last evaluation; max: the largest value of each run."
    if window.active:
        text += " " + _window_words(metric, window)
    if pool_precision:
        text += (
            " Settings: the precision (and behaviour model) of the seeds, pooled in one row "
            "(--pool-precision)."
        )
    if data_level:
        text += (
            " Data's level: the mean normalized score of the dataset's episodes (its mean "
            "return where the row is in returns), from the runs' params.json; a range where "
            "the seeds' params.json record different versions of the data (compare their "
            "dataset sha1)."
        )
    if ci:
        main = _columns(metric, window.ending(window.at))[2 if window.last else 0]
        text += (
            f" 95% CI: of the mean of '{main}' over seeds, a percentile bootstrap over the "
            f"seeds ({boot}); with three seeds it is narrow (27 resamples are "
            "possible) and no more than a rough guide; one seed: none."
        )
    lines.append(text)
    return "\n".join(lines) + "\n"


def format_csv(
    rows: Sequence[ReportRow],
    by: Sequence[str] = (),
    window: Window = Window(),
    pool_precision: bool = False,
    data_level: bool = False,
    ci: bool = False,
) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    first = "at" if window.at is not None else "final"
    names = [first, "best"] + ([f"last{window.last}"] if window.last else [])
    # several --at: every window's columns name their step (at_mean_50000, ...)
    ends = [f"_{s}" for s in window.steps] if window.also_at else [""]
    w.writerow(
        ["algorithm", "dataset", *by, *(["settings"] if pool_precision else [])]
        + ["seeds", "steps", "measure"]
        + [f"{n}_{x}{e}" for e in ends for n in names for x in ("mean", "std")]
        + ["running"]
        + (["short"] if window.at is not None else [])
        + (["data_level_low", "data_level_high"] if data_level else [])
        + (["ci_low", "ci_high"] if ci else [])
    )
    for r in rows:
        est = r.ci or stats.Estimate(float("nan"))
        w.writerow(
            [r.algorithm, r.dataset, *(r.by[k] for k in by)]
            + ([r.settings] if pool_precision else [])
            + [r.seeds, r.steps, r.measure]
            + [_full(v) for pair in r.windows(window) for v in pair]
            + [r.running]
            + ([len(r.short)] if window.at is not None else [])
            + ([_full(v) for v in r.level or (None, None)] if data_level else [])
            + ([_full(est.low), _full(est.high)] if ci else [])
        )
    return buf.getvalue()


def format_matrix(
    rows: Sequence[ReportRow],
    fmt: str = "markdown",
    metric: str = SCORE,
    window: Window = Window(),
    data_level: bool = False,
    ci: bool = False,
    boot: str = f"{stats.RESAMPLES} resamples, seed {stats.SEED}",
) -> str:
    """``--matrix``: one row per dataset, one column per algorithm (and ``by`` settings), each
    cell the row's main number (the last-K mean with ``--last``, else the final or ``--at``
    score) over seeds: ``mean [low, high] (seeds)`` with ``ci``, else ``mean ± std (seeds)``;
    with ``data_level`` the data's own level in a column of its own."""
    series = list(dict.fromkeys(r.series for r in rows))
    datasets = sorted({r.dataset for r in rows})
    cell = {(r.dataset, r.series): r for r in rows}
    levels: dict[str, tuple[float, float] | None] = {}
    for d in datasets:
        ends = [e for r in rows if r.dataset == d and r.level for e in r.level]
        levels[d] = (min(ends), max(ends)) if ends else None

    def number(r: ReportRow) -> tuple[float | None, float | None]:
        return (r.last_mean, r.last_std) if window.last else (r.final_mean, r.final_std)

    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        ends = ["_mean", "_std", "_seeds"] + (["_low", "_high"] if ci else [])
        w.writerow(
            ["dataset"]
            + (["data_level_low", "data_level_high"] if data_level else [])
            + [f"{s}{e}" for s in series for e in ends]
        )
        for d in datasets:
            out = [d] + ([_full(v) for v in levels[d] or (None, None)] if data_level else [])
            for s in series:
                r = cell.get((d, s))
                if r is None:
                    out += [""] * len(ends)
                    continue
                out += [_full(v) for v in number(r)] + [r.seeds]
                if ci:
                    e = r.ci or stats.Estimate(float("nan"))
                    out += [_full(e.low), _full(e.high)]
            w.writerow(out)
        return buf.getvalue()

    places = _places(rows, metric)
    head = ["dataset", *series] + (["data's level"] if data_level else [])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for d in datasets:
        cells = [d]
        for s in series:
            r = cell.get((d, s))
            if r is None or number(r)[0] is None:
                cells.append("–")
                continue
            mean, std = number(r)
            text = f"{mean:.{places}f}"
            if ci and r.ci is not None and r.ci.has_interval:
                text += f" {_interval(r.ci, places)}"
            elif not ci and r.seeds > 1:
                text += f" ± {std:.{places}f}"
            seeds = str(r.seeds) + (f", +{len(r.short)} short" if r.short else "")
            text += f" ({seeds})" + (" (return)" if r.measure == "return" else "")
            cells.append(text)
        if data_level:
            cells.append(_level(levels[d], places))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    what = "normalized score" if metric == SCORE else metric
    source = " (from progress.csv)" if window.active else ""
    text = f"Each cell: the {what} of each run, {_score_words(window)}{source}, "
    if ci:
        text += (
            "as the mean over seeds with its 95 % interval in brackets (a percentile bootstrap "
            f"over the seeds, {boot}; with three seeds a rough guide that tends to be narrow; "
            "one seed: none), "
        )
    else:
        text += "as mean ± std over seeds (sample std, ddof=1; one seed: its value alone), "
    text += "and the number of seeds in parentheses; – where there is no run."
    if window.at is not None:
        text += f" A run that went further is read up to step {window.at:,}."
    if any(r.settings and r.settings != "fp32" for r in rows):
        pooled = sorted({f"{r.series} ({r.settings})" for r in rows if "x" in r.settings})
        if pooled:
            text += " bf16 and fp32 seeds pooled: " + ", ".join(pooled) + "."
    if data_level:
        text += (
            " Data's level: the mean normalized score of the dataset's episodes (params.json); "
            "a range where the runs' params.json record different versions of the data."
        )
    lines.append(text)
    short = [s for r in rows for s in r.short]
    if short:
        lines.append("")
        lines.append(
            f"Short: {len(short)} run{'s' if len(short) > 1 else ''} that {_have(short)} not "
            f"reached step {window.at:,}, left out: {', '.join(short)}."
        )
    return "\n".join(lines) + "\n"


# -- across datasets: aggregates and the probability of improvement -----------------------------
@dataclass
class AggregateRow:
    """One algorithm (series) over its datasets: mean, median and IQM with intervals."""

    series: str
    datasets: list[str]
    runs: int
    values: dict[str, stats.Estimate]


@dataclass
class CompareRow:
    """P(x > y) on one dataset, or averaged over ``datasets`` (``dataset`` = ``all``)."""

    x: str
    y: str
    dataset: str
    datasets: list[str]
    runs_x: int
    runs_y: int
    p: stats.Estimate | None
    """None when x and y share no dataset."""


def strata(rows: Sequence[ReportRow]) -> dict[str, dict[str, list[float]]]:
    """{series: {dataset: the scores of its runs}} of the rows that have scores."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r.scores:
            out.setdefault(r.series, {})[r.dataset] = list(r.scores)
    return out


def aggregate_rows(
    rows: Sequence[ReportRow], resamples: int = stats.RESAMPLES, seed: int = stats.SEED
) -> list[AggregateRow]:
    """Per series: mean, median and IQM of its runs pooled over its datasets, each with a
    stratified bootstrap interval (runs resampled within each dataset)."""
    out = []
    for series, by_data in strata(rows).items():
        parts = list(by_data.values())
        values = {n: stats.aggregate(parts, n, resamples, seed) for n in stats.AGGREGATES}
        out.append(AggregateRow(series, list(by_data), sum(map(len, parts)), values))
    return out


def compare_rows(
    rows: Sequence[ReportRow],
    x: str,
    y: str,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
) -> list[CompareRow]:
    """P(x > y) on each dataset both have runs on, and averaged over them (``all``)."""
    s = strata(rows)
    for name in (x, y):
        if name not in s:
            raise BearlError(
                f"--compare: no runs of '{name}' with scores (algorithms: {', '.join(s)})"
            )
    shared = [d for d in s[x] if d in s[y]]
    out = []
    for d in shared:
        p = stats.probability_of_improvement([s[x][d]], [s[y][d]], resamples, seed)
        out.append(CompareRow(x, y, d, [d], len(s[x][d]), len(s[y][d]), p))
    xs, ys = [s[x][d] for d in shared], [s[y][d] for d in shared]
    p = stats.probability_of_improvement(xs, ys, resamples, seed) if shared else None
    n_x, n_y = sum(map(len, xs)), sum(map(len, ys))
    out.append(CompareRow(x, y, "all", shared, n_x, n_y, p))
    return out


def improvement_rows(
    rows: Sequence[ReportRow], resamples: int = stats.RESAMPLES, seed: int = stats.SEED
) -> list[CompareRow]:
    """P(x > y) averaged over the datasets both have, for every ordered pair of series."""
    names = list(strata(rows))
    return [compare_rows(rows, x, y, resamples, seed)[-1] for x in names for y in names if x != y]


def _comparable(rows: Sequence[ReportRow]) -> tuple[list[ReportRow], str]:
    """The rows the tables across datasets use: one measure only (scores where any row has
    them; rows in returns are left out then), and a note naming what was left out."""
    measures = {r.measure for r in rows if r.scores}
    if "normalized" in measures and "return" in measures:
        left = [f"{r.series} / {r.dataset}" for r in rows if r.measure == "return"]
        used = [r for r in rows if r.measure == "normalized"]
        return used, f"Left out (no normalized score, returns only): {', '.join(left)}."
    return list(rows), ""


def _measure_words(rows: Sequence[ReportRow], metric: str) -> str:
    if metric != SCORE:
        return metric
    return "return" if rows and all(r.measure == "return" for r in rows) else "normalized score"


def _score_words(window: Window) -> str:
    """What each run contributes: its final value, its value at ``--at``, or its last K."""
    up_to = f" up to step {window.at:,}" if window.at is not None else ""
    if window.last:
        return f"the mean of its last {window.last} evaluations{up_to}"
    return f"its evaluation at step {window.at:,}" if window.at is not None else "its final value"


def _markdown_aggregate(
    table: Sequence[AggregateRow], measure: str, what: str, boot: str, places: int, note: str
) -> str:
    lines = [
        "| algorithm | datasets | runs | mean | median | IQM |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for a in table:
        cells = [_estimate(a.values[n], places) for n in stats.AGGREGATES]
        lines.append(f"| {a.series} | {len(a.datasets)} | {a.runs} | {' | '.join(cells)} |")
    lines.append("")
    text = (
        f"Per algorithm over its datasets, each run's {measure} being {what}: the mean, median "
        "and IQM (interquartile mean: the mean of the middle 50 %) of its runs pooled (a "
        "dataset with more runs weighs more), each with its 95 % interval in brackets: a "
        f"stratified percentile bootstrap, runs resampled within each dataset ({boot}; a "
        "dataset with one run stays as it is, no interval where no dataset has two)."
    )
    sets = {tuple(sorted(a.datasets)) for a in table}
    if len(sets) > 1:
        text += " The algorithms differ in their datasets, which the numbers depend on: " + (
            "; ".join(f"{a.series}: {', '.join(sorted(a.datasets))}" for a in table)
        )
        text += "."
    lines.append(text + (f" {note}" if note else ""))
    return "\n".join(lines) + "\n"


def _markdown_compare(
    table: Sequence[CompareRow], measure: str, what: str, boot: str, note: str
) -> str:
    lines = [
        "| X | Y | dataset | runs of X / Y | P(X > Y) | 95% CI |",
        "|---|---|---|---:|---:|---:|",
    ]
    for c in table:
        where = c.dataset if c.dataset != "all" else f"all ({len(c.datasets)})"
        p = "–" if c.p is None else f"{c.p.value:.2f}"
        ci = "–" if c.p is None else _interval(c.p, 2)
        lines.append(f"| {c.x} | {c.y} | {where} | {c.runs_x} / {c.runs_y} | {p} | {ci} |")
    lines.append("")
    lines.append(_improvement_words(measure, what, boot) + (f" {note}" if note else ""))
    return "\n".join(lines) + "\n"


def _markdown_improvement(
    table: Sequence[CompareRow], measure: str, what: str, boot: str, note: str
) -> str:
    names = list(dict.fromkeys([c.x for c in table] + [c.y for c in table]))
    cell = {(c.x, c.y): c for c in table}
    lines = [
        "| P(row > column) | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for x in names:
        cells = []
        for y in names:
            c = cell.get((x, y))
            if c is None or c.p is None:
                cells.append("–")
            else:
                cells.append(f"{c.p.value:.2f} {_interval(c.p, 2)}".replace(" –", ""))
        lines.append(f"| {x} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        _improvement_words(measure, what, boot)
        + " Each cell: over the datasets both algorithms have runs on; – where they share none."
        + (f" {note}" if note else "")
    )
    return "\n".join(lines) + "\n"


def _improvement_words(measure: str, what: str, boot: str) -> str:
    return (
        f"P(X > Y): the probability of improvement (Agarwal et al., NeurIPS 2021) on the "
        f"{measure}, each run's being {what}: on each dataset, the probability that a run of X "
        "scores above a run of Y, ties counted half, averaged over the datasets; with its 95 % "
        f"interval, a stratified percentile bootstrap (the runs of each algorithm resampled "
        f"within each dataset; {boot}; none where no dataset has two runs of either)."
    )


def _csv_aggregate(table: Sequence[AggregateRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = [n.lower() for n in stats.AGGREGATES]
    ends = ("", "_low", "_high")
    w.writerow(["algorithm", "datasets", "runs"] + [f"{n}{e}" for n in names for e in ends])
    for a in table:
        w.writerow(
            [a.series, ";".join(a.datasets), a.runs]
            + [_full(x) for e in a.values.values() for x in (e.value, e.low, e.high)]
        )
    return buf.getvalue()


def _csv_compare(table: Sequence[CompareRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["x", "y", "dataset", "datasets", "runs_x", "runs_y", "p", "p_low", "p_high"])
    for c in table:
        p = c.p or stats.Estimate(float("nan"))
        w.writerow(
            [c.x, c.y, c.dataset, ";".join(c.datasets), c.runs_x, c.runs_y]
            + [_full(c.p and p.value), _full(p.low), _full(p.high)]
        )
    return buf.getvalue()


# -- helpers ---------------------------------------------------------------------------------------
def _window_words(metric: str, window: Window) -> str:
    best = "best" if metric == SCORE else "max"
    biggest = "the best evaluation" if metric == SCORE else "the largest value"
    k = f"last {window.last}: the mean of the last {window.last} evaluations"
    if window.at is None:
        text = f"Final: the last evaluation; {best}: {biggest} of each run"
        return text + (f"; {k} of each run" if window.last else "") + " (from progress.csv)."
    from bearl.training.curve import step_label

    if window.also_at:
        labels = [step_label(s) for s in window.steps]
        text = (
            f"At {', '.join(labels[:-1])} and {labels[-1]}: the evaluation at that step (or the "
            f"last one before it); {best} to each: {biggest} up to it"
        )
        text += f"; {k} up to it" if window.last else ""
        return text + (
            f" (from progress.csv; the runs that reached step {window.at:,}, in every column)."
        )
    at = step_label(window.at)
    text = (
        f"At {at}: the evaluation at step {window.at:,} (or the last one before it); "
        f"{best} to {at}: {biggest} up to it"
    )
    return text + (f"; {k} up to it" if window.last else "") + " (from progress.csv)."


def _have(short: Sequence[str]) -> str:
    return "have" if len(short) > 1 else "has"


def _settings_of(infos: Sequence[RunInfo]) -> str:
    """Which settings made the seeds: ``fp32``, or ``bf16 x2, fp32 x1``."""
    counts: dict[str, int] = {}
    for i in infos:
        counts[cost_settings(i)] = counts.get(cost_settings(i), 0) + 1
    if len(counts) <= 1:
        return next(iter(counts), "-")
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))


def _levels(run_dir: Path) -> tuple[float | None, float | None]:
    """The data's own level of a run, as a normalized score and as a return (params.json's
    dataset entry; result.json's ``data_score`` for the score of a run without it)."""
    from bearl.training.curve import data_level

    params = read_json(run_dir / "params.json") or {}
    level = data_level(params, SCORE) if isinstance(params, dict) else None
    ret = data_level(params, "AverageReturn") if isinstance(params, dict) else None
    if level is None:
        result = read_json(run_dir / "result.json")
        level = _num(result.get("data_score")) if isinstance(result, dict) else None
    return level, ret


def _level_range(levels: Sequence[float | None]) -> tuple[float, float] | None:
    """The lowest and highest of the runs' levels; None where no run has one."""
    known = [v for v in levels if v is not None]
    return (min(known), max(known)) if known else None


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1; 0 for a single value, which is shown alone)."""
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)


def _places(rows: Sequence[ReportRow], metric: str) -> int:
    """Decimal places of a Markdown table: 1 for scores; for another metric, enough for three
    significant digits of the table's largest value (1116.4, 0.23, 0.0014), from 1 to 6."""
    values = [abs(v) for r in rows for v in (r.final_mean, r.best_mean, r.last_mean) if v]
    if metric == SCORE or not values:
        return 1
    return min(6, max(1, 2 - math.floor(math.log10(max(values)))))


def _pm(mean: float | None, std: float | None, seeds: int, places: int = 1) -> str:
    """``mean ± std``; a single seed has no spread to show, so just its value."""
    if mean is None:
        return "–"
    return f"{mean:.{places}f}" if seeds == 1 else f"{mean:.{places}f} ± {std:.{places}f}"


def _level(level: tuple[float, float] | None, places: int) -> str:
    """The data's level, or its range where the runs' data differ (``25.6-26.4``)."""
    if level is None:
        return "–"
    low, high = (f"{v:.{places}f}" for v in level)
    return low if low == high else f"{low}-{high}"


def _interval(e: stats.Estimate | None, places: int) -> str:
    """``[low, high]``, or ``–`` without an interval."""
    if e is None or not e.has_interval:
        return "–"
    return f"[{e.low:.{places}f}, {e.high:.{places}f}]"


def _estimate(e: stats.Estimate, places: int) -> str:
    """``value [low, high]``, or the value alone without an interval."""
    text = f"{e.value:.{places}f}"
    return text + (f" {_interval(e, places)}" if e.has_interval else "")


def _full(v: float | None) -> str:
    """A CSV cell in full precision; empty for none (or NaN)."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v)


def _num(value) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
