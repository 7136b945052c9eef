"""Training: the loop (``loop.train``), its evaluations and bootstrapping-error diagnostics,
checkpoints, and the run folder's logs."""
