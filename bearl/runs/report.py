"""Result tables: one row per (algorithm, dataset) with the final and best normalized score as
mean ± std over seeds (or, with ``--metric``, the final and largest value of another
progress.csv column, e.g. ``Overestimation``).

``bearl report RUN_DIR... [--format markdown|csv] [--metric COLUMN]``. Each run's numbers
come from its ``result.json`` (``final_score``, ``best_score``, ``steps``), or from
``progress.csv`` for a run that has not finished (last row's ``NormalizedScore``, the max over
rows, the last ``Step``); such runs are counted in the row's ``running`` and marked in the
Markdown table, so that a number still moving is not read as a result.
Where a run has no normalized score (no reference scores), the group uses raw returns and the
table says so. The std is the population std over seeds (numpy's default, ddof=0), the same as
the band of ``bearl plot``. Any other metric is read from ``progress.csv`` (its last value and
its maximum over the evaluations); runs without values of it (BC has no Q) are left out with a
note.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bearl.errors import BearlError, one_line
from bearl.runs.folders import (
    RunInfo,
    find_runs,
    group_runs,
    run_info,
    shown_setting,
    warn_mixed_groups,
)
from bearl.files import as_int

FORMATS = ("markdown", "csv")
SCORE = "NormalizedScore"


@dataclass
class RunScores:
    """A run's final and best score, normalized and raw, and its gradient steps."""

    info: RunInfo
    steps: int | None
    final_score: float | None
    best_score: float | None
    final_return: float | None
    best_return: float | None
    finished: bool = True
    """Whether the run has its result.json (else: its numbers so far, from progress.csv)."""


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
    from scipy import stats

    a, b = np.asarray(ref, float), np.asarray(other, float)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    p = float(stats.ttest_ind(b, a, equal_var=False).pvalue) if se > 0 else float("nan")
    return Difference(float(b.mean() - a.mean()), se, p)


def run_scores(run_dir: str | Path, metric: str = SCORE) -> RunScores:
    """Scores of one run: ``result.json`` when it exists, else ``progress.csv``. For another
    ``metric`` the last and largest value of that column (in the score fields)."""
    run_dir = Path(run_dir)
    info = run_info(run_dir)
    path = run_dir / "result.json"
    if metric == SCORE and path.exists():
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
        )
    from bearl.runs.plot import read_progress

    d = read_progress(run_dir)

    def last(col: str) -> float | None:
        return _num(d[col][-1]) if col in d else None

    def best(col: str) -> float | None:
        v = d.get(col)
        return _num(np.nanmax(v)) if v is not None and np.isfinite(v).any() else None

    finished = path.exists()
    if metric != SCORE:
        return RunScores(
            info, as_int(last("Step")), last(metric), best(metric), None, None, finished
        )
    return RunScores(
        info,
        as_int(last("Step")),
        last("NormalizedScore"),
        best("NormalizedScore"),
        last("AverageReturn"),
        best("AverageReturn"),
        finished,
    )


def summarize(
    paths: Sequence[str | Path], by: Sequence[str] = (), metric: str = SCORE
) -> list[ReportRow]:
    """The table rows for run folders (or folders of runs), sorted by algorithm and dataset."""
    runs = [run_scores(r, metric) for r in find_runs(paths, ("result.json", "progress.csv"))]
    if metric != SCORE:
        for r in runs:
            if r.final_score is None:
                print(f"bearl: skipping {r.info.path}: no values of '{metric}'", file=sys.stderr)
        runs = [r for r in runs if r.final_score is not None]
        if not runs:
            raise BearlError(f"no run has values of '{metric}'")
    scores = {s.info.path: s for s in runs}
    if "precision" not in by and any(s.info.setting("precision") != "fp32" for s in runs):
        by = [*by, "precision"]  # bf16 runs are shown, and never averaged with fp32 ones
    groups = group_runs([s.info for s in runs], by)
    warn_mixed_groups(groups, by)
    rows = []
    for infos in groups.values():
        group = [scores[i.path] for i in infos]
        normalized = all(s.final_score is not None for s in group)
        if normalized:
            finals, bests = [s.final_score for s in group], [s.best_score for s in group]
        else:
            finals, bests = [s.final_return for s in group], [s.best_return for s in group]
        steps = sorted({s.steps for s in group if s.steps is not None})
        first = infos[0]
        rows.append(
            ReportRow(
                first.algorithm,
                first.dataset,
                {k: shown_setting(first, k) for k in by},
                len(group),
                "?" if not steps else str(steps[0]) + (f"-{steps[-1]}" if len(steps) > 1 else ""),
                metric if metric != SCORE else "normalized" if normalized else "return",
                *_mean_std(finals),
                *_mean_std(bests),
                sum(not s.finished for s in group),
            )
        )
    return rows


def report(
    paths: Sequence[str | Path],
    fmt: str = "markdown",
    by: Sequence[str] = (),
    metric: str = SCORE,
) -> str:
    """The table as Markdown or CSV text."""
    if fmt not in FORMATS:
        raise BearlError(f"--format {fmt}: choose markdown or csv")
    rows = summarize(paths, by, metric)
    by = list(rows[0].by) if rows else list(by)  # (summarize may add precision)
    return format_csv(rows, by) if fmt == "csv" else format_markdown(rows, by, metric)


def format_markdown(rows: Sequence[ReportRow], by: Sequence[str] = (), metric: str = SCORE) -> str:
    columns = ["final score", "best score"]
    if metric != SCORE:
        columns = [f"final {metric}", f"max {metric}"]
    head = ["algorithm", "dataset", *by, "seeds", "steps", *columns]
    align = ["---"] * (2 + len(by)) + ["---:"] * 4
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    places = _places(rows, metric)
    for r in rows:
        mark = " (return)" if r.measure == "return" else ""
        cells = [
            r.algorithm,
            r.dataset,
            *(r.by[k] for k in by),
            str(r.seeds) + (f" ({r.running} running)" if r.running else ""),
            r.steps,
            _pm(r.final_mean, r.final_std, r.seeds, places) + mark,
            _pm(r.best_mean, r.best_std, r.seeds, places) + mark,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    if any(r.running for r in rows):
        lines.append(
            "Running: seeds without a result.json yet, counted with the numbers of their last "
            "evaluation so far (steps: the range over the group's runs)."
        )
        lines.append("")
    if metric == SCORE:
        lines.append(
            "Scores: D4RL normalized score (0 = random, 100 = expert; raw return where marked), "
            "mean ± std over seeds (population std; one seed: its value alone). Final: the last "
            "evaluation; best: the best evaluation of each run."
        )
    else:
        lines.append(
            f"{metric} from progress.csv, mean ± std over seeds (population std; one seed: its "
            "value alone). Final: the last evaluation; max: the largest value of each run."
        )
    return "\n".join(lines) + "\n"


def format_csv(rows: Sequence[ReportRow], by: Sequence[str] = ()) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["algorithm", "dataset", *by, "seeds", "steps", "measure"]
        + ["final_mean", "final_std", "best_mean", "best_std", "running"]
    )
    for r in rows:
        w.writerow(
            [r.algorithm, r.dataset, *(r.by[k] for k in by), r.seeds, r.steps, r.measure]
            + ["" if v is None else repr(v) for v in (r.final_mean, r.final_std)]
            + ["" if v is None else repr(v) for v in (r.best_mean, r.best_std)]
            + [r.running]
        )
    return buf.getvalue()


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v))


def _places(rows: Sequence[ReportRow], metric: str) -> int:
    """Decimal places of a Markdown table: 1 for scores; for another metric, enough for three
    significant digits of the table's largest value (1116.4, 0.23, 0.0014), from 1 to 6."""
    values = [abs(v) for r in rows for v in (r.final_mean, r.best_mean) if v]
    if metric == SCORE or not values:
        return 1
    return min(6, max(1, 2 - math.floor(math.log10(max(values)))))


def _pm(mean: float | None, std: float | None, seeds: int, places: int = 1) -> str:
    """``mean ± std``; a single seed has no spread to show, so just its value."""
    if mean is None:
        return "–"
    return f"{mean:.{places}f}" if seeds == 1 else f"{mean:.{places}f} ± {std:.{places}f}"


def _num(value) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
