"""Statistics over runs for ``bearl report`` and ``bearl plot``: robust aggregates, stratified
bootstrap intervals, the probability of improvement and performance profiles.

Scores come in *strata*: one array of per-run scores per dataset (task). The aggregates pool the
strata (every run counts once: a dataset with more seeds weighs more); the bootstrap resamples
runs within each stratum separately (a *stratified* bootstrap), so that every resample keeps
each dataset's number of runs. The intervals are percentile intervals of
``scipy.stats.bootstrap``. A stratum with a single run cannot be resampled: it stays as it is in
every resample; when no stratum has two runs there is no interval at all (None).

* mean, median and IQM (interquartile mean: the mean of the middle 50 % of the pooled scores,
  ``scipy.stats.trim_mean(x, 0.25)``) of the pooled scores;
* the probability of improvement of X over Y, as Agarwal et al. (NeurIPS 2021, "Deep
  Reinforcement Learning at the Edge of the Statistical Precipice") define it: on each dataset
  the probability that a run of X scores above a run of Y, ties counted half
  (``P(X > Y) + 0.5 P(X = Y)`` over every pair of runs, the Mann-Whitney U statistic divided by
  the number of pairs), averaged over the datasets both have runs on;
* performance profiles: the fraction of the pooled runs whose score is above ``tau``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


def iqm(x, axis: int = -1):
    """Interquartile mean: the mean of the middle 50 % of ``x`` (25 % cut from each end)."""
    from scipy.stats import trim_mean

    return trim_mean(x, 0.25, axis=axis)


AGGREGATES: dict[str, Callable] = {"mean": np.mean, "median": np.median, "IQM": iqm}
"""The aggregates of ``bearl report --aggregate``, by their column name."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its bootstrap interval (``low``/``high`` None: no interval)."""

    value: float
    low: float | None = None
    high: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.low is not None


def pooled(strata: Sequence[Sequence[float]]) -> np.ndarray:
    """All scores of ``strata`` in one array."""
    parts = [np.asarray(s, float).ravel() for s in strata]
    return np.concatenate(parts) if parts else np.array([])


def stratified_bootstrap(
    strata: Sequence[Sequence[float]],
    statistic: Callable,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
    batch: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The percentile interval of ``statistic(*strata, axis=-1)`` over resamples of each stratum
    on its own (``scipy.stats.bootstrap``, seeded by ``seed``). ``statistic`` must be vectorized:
    each argument has the resamples in its leading axes and the runs in the last one; it may
    return a number or an array (an interval per element; the resamples in its last axis).
    Strata of one run are passed as they are in every resample; None when no stratum has two
    runs. ``batch``: how many resamples are computed at once (all by default)."""
    from scipy.stats import bootstrap

    arrays = [np.asarray(s, float).ravel() for s in strata]
    moving = [i for i, a in enumerate(arrays) if len(a) > 1]
    if not moving:
        return None
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")

    def stat(*samples, axis=-1):
        lead = np.shape(samples[0])[:-1]
        full = [np.broadcast_to(a, lead + a.shape) for a in arrays]
        for i, s in zip(moving, samples):
            full[i] = np.asarray(s)
        return statistic(*full, axis=-1)

    # (scipy >= 1.15 names the generator rng, older ones random_state)
    key = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    with warnings.catch_warnings():  # (a stratum of equal values: a degenerate, honest interval)
        warnings.simplefilter("ignore")
        res = bootstrap(
            [arrays[i] for i in moving],
            stat,
            n_resamples=resamples,
            batch=batch,
            vectorized=True,
            axis=-1,
            confidence_level=confidence,
            method="percentile",
            **{key: np.random.default_rng(seed)},
        )
    return np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)


def aggregate(
    strata: Sequence[Sequence[float]],
    name: str = "mean",
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """One of ``AGGREGATES`` (mean, median, IQM) of the pooled scores, with its stratified
    bootstrap interval."""
    fn = AGGREGATES[name]

    def statistic(*samples, axis=-1):
        return fn(np.concatenate(samples, axis=axis), axis=axis)

    value = float(fn(pooled(strata)))
    ci = stratified_bootstrap(strata, statistic, resamples, seed, confidence)
    return Estimate(value) if ci is None else Estimate(value, float(ci[0]), float(ci[1]))


def p_greater(x, y, axis: int = -1):
    """``P(X > Y) + 0.5 P(X = Y)`` over every pair of a run of ``x`` and a run of ``y`` (runs
    along ``axis``; leading axes are batches)."""
    x, y = np.moveaxis(np.asarray(x, float), axis, -1), np.moveaxis(np.asarray(y, float), axis, -1)
    a, b = x[..., :, None], y[..., None, :]
    return ((a > b) + 0.5 * (a == b)).mean(axis=(-2, -1))


def probability_of_improvement(
    xs: Sequence[Sequence[float]],
    ys: Sequence[Sequence[float]],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """P(X > Y) averaged over datasets: ``xs[m]`` and ``ys[m]`` are the runs of X and of Y on
    dataset ``m``; the interval resamples the runs of each algorithm on each dataset apart."""
    if len(xs) != len(ys) or not xs:
        raise ValueError("give the runs of both algorithms on the same datasets (at least one)")
    m = len(xs)

    def statistic(*samples, axis=-1):
        return np.mean([p_greater(samples[i], samples[m + i]) for i in range(m)], axis=0)

    value = float(statistic(*[np.asarray(s, float) for s in (*xs, *ys)]))
    ci = stratified_bootstrap([*xs, *ys], statistic, resamples, seed, confidence)
    return Estimate(value) if ci is None else Estimate(value, float(ci[0]), float(ci[1]))


def profile_fraction(scores, taus, axis: int = -1) -> np.ndarray:
    """The fraction of ``scores`` (runs along ``axis``) above each of ``taus``."""
    s = np.moveaxis(np.asarray(scores, float), axis, -1)
    return (s[..., :, None] > np.asarray(taus, float)).mean(axis=-2)


def performance_profile(
    strata: Sequence[Sequence[float]],
    taus: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The fraction of the pooled runs with a score above each ``tau``, and its stratified
    bootstrap band (low, high; None, None when no dataset has two runs)."""

    def statistic(*samples, axis=-1):  # (scipy wants the resamples in the last axis)
        return np.moveaxis(profile_fraction(np.concatenate(samples, axis=axis), taus), -1, 0)

    fraction = profile_fraction(pooled(strata), taus)
    batch = max(1, 4_000_000 // max(1, len(pooled(strata)) * len(taus)))  # (memory)
    band = stratified_bootstrap(strata, statistic, resamples, seed, confidence, batch)
    return (fraction, None, None) if band is None else (fraction, band[0], band[1])
