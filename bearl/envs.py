"""Environments and D4RL-style normalized scores.

bearl evaluates in gymnasium's MuJoCo v5 environments. Names are accepted in several spellings:
gymnasium ids (``Hopper-v5``), older MuJoCo ids (``Hopper-v2``, mapped to v5), short family
names (``hopper``) and dataset names (``hopper-medium``, ``hopper-medium-replay-v2``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from bearl.errors import BearlError

# family -> gymnasium id used for evaluation and data generation
ENV_IDS: dict[str, str] = {
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "halfcheetah": "HalfCheetah-v5",
    "ant": "Ant-v5",
    "pendulum": "Pendulum-v1",
}

# D4RL's reference returns (d4rl/infos.py): random policy (min) and SAC expert (max).
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

_GYM_ID = re.compile(r"^(?P<name>[A-Za-z0-9]+)-v(?P<ver>\d+)$")


def env_family(name: str) -> str | None:
    """The env family of any accepted name (``"hopper-medium-v2"`` -> ``"hopper"``), or None
    when the name belongs to no known family."""
    low = name.strip().lower()
    m = _GYM_ID.match(name.strip())
    if m:
        low = m.group("name").lower()
    head = low.split("-")[0].split("_")[0].split("/")[-1]
    if head in ENV_IDS:
        return head
    # minari ids such as "mujoco/hopper/medium-v0"
    for part in low.split("/"):
        if part in ENV_IDS:
            return part
    return None


def resolve_env_id(name: str) -> str:
    """Map any accepted env or dataset name to the gymnasium id bearl runs.

    Registered gymnasium ids are returned unchanged, except old MuJoCo versions (v2-v4) of the
    four locomotion tasks, which map to v5 (D4RL's v2 datasets were made on mujoco-py; bearl
    evaluates them in v5, see docs/datasets.md).
    """
    name = name.strip()
    m = _GYM_ID.match(name)
    if m and name in gym.registry:
        family = env_family(name)
        if family in ("hopper", "walker2d", "halfcheetah", "ant") and m.group("ver") != "5":
            return ENV_IDS[family]
        return name
    family = env_family(name)
    if family is not None:
        return ENV_IDS[family]
    if name in gym.registry:
        return name
    known = ", ".join(sorted(ENV_IDS.values()))
    raise BearlError(f"unknown environment '{name}' (known: {known}, or any gymnasium id)")


def _route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings to Python logging instead of stdout and a MUJOCO_LOG.TXT file in
    the working folder. MuJoCo 4 warns about gymnasium's own XML ('settotalmass' is
    deprecated) each time an env is built; that one goes to debug level. A handler the user
    installed is left alone."""
    try:
        import mujoco
    except ImportError:
        return
    if mujoco.get_mju_user_warning() is not None:
        return
    log = logging.getLogger("bearl.mujoco")

    def handler(message: str) -> None:
        level = logging.DEBUG if "settotalmass" in message else logging.WARNING
        log.log(level, "MuJoCo: %s", message)

    mujoco.set_mju_user_warning(handler)


def make_env(name: str, seed: int | None = None, **kwargs: object) -> gym.Env:
    """Create one gymnasium environment from any accepted name; reset it with ``seed`` if given."""
    _route_mujoco_warnings()
    env = gym.make(resolve_env_id(name), **kwargs)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_vector_env(name: str, num_envs: int, **kwargs: object) -> gym.vector.VectorEnv:
    """A synchronous vector env of ``num_envs`` copies that does not reset finished copies
    (callers stop stepping a copy once its episode is over)."""
    return gym.make_vec(
        resolve_env_id(name),
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **kwargs,
    )


def reference_scores(name: str | None) -> tuple[float, float] | None:
    """D4RL's (ref_min, ref_max) returns for the env family of ``name``, or None."""
    if name is None:
        return None
    family = env_family(name)
    return D4RL_REF_SCORES.get(family) if family else None


def references_or_d4rl(lo: Any, hi: Any, env_name: str | None) -> tuple[float, float] | None:
    """The dataset's own reference returns ``(lo, hi)`` when it has both, else D4RL's for the
    env (None when there are none): what every normalized score in bearl is computed with."""
    if lo is not None and hi is not None:
        return float(lo), float(hi)
    return reference_scores(env_name)


def normalized_score(
    returns: float | Sequence[float] | np.ndarray, ref_min: float, ref_max: float
) -> np.ndarray:
    """D4RL normalized score: ``100 * (R - ref_min) / (ref_max - ref_min)``."""
    r = np.asarray(returns, dtype=np.float64)
    return 100.0 * (r - ref_min) / (ref_max - ref_min)
