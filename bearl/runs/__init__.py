"""Experiments over many runs: sweeps, run folders, result tables, plots, speed benchmarks."""
