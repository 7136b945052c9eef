"""Denormal numbers in a run's optimizer state, and what flushing them changes (CPU, one thread).

    python studies/speed/denormals.py studies/bear_200k/runs/BCQ_walker2d-medium_seed1
    python studies/speed/denormals.py RUN --updates 40 --repeats 3 --compare 200

Loads the run's ``checkpoint.pt`` (its networks, optimizers and settings) and the dataset it
was trained on, and prints:

* how many entries of each optimizer's state and of the networks' weights are denormal
  (nonzero and below 1.2e-38 in magnitude, where x86 arithmetic is slow);
* updates per second from that state with denormals computed and with them flushed to zero
  (``bearl.perf.FlushDenormals``, what ``bearl train`` does unless ``--flush_denormals
  false``), alternating ``--repeats`` times, each time from the checkpoint's state;
* from the same state, the same minibatches and the same random draws, ``--compare`` updates
  each way: the largest relative difference of a logged metric, and of a weight tensor (the
  norm of the difference over the tensor's norm).

Run it on a quiet machine (or say what ran beside it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bearl.perf import FlushDenormals, machine_line, tune_allocator
from bearl.policy.load import load_policy

TINY = torch.finfo(torch.float32).tiny  # 1.1754944e-38, the smallest normal float32


def load(run: Path):
    """The run's algorithm from its ``checkpoint.pt`` (networks, optimizers, precision: what
    ``bearl.load_policy`` restores), in training mode, and the checkpoint's step and config."""
    policy = load_policy(run, "final")
    for net in policy.algo.nets.values():
        net.train()
    return policy.algo, policy.step, policy.config


def denormal_share(tensors) -> tuple[int, int]:
    """(denormal entries, all entries) of the float tensors given."""
    bad = total = 0
    for t in tensors:
        if torch.is_tensor(t) and t.is_floating_point() and t.numel():
            x = t.detach().float().abs()
            bad += int(((x > 0) & (x < TINY)).sum())
            total += t.numel()
    return bad, total


def census(algo) -> list[tuple[str, int, int]]:
    rows = []
    for name, opt in algo.optims.items():
        states = [v for st in opt.state.values() for v in st.values()]
        rows.append((f"optimizer {name}", *denormal_share(states)))
    for name, net in algo.nets.items():
        rows.append((f"weights {name}", *denormal_share(net.parameters())))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run folder with checkpoint.pt")
    p.add_argument("--updates", type=int, default=40, help="updates per timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compare", type=int, default=200, help="updates for the numbers check")
    a = p.parse_args()
    tune_allocator()
    torch.set_num_threads(1)
    from bearl.data.load import load_dataset

    algo, step, cfg = load(a.run)
    dataset = load_dataset(cfg["train"]["dataset"], env=cfg["train"].get("env"))
    batch_size = getattr(algo.cfg, "batch_size", 256)
    print(f"{a.run} at step {step:,}; {machine_line()}; torch {torch.__version__}")
    for what, bad, total in census(algo):
        print(f"  {what:28s} {bad:>9,} of {total:>9,} entries denormal ({100 * bad / total:.1f} %)")

    def run(flush: bool, n: int, seed: int = 0):
        algo, _, _ = load(a.run)
        sampler = dataset.sampler(batch_size, "cpu", seed=seed)
        torch.manual_seed(seed)
        ctx = FlushDenormals(flush)
        metrics = []
        t0 = time.perf_counter()
        for _ in range(n):
            with ctx:
                metrics.append({k: float(v) for k, v in algo.update(sampler.sample()).items()})
        return n / (time.perf_counter() - t0), algo, metrics

    rates: dict[bool, list[float]] = {False: [], True: []}
    for r in range(a.repeats):
        for flush in (False, True):
            rates[flush].append(run(flush, a.updates, seed=r)[0])
    for flush, label in ((False, "computed"), (True, "flushed ")):
        v = rates[flush]
        print(
            f"  denormals {label}: {statistics.median(v):6.1f} updates/s "
            f"[{min(v):.1f}-{max(v):.1f}], {a.updates} updates x {a.repeats}"
        )
    gain = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"  flushed / computed: {gain:.2f}x")

    _, plain, m0 = run(False, a.compare, seed=123)
    _, flushed, m1 = run(True, a.compare, seed=123)
    worst_metric = max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-12) for x, y in zip(m0, m1) for k in x)
    worst_weight, where = 0.0, ""
    for name, net in plain.nets.items():  # (every weight the same: nothing to name)
        other = dict(flushed.nets[name].named_parameters())
        for pname, w in net.named_parameters():
            w = w.detach()
            d = float((w - other[pname].detach()).norm() / w.norm().clamp_min(1e-12))
            if d > worst_weight:
                worst_weight, where = d, f"({name}.{pname})"
    print(
        f"  after {a.compare} updates from the same state, batches and draws: largest relative "
        f"difference of a metric {worst_metric:.1e}, of a weight tensor (norm of the difference "
        f"over its norm) {worst_weight:.1e} {where}"
    )


if __name__ == "__main__":
    main()
