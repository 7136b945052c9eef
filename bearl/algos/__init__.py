"""The algorithms, each one file that owns everything about itself (config and presets, update,
action rule, what export and bench need). This registry is the one list of them: adding an
algorithm is one file and one line here (``ALGORITHMS``); one defined outside bearl (a user's
file, a test) is added with :func:`register`. Everything else (``bearl train --algo`` and its
``--help``, ``bearl eval``, ``export``, ``report``, ``bench``, sweeps) reads this list."""

from __future__ import annotations

import dataclasses

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


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Add the Algorithm subclass ``cls`` to the registry under ``cls.name`` (usable as a class
    decorator); from then on ``bearl train --algo NAME`` trains it, ``--help`` lists its
    settings, and its runs evaluate, export and report as any other. ConfigError when the name
    (case-insensitive) is another class's or ``cls`` is no algorithm with a config dataclass."""
    config = getattr(cls, "config_cls", None)
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)) or not (
        isinstance(config, type) and dataclasses.is_dataclass(config)
    ):
        raise ConfigError(f"{cls!r}: not an Algorithm subclass with a config_cls dataclass")
    taken = {k.lower(): v for k, v in ALGORITHMS.items()}.get(cls.name.lower())
    if taken is not None and taken is not cls:
        raise ConfigError(f"algorithm '{cls.name}' is registered already ({taken.__qualname__})")
    ALGORITHMS[cls.name] = cls
    return cls


def unregister(name: str) -> type[Algorithm]:
    """Remove the algorithm registered under ``name`` (case-insensitive) and return its class."""
    return ALGORITHMS.pop(algorithm_class(name).name)


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
__all__ += ["algorithm_class", "register", "unregister"]
