"""Summary statistics of evaluation returns, with a t confidence interval of the mean.

No scipy: the Student t quantile is computed here. For integer degrees of freedom nu the
two-sided probability A(t | nu) = P(|T| <= t) has a closed form, a finite sum in
theta = atan(t / sqrt(nu)) (Abramowitz & Stegun 26.7.3 and 26.7.4); the quantile is found by
bisection on it, accurate to about 1e-12. Above ``_SERIES_MAX_DF`` degrees of freedom the
Cornish-Fisher expansion of the quantile around the normal one (A&S 26.7.5, four terms) is used
instead; its error there is below 1e-12 as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

_SERIES_MAX_DF = 2000


def t_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (integer >= 1) degrees of freedom, t >= 0."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, not {df}")
    t = abs(float(t))
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    c2 = c * c
    if df % 2 == 1:  # odd: (2/pi) * (theta + s * (c + 2/3 c^3 + 2*4/(3*5) c^5 + ... c^(df-2)))
        total, term = 0.0, c
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return min(1.0, 2.0 / math.pi * (theta + s * total))
    # even: s * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... c^(df-2))
    total, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return min(1.0, s * total)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` (integer >= 1) degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), not {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, not {df}")
    level = 2.0 * p - 1.0  # P(|T| <= q)
    if df > _SERIES_MAX_DF:
        z = NormalDist().inv_cdf(p)
        z3, z5, z7, z9 = z**3, z**5, z**7, z**9
        g1 = (z3 + z) / 4
        g2 = (5 * z5 + 16 * z3 + 3 * z) / 96
        g3 = (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / 384
        g4 = (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) / 92160
        return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    lo, hi = 0.0, 1.0
    while t_two_sided(hi, df) < level:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided(mid, df) < level:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


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
