"""Summary statistics of evaluation returns, with a t confidence interval of the mean.

The Student t quantile is scipy's (``scipy.stats.t.ppf``); bearl wrote its own before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` (integer >= 1) degrees of freedom."""
    from scipy.stats import t

    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), not {p}")
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, not {df}")
    return float(t.ppf(p, df))


def mean_confidence_interval(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Two-sided t interval of the mean: mean -+ t_{(1+c)/2, n-1} * s / sqrt(n), with s the
    sample standard deviation (ddof=1). None for fewer than two values."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 2:
        return None
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * float(np.std(x, ddof=1)) / math.sqrt(n)
    mean = float(np.mean(x))
    return mean - half, mean + half


def describe(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """n, mean, std (population, ddof=0, as ``progress.csv``), median, min, max and the t
    confidence interval of the mean (``ci_low`` / ``ci_high``; None below two values)."""
    x = np.asarray(values, dtype=np.float64)
    ci = mean_confidence_interval(x, confidence)
    return {
        "n": int(x.size),
        "mean": float(np.mean(x)),
        "std": float(np.std(x)),
        "median": float(np.median(x)),
        "min": float(np.min(x)),
        "max": float(np.max(x)),
        "confidence": confidence,
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
    }
