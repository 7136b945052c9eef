"""Each run's final policy evaluated with both action rules, on the same fresh episodes.

    python studies/hopper_suite/eval_rules.py studies/hopper_suite/runs/BEAR_*_seed0 --episodes 10

BEAR (and BCQ) act by sampling several actions and taking the one the critic values most;
the deterministic rule takes the actor's mean action (BCQ: the perturbed VAE decoding of the
latent z = 0). This prints, for each run folder with a ``checkpoint.pt`` (the repository does
not store them: rerun the suite to get them), the normalized score of its final checkpoint
under both rules with their 95 % confidence intervals, as
``bearl eval RUN --checkpoint final [--deterministic]``
does. The episodes are ``bearl eval``'s fresh ones, not those the run was scored on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bearl.policy.load import evaluate, load_policy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--episodes", type=int, default=10)
    a = p.parse_args()
    print("| run | own rule (final) | deterministic (final) | logged final score |")
    print("|---|---:|---:|---:|")
    for run in a.runs:
        if not (run / "checkpoint.pt").is_file():
            print(f"| {run.name} | (no checkpoint.pt: rerun it to measure) | | |")
            continue
        policy = load_policy(run, "final")
        cells = []
        for deterministic in (False, True):
            res = evaluate(policy, a.episodes, deterministic=deterministic)
            s = res["normalized"]
            cells.append(f"{s['mean']:.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}]")
        result = run / "result.json"
        final = f"{json.loads(result.read_text())['final_score']:.1f}" if result.is_file() else ""
        print(f"| {run.name} | {cells[0]} | {cells[1]} | {final} |", flush=True)


if __name__ == "__main__":
    main()
