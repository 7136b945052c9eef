"""Where one BEAR update's time goes, per phase and per precision (CPU, one thread).

    python studies/cheaper_runs/update_breakdown.py --preset paper --precision fp32 bf16
    python studies/cheaper_runs/update_breakdown.py --preset bench --precision bf16 --ops 12

For each precision: the whole update, then each of its phases timed alone on one fixed batch
(the VAE step, the critic step and its target, the actor step and the VAE decoding it needs for
the MMD, the Polyak update), the same update at batch size 8 (what does not grow with the
batch: Python, dispatch, casts of the weights, Adam), and the matmul rate at the update's
largest shapes, both as autocast runs them (float32 inputs cast on the way) and on tensors
already in bfloat16. Milliseconds, the median of ``--repeats`` timings. With ``--ops N``, the
N operators of the whole update with the most time of their own, per operator and input
shapes, as torch's profiler counts them (ms per update and calls per update; the profiler adds
a few microseconds to each call, so small operators look dearer than they are). Run it on a
quiet machine, or say what ran beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bearl.algos import algorithm_class
from bearl.algos.base import soft_update
from bearl.perf import tune_allocator
from bearl.runs.bench import ACT_DIM, OBS_DIM, bench_dataset, make_algo


def ms(f: Callable[[], object], n: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean time of ``n`` calls of ``f`` (after 3 warm-up)."""
    for _ in range(3):
        f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n * 1e3)
    return statistics.median(times)


def warmed_up(preset: str, precision: str):
    """BEAR at ``preset`` and ``precision`` after 10 updates, its config, sampler and data."""
    data = bench_dataset()
    torch.manual_seed(0)
    algo, cfg = make_algo("BEAR", preset=preset, precision=precision)
    sampler = data.sampler(cfg.batch_size, "cpu", seed=0)
    for _ in range(10):
        algo.update(sampler.sample())
    return algo, cfg, sampler, data


def phases(preset: str, precision: str, n: int, repeats: int) -> dict[str, float]:
    algo, cfg, sampler, data = warmed_up(preset, precision)
    b = sampler.sample()
    out = {"update": ms(lambda: algo.update(sampler.sample()), n, repeats)}
    out["  VAE step"] = ms(lambda: algo._vae_step(b), n, repeats)
    out["  critic step"] = ms(lambda: algo._critic_step(b), n, repeats)
    out["    of it: target"] = ms(lambda: algo._target(b), n, repeats)
    out["  actor step"] = ms(lambda: algo._actor_step(b), n, repeats)
    with torch.no_grad():
        k = cfg.num_samples_match
        out["    of it: VAE decoding"] = ms(
            lambda: algo.vae.decode(b.observations, n=k), n, repeats
        )
    out["  Polyak update"] = ms(lambda: soft_update(algo.critic_target, algo.critic, 0.005), n, 1)
    cls = algorithm_class("BEAR")
    small = cls.preset(preset, "hopper") if preset == "paper" else dict(cls.bench_settings)
    small.update(warm_start_steps=0, batch_size=8)
    torch.manual_seed(0)
    tiny = cls(cls.config_cls(**small), OBS_DIM, ACT_DIM, "cpu")
    tiny.set_precision(precision)
    s8 = data.sampler(8, "cpu", seed=0)
    out["update at batch 8"] = ms(lambda: tiny.update(s8.sample()), n, repeats)
    return out


def top_ops(preset: str, precision: str, n: int, count: int) -> list[str]:
    """The ``count`` operators with the most self time over ``n`` whole updates, per shape."""
    from torch.profiler import ProfilerActivity, profile

    algo, _, sampler, _ = warmed_up(preset, precision)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(n):
            algo.update(sampler.sample())
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) / n / 1e3
    ops = sorted(
        (e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total
    )
    lines = [f"{precision}: {total:.2f} ms of self time per update under the profiler"]
    for e in ops[:count]:
        shapes = [list(x) for x in e.input_shapes if x]
        per_update = e.self_cpu_time_total / n / 1e3
        lines.append(f"  {per_update:6.2f} ms {e.count / n:5.1f} calls  {e.key} {shapes}")
    return lines


def linear_rates(rows: int, i: int, o: int, n: int, repeats: int) -> str:
    """One line: a linear layer [rows, i] -> [rows, o] in fp32, in bf16 under autocast (float32
    inputs and weights cast on the way, as the update runs it) and on tensors already cast."""
    x, w, b = torch.randn(rows, i), torch.randn(o, i), torch.randn(o)
    xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
    gflop = 2 * rows * i * o / 1e9

    def autocast() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.linear(x, w, b)

    rates = {
        "fp32": ms(lambda: F.linear(x, w, b), n, repeats),
        "bf16 under autocast": ms(autocast, n, repeats),
        "bf16 already cast": ms(lambda: F.linear(xb, wb, bb), n, repeats),
    }
    cells = ", ".join(f"{k} {v:.2f} ms ({gflop / v * 1e3:.0f} GFLOP/s)" for k, v in rates.items())
    return f"linear [{rows},{i}] x [{i},{o}]: {cells}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=("bench", "paper"), default="paper")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=30, help="calls per timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ops", type=int, default=0, help="the N operators with the most time")
    a = p.parse_args()
    tune_allocator()
    torch.set_num_threads(1)
    if a.ops:
        for prec in a.precision:
            print("\n".join(top_ops(a.preset, prec, a.steps, a.ops)))
        return
    table = {prec: phases(a.preset, prec, a.steps, a.repeats) for prec in a.precision}
    print(f"BEAR, preset {a.preset}, 1 thread, ms (median of {a.repeats})")
    print(f"{'':<26}" + "".join(f"{prec:>10}" for prec in a.precision))
    for key in next(iter(table.values())):
        print(f"{key:<26}" + "".join(f"{table[prec][key]:>10.2f}" for prec in a.precision))
    for shape in [(1024, 750, 750), (256, 750, 750), (2560, 256, 256)]:
        print(linear_rates(*shape, a.steps, a.repeats))


if __name__ == "__main__":
    main()
