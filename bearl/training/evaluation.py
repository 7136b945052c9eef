"""The training loop's evaluations: episodes of the current policy, built once per run.

Every evaluation runs ``eval_episodes`` episodes with the algorithm's own action rule (and, with
``eval_deterministic``, the same episodes again with its deterministic rule), on episode seeds
``seed + EVAL_SEED_OFFSET + i``, under torch's random state seeded from the step and forked, so
evaluating changes nothing in the training run's random stream. The bootstrapping-error
diagnostics (diagnostics.py) follow on the same episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bearl.envs import make_env
from bearl.rollouts import EvalResult, run_episodes
from bearl.training.diagnostics import BootstrapDiagnostics

EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds seed+OFFSET+i, apart from training


class ActionScale:
    """The map between the algorithms' actions in [-1, 1] and the env's bounds [low, high]."""

    def __init__(self, low: np.ndarray, high: np.ndarray, device: torch.device) -> None:
        self.low, self.high = low, high
        self.center = torch.as_tensor((high + low) / 2, dtype=torch.float32, device=device)
        self.half = torch.as_tensor((high - low) / 2, dtype=torch.float32, device=device)
        self.active = not (np.allclose(low, -1) and np.allclose(high, 1))

    @classmethod
    def of(cls, space: Any, act_dim: int, device: torch.device) -> ActionScale:
        """From an env's action space (none: the identity on [-1, 1])."""
        if space is None or not hasattr(space, "low"):
            low, high = -np.ones(act_dim), np.ones(act_dim)
        else:
            low = np.asarray(space.low, dtype=np.float64)
            high = np.asarray(space.high, dtype=np.float64)
        return cls(low, high, device)

    def to_unit(self, actions: torch.Tensor) -> torch.Tensor:
        """Dataset actions in the env's bounds -> [-1, 1]."""
        return (actions - self.center) / self.half if self.active else actions

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """The algorithm's actions in [-1, 1] -> the env's bounds."""
        return actions * self.half + self.center if self.active else actions


class Evaluator:
    """Runs a run's evaluations; ``(algo, step) -> EvalResult and the progress.csv columns``."""

    def __init__(
        self,
        env_name: str,
        episodes: int,
        seed: int,
        refs: tuple[float, float] | None,
        gamma: float,
        deterministic_too: bool,
        device: torch.device,
    ) -> None:
        self.env_name, self.episodes, self.seed = env_name, episodes, seed
        self.refs, self.gamma, self.deterministic_too = refs, gamma, deterministic_too
        self.device = device
        self.envs = [make_env(env_name) for _ in range(episodes)]

    @property
    def spaces(self) -> tuple[Any, Any]:
        return self.envs[0].observation_space, self.envs[0].action_space

    def attach(self, dataset: Any, scale: ActionScale) -> None:
        """The dataset's probe states for the diagnostics, and the action scale."""
        self.scale = scale
        self.diagnostics = BootstrapDiagnostics(
            dataset, self.device, self.gamma, scale.low, scale.high
        )

    def _episodes(self, policy: Callable[[np.ndarray], np.ndarray]) -> EvalResult:
        return run_episodes(
            policy,
            self.env_name,
            self.episodes,
            seed=self.seed + EVAL_SEED_OFFSET,
            ref_scores=self.refs,
            envs=self.envs,
            gamma=self.gamma,
        )

    def __call__(self, algo: Any, step: int) -> tuple[EvalResult, dict[str, Any]]:
        @torch.no_grad()
        def act(obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
            x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            return self.scale.to_env(algo.act(x, deterministic=deterministic)).cpu().numpy()

        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed + EVAL_SEED_OFFSET + step)
            result = self._episodes(act)
            if self.deterministic_too:  # after the main evaluation: it changes nothing there
                det = self._episodes(lambda o: act(o, deterministic=True)).summary()
        columns = result.summary()
        if self.deterministic_too:
            for key in ("AverageReturn", "NormalizedScore"):
                if key in det:
                    columns[f"Deterministic{key}"] = det[key]
        return result, columns
