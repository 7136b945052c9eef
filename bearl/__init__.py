"""bearl: offline reinforcement learning around BEAR (Kumar et al., NeurIPS 2019)."""

from __future__ import annotations

__version__ = "0.1.0"

from bearl.config import TrainConfig  # noqa: E402
from bearl.envs import make_env, normalized_score  # noqa: E402
from bearl.errors import BearlError, ConfigError, DatasetError  # noqa: E402

__all__ = [
    "BearlError",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "TrainConfig",
    "__version__",
    "load_dataset",
    "load_policy",
    "make_env",
    "normalized_score",
    "train",
]


def __getattr__(name: str):
    # lazy: importing bearl stays fast; the data layer and the loop load on first use
    if name in ("Dataset", "load_dataset"):
        import bearl.data as data

        return getattr(data, name)
    if name == "load_policy":
        from bearl.policy.load import load_policy

        return load_policy
    if name == "train":
        from bearl.training.loop import train

        return train
    raise AttributeError(name)
