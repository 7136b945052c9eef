"""``bearl bench``: gradient updates per second, FLOPs, roofline, evaluation and rollout speed.

For each algorithm and thread count it times minibatch sampling + one update after a warm-up,
repeated and interleaved with d3rlpy's counterpart at the SAME hyperparameters (batch size,
network sizes, numbers of MMD / backup samples) when the peer virtualenv exists
(``bench/setup_peer.sh``). It reports the median and spread of the repeats.

Roofline: the matrix multiplies of one update are recorded with their shapes (forward and
backward), each shape is timed on this machine at the same thread count, and the sum of
``flops / measured GEMM throughput`` over them is the fastest an update could run if nothing but
its matmuls took time. ``roofline_fraction`` = measured rate / that bound.

A busy machine: each row also measures how many cores other processes kept busy while it ran
(``others_busy_cores``, from ``/proc/stat``); above :data:`BUSY_CORES` the row is marked busy,
its rates are not the machine's. A roofline fraction above 1 (the update ran faster than its
own matmuls allow, because the GEMM timings ran while the machine was busier) is refused:
``roofline_fraction`` is None, with a note.

On a CUDA GPU (``--device cuda``) the updates, the minibatches and the roofline's GEMMs run on
the GPU and every timing waits for it (``torch.cuda.synchronize``); d3rlpy's peer is CPU-only
here, so GPU rows have no ratio.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bearl.algos import algorithm_class
from bearl.data.dataset import Dataset, DatasetInfo
from bearl.errors import BearlError
from bearl.perf import GLIBC_TUNABLES, CpuWatch, FlushDenormals, tune_allocator

# Each algorithm's ``bench_settings`` (in its own file) are the peer's hyperparameters (d3rlpy
# 2.8 defaults for BEAR / TD3 / IQL; BCQ and BC use batch 100), applied to both sides so that
# both compute the same thing; an algorithm with bench settings has a d3rlpy peer.
OBS_DIM, ACT_DIM = 11, 3  # Hopper's shapes
BUSY_CORES = 0.25  # other processes' cores during a row above which it is marked busy


@dataclass
class Row:
    algo: str
    threads: int
    updates_per_s: float
    spread: tuple[float, float]
    precision: str = "fp32"
    preset: str = "bench"
    behavior_model: str = "joint"
    device: str = "cpu"
    peer: str | None = None
    peer_updates_per_s: float | None = None
    ratio: float | None = None
    flops_per_update: float | None = None
    roofline_updates_per_s: float | None = None
    roofline_fraction: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def bench_dataset(n: int = 50_000, seed: int = 0) -> Dataset:
    """Random Hopper-shaped transitions (the content does not change the cost of an update)."""
    rng = np.random.default_rng(seed)
    timeouts = np.zeros(n, bool)
    timeouts[999::1000] = True
    return Dataset(
        rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        np.zeros(n, bool),
        timeouts,
        DatasetInfo(source="bench:random"),
    )


PRESETS = ("bench", "paper")


def make_algo(
    name: str,
    device: str = "cpu",
    obs_dim: int = OBS_DIM,
    act_dim: int = ACT_DIM,
    preset: str = "bench",
    precision: str = "fp32",
    behavior_model: str = "joint",
):
    """``name`` at its bench settings (``preset="bench"``: the d3rlpy peer's hyperparameters) or
    at what ``bearl train`` runs on Hopper (``"paper"``; any warm start left out, so that the
    whole update is timed), its hidden matmuls in ``precision``; ``behavior_model="pretrained"``
    times the update with a frozen behaviour VAE (algorithms that have one)."""
    cls = algorithm_class(name)
    if preset == "bench":
        settings = dict(cls.bench_settings)
    elif preset == "paper":
        settings = cls.preset("paper", "hopper")
        if "warm_start_steps" in cls.config_cls.__dataclass_fields__:
            settings["warm_start_steps"] = 0
    else:
        raise ValueError(f"preset must be one of {PRESETS}, not {preset!r}")
    if behavior_model != "joint" and "behavior_model" in cls.config_cls.__dataclass_fields__:
        settings["behavior_model"] = behavior_model
        if "demo_action" in cls.config_cls.__dataclass_fields__:
            settings["demo_action"] = "vae"
    cfg = cls.config_cls(**settings)
    algo = cls(cfg, obs_dim, act_dim, device)
    algo.set_precision(precision)
    return algo, cfg


def seeded_algo(
    name: str,
    data: Dataset,
    preset: str = "bench",
    precision: str = "fp32",
    behavior_model: str = "joint",
    device: str = "cpu",
):
    """``name`` built from torch seed 0 on ``device``, with a seed-0 sampler of ``data`` there:
    the same start for every timing of it."""
    torch.manual_seed(0)
    algo, cfg = make_algo(
        name, device, preset=preset, precision=precision, behavior_model=behavior_model
    )
    return algo, data.sampler(cfg.batch_size, device, seed=0)


def _sync(device: torch.device | str) -> None:
    """Wait for the GPU's queued work (a no-op on CPU), so that a timer measures the work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_updates(algo, sampler, steps: int, warmup: int) -> float:
    """Updates per second, each update run as the training loop runs it (on the CPU with
    denormals flushed: ``bearl.perf.FlushDenormals``)."""
    flushed = FlushDenormals(torch.device(sampler.device).type == "cpu")
    for _ in range(warmup):
        with flushed:
            algo.update(sampler.sample())
    _sync(sampler.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        with flushed:
            algo.update(sampler.sample())
    _sync(sampler.device)
    return steps / (time.perf_counter() - t0)


# -- FLOPs and roofline --------------------------------------------------------------------------
_MM_OPS = {"mm", "addmm", "bmm", "baddbmm"}


class _MatmulRecorder(TorchDispatchMode):
    """Records (op, m, k, n, batch, dtype) of every matrix multiply dispatched in the block."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int, int, int, int, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _MM_OPS:
            a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            if a.dim() == 3:
                self.calls.append(("bmm", a.shape[1], a.shape[2], b.shape[2], a.shape[0], a.dtype))
            else:
                self.calls.append(("mm", a.shape[0], a.shape[1], b.shape[1], 1, a.dtype))
        return func(*args, **(kwargs or {}))


def gemm_gflops(
    m: int,
    k: int,
    n: int,
    batch: int = 1,
    min_time: float = 0.05,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> float:
    """Measured GEMM throughput (GFLOP/s) at one shape and dtype on ``device``."""
    a = (torch.randn(batch, m, k) if batch > 1 else torch.randn(m, k)).to(device, dtype)
    b = (torch.randn(batch, k, n) if batch > 1 else torch.randn(k, n)).to(device, dtype)
    op = torch.bmm if batch > 1 else torch.mm
    for _ in range(3):
        op(a, b)
    reps, elapsed = 1, 0.0
    while True:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            op(a, b)
        _sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            break
        reps *= 2
    return 2.0 * m * k * n * batch * reps / elapsed / 1e9


def flops_and_roofline(algo, sampler) -> tuple[float, float]:
    """(FLOPs of one update by torch's counter, matmul-roofline updates/s)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = sampler.sample()
    with FlopCounterMode(display=False) as counter:
        algo.update(batch)
    flops = float(counter.get_total_flops())
    rec = _MatmulRecorder()
    with rec:
        algo.update(sampler.sample())
    cache: dict[tuple, float] = {}
    seconds = 0.0
    for _, m, k, n, bt, dtype in rec.calls:  # each matmul at its own dtype (bf16 or fp32)
        key = (m, k, n, bt, dtype)
        if key not in cache:
            cache[key] = gemm_gflops(m, k, n, bt, dtype=dtype, device=sampler.device)
        seconds += 2.0 * m * k * n * bt / (cache[key] * 1e9)
    return flops, (1.0 / seconds if seconds > 0 else float("nan"))


# -- the peer ------------------------------------------------------------------------------------
def peer_python() -> Path | None:
    """The d3rlpy virtualenv's python (``$BEARL_PEER_PYTHON`` or ``.venv-d3rlpy``), if present."""
    env = os.environ.get("BEARL_PEER_PYTHON")
    candidates = [Path(env)] if env else []
    root = Path(__file__).resolve().parents[2]
    candidates.append(root / ".venv-d3rlpy" / "bin" / "python")
    return next((p for p in candidates if p.exists()), None)


def run_peer(
    python: Path, name: str, threads: int, steps: int, warmup: int, allocator: str = "bearl"
) -> float | None:
    """d3rlpy's updates/s for ``name`` at its bench settings. ``allocator="bearl"`` runs it with
    the glibc malloc settings bearl's own side runs with (``bearl.perf.tune_allocator``), so the
    ratio compares the updates and not the allocators; ``"default"`` leaves glibc as it is."""
    algo = algorithm_class(name)
    s = algo.bench_settings
    script = Path(__file__).with_name("peer_d3rlpy.py")  # in the package: found when installed
    cmd = [
        str(python),
        str(script),
        "--algo",
        name,
        "--threads",
        str(threads),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--batch",
        str(s["batch_size"]),
        "--hidden",
        *map(str, s["actor_hidden"]),
    ]
    if "vae_hidden" in s:
        cmd += ["--vae-hidden", *map(str, s["vae_hidden"])]
    for setting, flag in algo.bench_peer_flags.items():  # e.g. BCQ's backup samples
        cmd += [flag, str(s[setting])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("GLIBC_TUNABLES", None)
    if allocator == "bearl" and sys.platform.startswith("linux"):
        env["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return float(json.loads(line)["updates_per_s"])
    print(f"peer {name} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return None


# -- evaluation and rollout speed ------------------------------------------------------------------
def bench_evaluation(episodes: int = 10, env_name: str = "HalfCheetah-v5") -> dict[str, float]:
    """Seconds for ``episodes`` evaluation episodes: batched evaluator vs one env at a time,
    against the raw env steps alone (same number of steps, no policy). HalfCheetah never
    terminates, so every episode is the full 1000 steps."""
    from bearl.envs import make_env
    from bearl.rollouts import run_episodes

    torch.manual_seed(0)
    algo, _ = make_algo("BEAR", obs_dim=17, act_dim=6)

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        return algo.act(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    @torch.no_grad()
    def act_mean(obs: np.ndarray) -> np.ndarray:
        return algo.act(torch.as_tensor(obs, dtype=torch.float32), deterministic=True).numpy()

    t0 = time.perf_counter()
    res = run_episodes(act, env_name, episodes, seed=0)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_episodes(act_mean, env_name, episodes, seed=0)
    batched_mean = time.perf_counter() - t0
    total_steps = int(res.lengths.sum())
    t0 = time.perf_counter()
    for i in range(episodes):
        run_episodes(act, env_name, 1, seed=i)
    single = time.perf_counter() - t0
    env = make_env(env_name)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(total_steps, env.action_space.shape[0]))
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    raw = time.perf_counter() - t0
    return {
        "episodes": episodes,
        "env_steps": total_steps,
        "batched_s": batched,
        "one_at_a_time_s": single,
        "raw_env_steps_s": raw,
        "batched_over_raw": batched / raw,
        "mean_action_batched_s": batched_mean,
        "mean_action_over_raw": batched_mean / raw,
    }


def bench_rollout(n: int = 20_000) -> dict[str, float]:
    """Transitions per second of suite rollouts (the cost of ``bearl data make``)."""
    from bearl.data.suite import rollout
    from bearl.nets import TanhGaussianActor

    torch.manual_seed(0)
    actor = TanhGaussianActor(OBS_DIM, ACT_DIM, (256, 256), (-20.0, 2.0))
    t0 = time.perf_counter()
    rollout("Hopper-v5", actor, n, seed=0, progress=False)
    return {"transitions": n, "transitions_per_s": n / (time.perf_counter() - t0)}


# -- the command -----------------------------------------------------------------------------------
def run(
    algos: list[str],
    threads: list[int],
    steps: int,
    repeats: int,
    warmup: int,
    peer: bool = True,
    extras: bool = True,
    precisions: tuple[str, ...] = ("fp32",),
    presets: tuple[str, ...] = ("bench",),
    behavior_models: tuple[str, ...] = ("joint",),
    peer_allocator: str = "bearl",
    device: str = "cpu",
) -> list[Row]:
    from bearl.perf import cpu_flags, native_bf16

    tune_allocator()
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu:
        if not torch.cuda.is_available():
            raise BearlError(
                f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                "run the bench with --device cpu"
            )
        print(
            f"GPU: {torch.cuda.get_device_name(device)}, native bf16: "
            f"{'yes' if native_bf16(device) else 'no'}; d3rlpy's peer runs on CPU only, so "
            "GPU rows have no ratio"
        )
        peer = False
    elif "bf16" in precisions:
        have = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
        print(
            f"native bf16 matmuls on this CPU: {'yes (' + ', '.join(have) + ')' if have else 'no'}"
            + ("" if native_bf16() else "; bf16 rows measure converted matmuls")
        )
    py = peer_python() if peer else None
    if peer and py is None:
        print(
            "d3rlpy peer not found: run bench/setup_peer.sh (or set BEARL_PEER_PYTHON); "
            "measuring bearl only",
            file=sys.stderr,
        )
    ds = bench_dataset()
    rows = []
    combos = itertools.product(algos, presets, behavior_models, precisions, threads)
    for name, preset, behavior, precision, t in combos:
        fields = algorithm_class(name).config_cls.__dataclass_fields__
        if behavior != "joint" and "behavior_model" not in fields:
            continue  # no behaviour model to pretrain
        torch.set_num_threads(t)
        algo, sampler = seeded_algo(name, ds, preset, precision, behavior, device)
        has_peer = (
            py is not None and preset == "bench" and bool(algorithm_class(name).bench_settings)
        )
        ours, theirs = [], []
        watch = CpuWatch()
        for _ in range(repeats):  # interleaved: ours, peer, ours, peer, ...
            ours.append(time_updates(algo, sampler, steps, warmup))
            if has_peer:  # d3rlpy at fp32, its only precision
                v = run_peer(py, name, t, max(steps // 4, 20), warmup, peer_allocator)
                if v is not None:
                    theirs.append(v)
        flops, roof = flops_and_roofline(algo, sampler)
        med = statistics.median(ours)
        peer_med = statistics.median(theirs) if theirs else None
        row = Row(
            name,
            t,
            med,
            (min(ours), max(ours)),
            precision=precision,
            preset=preset,
            behavior_model=behavior,
            device=device,
            peer=f"d3rlpy {name}" if peer_med else None,
            peer_updates_per_s=peer_med,
            ratio=med / peer_med if peer_med else None,
            flops_per_update=flops,
            roofline_updates_per_s=roof,
            roofline_fraction=med / roof,
        )
        if theirs:
            row.extra["peer_spread"] = (min(theirs), max(theirs))
            row.extra["peer_allocator"] = peer_allocator
        _mark_busy(row, watch.others())
        rows.append(row)
        print(_fmt_row(row), flush=True)
    if extras:  # environment stepping: on CPU whatever the device
        torch.set_num_threads(threads[0])
        ev = bench_evaluation()
        print(
            f"evaluation, {ev['episodes']} HalfCheetah episodes ({ev['env_steps']} steps): batched "
            f"{ev['batched_s']:.2f} s, one at a time {ev['one_at_a_time_s']:.2f} s, raw env "
            f"steps {ev['raw_env_steps_s']:.2f} s -> batched/raw {ev['batched_over_raw']:.2f}x; "
            f"mean actions {ev['mean_action_batched_s']:.2f} s -> "
            f"{ev['mean_action_over_raw']:.2f}x"
        )
        ro = bench_rollout()
        print(f"rollout (bearl data make): {ro['transitions_per_s']:.0f} transitions/s")
        if rows:
            rows[0].extra.update({"evaluation": ev, "rollout": ro})
    return rows


def _mark_busy(row: Row, others: float | None) -> None:
    """Record what other processes used during the row; refuse a roofline fraction above 1."""
    row.extra["others_busy_cores"] = others
    row.extra["busy"] = others is not None and others > BUSY_CORES
    if row.roofline_fraction is not None and row.roofline_fraction > 1.0:
        row.extra["roofline_note"] = (
            f"measured {100 * row.roofline_fraction:.0f}% of the roofline, above 100%: the GEMM "
            "timings ran on a busier machine than the updates; not a roofline"
        )
        row.roofline_fraction = None


def _fmt_row(r: Row) -> str:
    peer = (
        f" | d3rlpy {r.peer_updates_per_s:7.1f} -> {r.ratio:5.2f}x" if r.peer_updates_per_s else ""
    )
    fraction = (
        f"{100 * r.roofline_fraction:.0f}%"
        if r.roofline_fraction is not None
        else "n/a: " + r.extra.get("roofline_note", "")
    )
    others = r.extra.get("others_busy_cores")
    busy = (
        f" | BUSY MACHINE: other processes kept {others:.1f} cores busy"
        if r.extra.get("busy")
        else ""
    )
    return (
        f"{r.algo:<10} {r.preset:<5} {r.precision} {r.behavior_model:<10} "
        + (f"{r.device} " if r.device != "cpu" else "")
        + f"threads {r.threads} | "
        f"{r.updates_per_s:7.1f} upd/s "
        f"[{r.spread[0]:.1f}-{r.spread[1]:.1f}]{peer} | {r.flops_per_update / 1e9:.2f} "
        f"GFLOP/update | roofline {r.roofline_updates_per_s:.1f} upd/s ({fraction}){busy}"
    )


def rows_to_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "algo": r.algo,
            "threads": r.threads,
            "precision": r.precision,
            "preset": r.preset,
            "behavior_model": r.behavior_model,
            "device": r.device,
            "updates_per_s": r.updates_per_s,
            "spread": list(r.spread),
            "peer": r.peer,
            "peer_updates_per_s": r.peer_updates_per_s,
            "ratio": r.ratio,
            "flops_per_update": r.flops_per_update,
            "roofline_updates_per_s": r.roofline_updates_per_s,
            "roofline_fraction": r.roofline_fraction,
            **r.extra,
        }
        for r in rows
    ]
