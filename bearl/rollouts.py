"""Policy evaluation: E episodes run side by side, the policy batched over the live ones.

The episodes step in lock-step like a gymnasium vector env, but a copy whose episode is over is
no longer stepped (a vector env keeps stepping every copy until the last one finishes, which on
Hopper can double the simulated steps). The policy sees one batch per step: the observations of
the episodes still running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bearl.envs import make_env, normalized_score


@dataclass
class EvalResult:
    """Returns and lengths of evaluation episodes, with summary statistics.

    ``discounted_returns`` (sum of gamma^t r_t from each episode's first step) and
    ``start_obs`` (each episode's first observation, one row per episode) feed the
    bootstrapping-error diagnostics (bearl/training/diagnostics.py); ``summary()`` does not
    use them.
    """

    returns: np.ndarray
    lengths: np.ndarray
    ref_min: float | None = None
    ref_max: float | None = None
    discounted_returns: np.ndarray | None = None
    start_obs: np.ndarray | None = None
    gamma: float | None = None

    @property
    def normalized(self) -> np.ndarray | None:
        if self.ref_min is None or self.ref_max is None:
            return None
        return normalized_score(self.returns, self.ref_min, self.ref_max)

    def summary(self) -> dict[str, float]:
        """Mean, std, median of raw returns (and of normalized scores when references exist)."""
        out = {
            "AverageReturn": float(np.mean(self.returns)),
            "StdReturn": float(np.std(self.returns)),
            "MedianReturn": float(np.median(self.returns)),
            "MaxReturn": float(np.max(self.returns)),
            "MinReturn": float(np.min(self.returns)),
            "AverageEpisodeLength": float(np.mean(self.lengths)),
        }
        norm = self.normalized
        if norm is not None:
            out["NormalizedScore"] = float(np.mean(norm))
            out["StdNormalizedScore"] = float(np.std(norm))
            out["MedianNormalizedScore"] = float(np.median(norm))
        return out


def run_episodes(
    act: Callable[[np.ndarray], np.ndarray],
    env_name: str,
    episodes: int,
    seed: int = 0,
    ref_scores: tuple[float, float] | None = None,
    envs: list | None = None,
    gamma: float = 0.99,
) -> EvalResult:
    """Run ``episodes`` episodes of ``act`` (a batch of observations -> a batch of actions).

    Episode i is reset with seed ``seed + i``. ``envs`` may pass pre-built environments to reuse.
    Besides the returns, the result holds each episode's discounted return with ``gamma`` and
    its start observation.
    """
    envs = envs if envs is not None else [make_env(env_name) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs[:episodes])])
    start_obs = obs.copy()
    returns = np.zeros(episodes)
    discounted = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    live = np.arange(episodes)
    while live.size:
        actions = np.asarray(act(obs[live]))
        still = []
        for k, i in enumerate(live):
            o, r, term, trunc, _ = envs[i].step(actions[k])
            obs[i] = o
            returns[i] += r
            discounted[i] += gamma ** lengths[i] * r
            lengths[i] += 1
            if not (term or trunc):
                still.append(i)
        live = np.asarray(still, dtype=np.int64)
    lo, hi = ref_scores if ref_scores else (None, None)
    return EvalResult(returns, lengths, lo, hi, discounted, start_obs, gamma)
