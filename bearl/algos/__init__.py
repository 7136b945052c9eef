"""The algorithms, each one file that owns everything about itself (config and presets, update,
action rule, what export and bench need). This registry is the one list of them: adding an
algorithm is one file and one line here."""

from __future__ import annotations

from bearl.algos.base import Algorithm
from bearl.algos.bc import BC
from bearl.algos.bcq import BCQ
from bearl.algos.bear import BEAR
from bearl.algos.cql import CQL
from bearl.algos.dqfd import DQfD
from bearl.algos.iql import IQL
from bearl.algos.kl_control import KLControl
from bearl.algos.td3 import TD3
from bearl.algos.td3bc import TD3BC
from bearl.errors import ConfigError

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (BEAR, BCQ, TD3, BC, KLControl, DQfD, TD3BC, IQL, CQL)
}

# Names other BEAR code accepts that bearl does not provide, each with the reason.
NOT_PROVIDED: dict[str, str] = {
    "BEAR_IS": "the original code's BEAR with importance-weighted Bellman errors was broken "
    "there (it needs behaviour-policy means and variances in the buffer, reads Q heads 2 and 3 "
    "of a 2-head critic, and logs an undefined variable); see docs/bear.md",
}


def algorithm_class(name: str) -> type[Algorithm]:
    """The Algorithm class registered under ``name`` (case-insensitive)."""
    key = {k.lower(): k for k in ALGORITHMS}.get(name.lower())
    available = f"(available: {', '.join(ALGORITHMS)})"
    if key is None:
        why = {k.lower(): v for k, v in NOT_PROVIDED.items()}.get(name.lower())
        if why is not None:
            raise ConfigError(f"algorithm '{name}' is not provided: {why} {available}")
        raise ConfigError(f"unknown algorithm '{name}' {available}")
    return ALGORITHMS[key]


__all__ = [
    "ALGORITHMS",
    "NOT_PROVIDED",
    "BC",
    "BCQ",
    "BEAR",
    "CQL",
    "TD3",
    "TD3BC",
    "Algorithm",
    "DQfD",
    "IQL",
    "KLControl",
]
__all__ += ["algorithm_class"]
