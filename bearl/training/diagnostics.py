"""Diagnostics of bootstrapping error, logged with every evaluation (docs/sweeps.md).

BEAR's argument is that Q-learning on a fixed dataset goes wrong through actions the data does
not support: their Q values are never corrected, the policy seeks them, the error compounds
through the backups. Two groups of columns watch this happen:

1. Over-estimation at the start states of the evaluation episodes:
   ``QEstimateStart`` = mean over episodes of Q(s_0, pi(s_0)) (``Algorithm.q_value``: the min over
   the critic ensemble; pi(s_0) by the same rule as the evaluation episodes), against
   ``DiscountedReturnStart`` = mean of sum_t gamma^t r_t actually obtained in those episodes.
   ``Overestimation`` = QEstimateStart - DiscountedReturnStart. The Q columns are empty for an
   algorithm without a critic (BC).
2. Distance of the policy to the data, on a fixed random subset of dataset states (the same
   rows at every evaluation, chosen with a fixed seed, so for every run on the same dataset):
   ``ActionMSE`` = mean squared difference between the deterministic policy action and the
   dataset action (both in [-1, 1]); ``NearestActionDistance`` = mean over those states of the
   Euclidean distance from (s, pi(s)) to the nearest (s_i, a_i) in a fixed reference subset of
   the dataset (the probe rows are part of it, so it is at most the distance to the state's own
   dataset action).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bearl.rollouts import EvalResult

COLUMNS = (
    "QEstimateStart",
    "DiscountedReturnStart",
    "Overestimation",
    "ActionMSE",
    "NearestActionDistance",
)
DIAGNOSTICS_SEED = 0  # the probe and reference rows depend on the dataset only, not the run


# -- the pieces, on tensors --------------------------------------------------------------------
def overestimation(
    q_start: torch.Tensor | np.ndarray | None, discounted_returns: np.ndarray | None
) -> dict[str, float | None]:
    """``QEstimateStart``, ``DiscountedReturnStart`` and their difference ``Overestimation``
    (means over episodes; None where an input is missing)."""
    q = None if q_start is None else float(torch.as_tensor(q_start, dtype=torch.float64).mean())
    g = None if discounted_returns is None else float(np.mean(discounted_returns))
    return {
        "QEstimateStart": q,
        "DiscountedReturnStart": g,
        "Overestimation": q - g if q is not None and g is not None else None,
    }


def action_mse(policy_actions: torch.Tensor, data_actions: torch.Tensor) -> float:
    """Mean over states and action dimensions of (pi(s) - a)^2."""
    return float((policy_actions - data_actions).pow(2).mean())


def nearest_pair_distance(
    states: torch.Tensor,
    actions: torch.Tensor,
    ref_states: torch.Tensor,
    ref_actions: torch.Tensor,
    chunk: int = 256,
) -> float:
    """Mean over i of min_j ||(s_j, a_j) - (states_i, actions_i)|| over the reference pairs,
    in chunks of ``chunk`` query rows (``chunk`` x len(ref) distances at a time)."""
    query = torch.cat([states, actions], dim=-1).float()
    ref = torch.cat([ref_states, ref_actions], dim=-1).float()
    mins = [torch.cdist(q, ref).min(dim=1).values for q in query.split(chunk)]
    return float(torch.cat(mins).mean())


# -- what the training loop calls --------------------------------------------------------------
class BootstrapDiagnostics:
    """The diagnostics of one run: picks the probe and reference rows once, then
    ``diag(algo, eval_result)`` returns the columns for a progress row (None = empty cell).

    Args:
        dataset: the training dataset.
        device: where the probe tensors live (the algorithm's device).
        gamma: discount of ``DiscountedReturnStart`` (pass it to ``run_episodes`` too).
        action_low, action_high: the env's action bounds; dataset actions are mapped to [-1, 1]
            with them, as the training loop does (None: the data is already in [-1, 1]).
        probe_size: dataset states on which the policy is compared with the data.
        reference_size: dataset pairs searched for the nearest one.
    """

    def __init__(
        self,
        dataset: Any,
        device: str | torch.device = "cpu",
        gamma: float = 0.99,
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
        probe_size: int = 1024,
        reference_size: int = 10_000,
        seed: int = DIAGNOSTICS_SEED,
    ) -> None:
        self.device = torch.device(device)
        self.gamma = float(gamma)
        self.seed = seed
        n = len(dataset)
        rows = np.random.default_rng(seed).permutation(n)[: max(probe_size, reference_size)]
        probe, ref = rows[: min(probe_size, n)], np.sort(rows[: min(reference_size, n)])
        center, half = 0.0, 1.0
        if action_low is not None and action_high is not None:
            low, high = np.asarray(action_low), np.asarray(action_high)
            center, half = (high + low) / 2, (high - low) / 2

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.float32, device=self.device)

        obs, act = dataset.observations, dataset.actions
        self.probe_obs, self.probe_act = t(obs[probe]), t((act[probe] - center) / half)
        self.ref_obs, self.ref_act = t(obs[ref]), t((act[ref] - center) / half)

    @torch.no_grad()
    def __call__(self, algo: Any, result: EvalResult | None) -> dict[str, float | None]:
        """The five columns for the current policy and evaluation result. Uses its own seeded
        torch RNG (forked), so it does not change the training run's random stream."""
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            q_start = None
            if result is not None and result.start_obs is not None:
                s0 = torch.as_tensor(result.start_obs, dtype=torch.float32, device=self.device)
                q_start = _q_value(algo, s0, algo.act(s0))
            out = overestimation(q_start, None if result is None else result.discounted_returns)
            pi = algo.act(self.probe_obs, deterministic=True)
            out["ActionMSE"] = action_mse(pi, self.probe_act)
            out["NearestActionDistance"] = nearest_pair_distance(
                self.probe_obs, pi, self.ref_obs, self.ref_act
            )
        return out


def _q_value(algo: Any, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor | None:
    q_value = getattr(algo, "q_value", None)
    if q_value is None:
        return None
    try:
        q = q_value(obs, act)
    except NotImplementedError:
        return None
    return None if q is None or q is NotImplemented else q
