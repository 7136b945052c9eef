"""Choosing a policy without a simulator: Fitted Q Evaluation of a run's snapshots, and
selection rules over runs and snapshots."""
