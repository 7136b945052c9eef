"""``torch.compile`` of a whole update, measured against eager mode (CPU).

    python studies/speed/compile_update.py --algo BC TD3 --threads 1 --repeats 3
    python studies/speed/compile_update.py --algo BEAR --preset paper --precision bf16

Builds each algorithm as ``bearl bench`` does, twice from the same seed: one runs eagerly,
the other through ``torch.compile(algo.update)`` (inductor; Dynamo splits the update at
``backward()`` and the optimizer step, so the forward, its backward and the element-wise work
around them are compiled). It first checks that both give the same losses for a few updates
(the compiled kernels may round differently, so to a tolerance), then times updates,
alternating eager and compiled ``--repeats`` times, and prints the median updates/s of each,
the gain and the compile time. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bearl.perf import tune_allocator
from bearl.runs.bench import bench_dataset, seeded_algo, time_updates


def build(name: str, data, compiled: bool, preset: str = "bench", precision: str = "fp32"):
    """A fresh ``name`` from seed 0 with its sampler (``bearl bench``'s ``preset`` and
    ``precision``); its update compiled when asked."""
    algo, sampler = seeded_algo(name, data, preset, precision)
    if compiled:
        algo.update = torch.compile(algo.update)
    return algo, sampler


def same_losses(name: str, data, steps: int = 5, **settings) -> float:
    """Largest relative difference of the returned metrics over ``steps`` updates (random ops
    in compiled code drawn as eager mode draws them, so that both see the same noise)."""
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    eager, s1 = build(name, data, compiled=False, **settings)
    comp, s2 = build(name, data, compiled=True, **settings)
    worst = 0.0
    for _ in range(steps):
        torch.manual_seed(eager.step)
        a = eager.update(s1.sample())
        torch.manual_seed(comp.step)
        b = comp.update(s2.sample())
        for k in a:
            x, y = float(a[k]), float(b[k])
            worst = max(worst, abs(x - y) / max(abs(x), 1e-6))
    inductor_config.fallback_random = False
    torch._dynamo.reset()
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", nargs="+", default=["BC", "TD3"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--preset", choices=("bench", "paper"), default="bench")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = p.parse_args()
    settings = {"preset": a.preset, "precision": a.precision}
    tune_allocator()
    torch.set_num_threads(a.threads)
    data = bench_dataset()
    for name in a.algo:
        diff = same_losses(name, data, **settings)
        print(f"{name}: largest relative difference of the metrics, 5 updates: {diff:.1e}")
        rates: dict[str, list[float]] = {"eager": [], "compiled": []}
        compile_s = 0.0
        steps = a.steps * (5 if name == "BC" else 1)
        for _ in range(a.repeats):
            for mode in rates:
                algo, sampler = build(name, data, mode == "compiled", **settings)
                t0 = time.perf_counter()
                for _ in range(3):  # compiles here (both branches of a policy delay)
                    algo.update(sampler.sample())
                if mode == "compiled":
                    compile_s = max(compile_s, time.perf_counter() - t0)
                rates[mode].append(time_updates(algo, sampler, steps, 30))
        torch._dynamo.reset()
        med = {k: statistics.median(v) for k, v in rates.items()}
        spread = {k: f"[{min(v):.1f}-{max(v):.1f}]" for k, v in rates.items()}
        print(
            f"{name} {a.preset} {a.precision} {a.threads} thread(s): "
            f"eager {med['eager']:.1f} {spread['eager']}, "
            f"compiled {med['compiled']:.1f} {spread['compiled']} upd/s "
            f"({100 * (med['compiled'] / med['eager'] - 1):+.0f} %); compiling took up to "
            f"{compile_s:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
