"""The size of one snapshot of each algorithm at its paper preset (Hopper's widths), against a
checkpoint, which also holds Adam's two moments of every trained parameter.

    python studies/offline_selection/snapshot_sizes.py
"""

from __future__ import annotations

import io

import torch

from bearl.algos import ALGORITHMS
from bearl.config import resolve


def nbytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(buf.getvalue())


def main() -> None:
    print("| algorithm | snapshot MiB | checkpoint MiB (networks + Adam's moments) |")
    print("|---|---:|---:|")
    for name, cls in ALGORITHMS.items():
        _, cfg = resolve({"algo": name, "preset": "paper", "env": "Hopper-v5"})
        algo = cls(cfg, 11, 3, "cpu")
        state = algo.state_dict()
        state.pop("optims")  # what save_snapshot keeps
        trained = sum(
            p.numel() * p.element_size()
            for m in algo.nets.values()
            for p in m.parameters()
            if p.requires_grad
        )
        snap = nbytes(state)
        print(f"| {name} | {snap / 2**20:.2f} | {(snap + 2 * trained) / 2**20:.2f} |")


if __name__ == "__main__":
    main()
