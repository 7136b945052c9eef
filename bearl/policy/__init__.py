"""Using a trained policy: load it from a run folder, evaluate, export, record."""

from bearl.policy.load import Policy, evaluate, load_policy

__all__ = ["Policy", "evaluate", "load_policy"]
