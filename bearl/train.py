"""The training loop: dataset -> minibatches -> ``algo.update`` -> logs, evaluation, checkpoints.

The loop knows nothing about any particular algorithm. Every ``eval_every`` gradient steps it
evaluates the policy, appends a row to ``progress.csv`` (means of every training metric since
the previous row), and writes ``checkpoint.pt`` atomically (and ``best.pt`` when the score is
the best so far). ``train(..., resume=RUN_DIR)`` continues a run; on CPU the continued run gives
the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bearl.checkpoint import (
    check_free_space,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bearl.config import TrainConfig, algorithm_class, build, to_dict
from bearl.data.dataset import Dataset
from bearl.diagnostics import BootstrapDiagnostics
from bearl.envs import make_env, reference_scores
from bearl.errors import BearlError, ConfigError, DiskFull, RunInterrupted
from bearl.evaluation import EvalResult, run_episodes
from bearl.files import write_atomic
from bearl.logging import RunLogger, truncate_progress
from bearl.perf import resident_mib, tune_allocator
from bearl.progress import progress_bar

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

# progress.csv columns that measure the machine, not the run: they differ between two runs
# that are otherwise identical (the determinism and resume guarantees exclude them)
MACHINE_COLUMNS = ("WallTime", "UpdatesPerSecond", "MemoryMiB")
EVAL_SEED_OFFSET = 100_000  # evaluation episodes use seeds seed+OFFSET+i, apart from training


class TrainingDiverged(BearlError):
    """A loss became NaN or Inf."""


class RunFolderBusy(BearlError):
    """Another process is training in the run folder."""


def train(
    cfg: TrainConfig | None = None,
    algo_cfg: Any = None,
    resume: str | Path | None = None,
    dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Train an algorithm on a dataset; returns the content of ``result.json``.

    Args:
        cfg: loop settings (default: ``TrainConfig()``, BEAR on hopper-medium).
        algo_cfg: the algorithm's config (default: the algorithm's defaults plus the preset).
        resume: a run folder to continue instead of starting a new run; its saved configs are
            used (``cfg.steps`` may extend the run when ``cfg`` is given).
        dataset: an in-memory Dataset to train on instead of loading ``cfg.dataset``.
    """

    if resume is not None:
        run_dir = Path(resume)
        cfg, algo_cfg = _configs_of_run(run_dir, cfg)
    else:
        cfg = cfg or TrainConfig()
        if algo_cfg is None:
            from bearl.config import resolve

            cfg, algo_cfg = resolve({**to_dict(cfg)})
        run_dir = _new_run_dir(cfg)
    with _claim(run_dir):  # before the (possibly long) dataset load
        try:
            return _train(cfg, algo_cfg, run_dir, resume, dataset)
        except DiskFull as e:  # one line: the file, and how to go on from the last checkpoint
            raise DiskFull(e.path, e.reason, _disk_full_note(run_dir)) from None
        except KeyboardInterrupt:
            if (run_dir / "checkpoint.pt").exists():
                step = int(_last_row(run_dir / "progress.csv").get("Step", 0))
                raise RunInterrupted(
                    f"{run_dir}: continue from its checkpoint (step {step}) with: "
                    f"bearl train --resume {run_dir}"
                ) from None
            raise RunInterrupted(
                f"{run_dir}: no checkpoint yet (the first is written at step {cfg.eval_every})"
            ) from None


def _train(
    cfg: TrainConfig, algo_cfg: Any, run_dir: Path, resume: str | Path | None, dataset
) -> dict[str, Any]:
    """The body of :func:`train`, run while this process holds the run folder."""
    tune_allocator()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    if dataset is None:
        from bearl.data.load import load_dataset

        dataset = load_dataset(cfg.dataset, env=cfg.env)
    env_name = cfg.env or dataset.info.env_name
    evaluate = cfg.eval_episodes > 0
    if evaluate and env_name is None:
        raise ConfigError(
            f"{cfg.dataset}: the dataset names no environment; pass --env to evaluate "
            "(or --eval_episodes 0)"
        )
    refs = _refs(dataset, env_name)
    envs = [make_env(env_name) for _ in range(cfg.eval_episodes)] if evaluate else []
    if envs:
        dataset.check_spaces(envs[0].observation_space, envs[0].action_space, env_name)
    low, high = _action_bounds(envs[0].action_space if envs else None, dataset.act_dim)
    center = torch.as_tensor((high + low) / 2, dtype=torch.float32, device=device)
    half = torch.as_tensor((high - low) / 2, dtype=torch.float32, device=device)
    rescale = not (np.allclose(low, -1) and np.allclose(high, 1))

    algo_cls = algorithm_class(cfg.algo)
    algo = algo_cls(algo_cfg, dataset.obs_dim, dataset.act_dim, device)
    sampler = dataset.sampler(getattr(algo_cfg, "batch_size", 256), device, seed=cfg.seed)
    gamma = getattr(algo_cfg, "gamma", 0.99)
    diagnostics = BootstrapDiagnostics(dataset, device, gamma, low, high) if evaluate else None

    check_free_space(run_dir, algo.nets)
    start, wall_before = 0, 0.0
    best = {"score": -math.inf, "step": None, "return": None}
    if resume is not None:  # before the logger reads progress.csv's header
        ckpt = load_checkpoint(run_dir / "checkpoint.pt", algo=algo_cls.name)
        algo.load_state_dict(ckpt["algo"])
        sampler.load_state_dict(ckpt["sampler"])
        set_rng_state(ckpt["rng"])
        start, wall_before, best = int(ckpt["step"]), float(ckpt["wall_time"]), ckpt["best"]
        truncate_progress(run_dir / "progress.csv", start)
    logger = RunLogger(
        run_dir,
        cfg.tensorboard,
        "bearl" if cfg.wandb else None,
        {**to_dict(cfg), **to_dict(algo_cfg)},
        resume=resume is not None,
    )
    if resume is not None:
        logger.info(f"resumed at step {start}")
    else:
        logger.write_variant(
            {
                "algorithm": algo_cls.name,
                "train": to_dict(cfg),
                "algo": to_dict(algo_cfg),
                "env_name": env_name,
                "dataset": _dataset_identity(dataset),
                "versions": _versions(),
                "seed": cfg.seed,
            }
        )
        logger.info(f"run {run_dir}: {algo_cls.name} on {dataset!r}, env {env_name}")

    @torch.no_grad()
    def act(obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=torch.float32, device=device)
        a = algo.act(x, deterministic=deterministic)
        return (a * half + center).cpu().numpy() if rescale else a.cpu().numpy()

    bar = progress_bar(cfg.steps, disable=not cfg.progress, initial=start, unit="step")
    sums: dict[str, torch.Tensor] = {}
    count = 0
    t_start = time.time()
    t_row, step_row = time.time(), start
    check_every = 1 if device.type == "cpu" else 100
    last = _last_row(run_dir / "progress.csv") if resume is not None else {}
    for step in range(start + 1, cfg.steps + 1):
        batch = sampler.sample()
        if rescale:
            batch = batch._replace(actions=(batch.actions - center) / half)
        metrics = algo.update(batch)
        for k, v in metrics.items():
            sums[k] = sums[k] + v if k in sums else v.clone()
        count += 1
        if step % check_every == 0:
            _check_finite(metrics, step, run_dir, logger)
        if step % 100 == 0 or step == cfg.steps:
            bar.update(step - bar.n)
        if step % cfg.eval_every != 0 and step != cfg.steps:
            continue

        now = time.time()
        row: dict[str, Any] = {
            "Step": step,
            "WallTime": round(wall_before + now - t_start, 2),
            "UpdatesPerSecond": round((step - step_row) / max(now - t_row, 1e-9), 2),
            "MemoryMiB": round(resident_mib(), 1),  # a leak shows up over a long run
        }
        _check_finite(metrics, step, run_dir, logger)
        _check_parameters(algo, step, run_dir, logger)  # before evaluating or saving
        row.update({k: float(v) / count for k, v in sums.items()})
        if evaluate:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(cfg.seed + EVAL_SEED_OFFSET + step)

                def episodes(policy: Callable[[np.ndarray], np.ndarray]) -> EvalResult:
                    return run_episodes(
                        policy,
                        env_name,
                        cfg.eval_episodes,
                        seed=cfg.seed + EVAL_SEED_OFFSET,
                        ref_scores=refs,
                        envs=envs,
                        gamma=gamma,
                    )

                result = episodes(act)
                if cfg.eval_deterministic:  # after the main evaluation: it changes nothing there
                    det = episodes(lambda o: act(o, deterministic=True)).summary()
            row.update(result.summary())
            if cfg.eval_deterministic:
                for key in ("AverageReturn", "NormalizedScore"):
                    if key in det:
                        row[f"Deterministic{key}"] = det[key]
            score = row.get("NormalizedScore", row["AverageReturn"])
            improved = score > best["score"]
            if improved:
                best = {"score": score, "step": step, "return": row["AverageReturn"]}
            row["BestScore"] = best["score"]
            row.update(diagnostics(algo, result))  # bootstrapping error (bearl/diagnostics.py)
        else:
            improved = False
        logger.row(row, step)
        last = row
        payload = {
            "algo": algo.state_dict(),
            "sampler": sampler.state_dict(),
            "rng": rng_state(),
            "step": step,
            "wall_time": row["WallTime"],
            "best": best,
            "config": {"train": to_dict(cfg), "algo": to_dict(algo_cfg)},
        }
        if improved:  # first: a checkpoint.pt of this step always has its best.pt
            save_checkpoint(run_dir / "best.pt", payload)
        save_checkpoint(run_dir / "checkpoint.pt", payload)
        msg = _row_message(row, best)
        bar.set_postfix_str(msg.split(" | ", 1)[1] if evaluate else "", refresh=False)
        if cfg.progress:
            bar.write(msg, file=sys.stderr)
        logger.info(msg)
        sums, count, t_row, step_row = {}, 0, time.time(), step
    bar.close()

    result = {
        "algo": algo_cls.name,
        "dataset": cfg.dataset,
        "env": env_name,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "wall_time": last.get("WallTime"),
        "final_score": last.get("NormalizedScore"),
        "final_return": last.get("AverageReturn"),
        "best_score": best["score"] if best["step"] is not None else None,
        "best_step": best["step"],
        "best_return": best["return"],
        "run_dir": str(run_dir),
    }
    write_atomic(run_dir / "result.json", json.dumps(result, indent=2).encode())
    logger.info(f"done: {json.dumps(result)}")
    logger.close()
    return result


# -- helpers ---------------------------------------------------------------------------------------
def _disk_full_note(run_dir: Path) -> str:
    """What a run stopped by a full disk has kept, and the command that continues it."""
    try:
        step = int(load_checkpoint(run_dir / "checkpoint.pt")["step"])
    except BearlError:
        return "; the run stopped before its first checkpoint: free some space and start it again"
    return (
        f"; the run stopped, its last checkpoint (step {step}) is kept: free some space, then "
        f"continue with: bearl train --resume {run_dir}"
    )


def _row_message(row: dict[str, Any], best: dict[str, Any]) -> str:
    msg = f"step {row['Step']:>8} | {row['UpdatesPerSecond']:.1f} upd/s"
    if "AverageReturn" in row:
        msg += f" | return {row['AverageReturn']:.1f} ± {row['StdReturn']:.1f}"
        if "NormalizedScore" in row:
            msg += (
                f" | score {row['NormalizedScore']:.1f} (best {best['score']:.1f} @ {best['step']})"
            )
    return msg


def _last_row(path: Path) -> dict[str, Any]:
    """The last progress row as numbers (a run resumed at its final step logs no new row)."""
    import csv

    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items() if v not in ("", None)} if rows else {}


def _check_finite(metrics: dict[str, torch.Tensor], step: int, run_dir: Path, logger) -> None:
    values = torch.stack([v.float() for v in metrics.values()])
    if bool(torch.isfinite(values).all()):
        return
    bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
    ckpt = run_dir / "checkpoint.pt"
    where = (
        f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint was written yet"
    )
    msg = f"{', '.join(bad)} became NaN/Inf at step {step}; training stopped ({where})"
    logger.info(msg)
    raise TrainingDiverged(msg)


def _check_parameters(algo, step: int, run_dir: Path, logger) -> None:
    """Stop if any network's parameters hold NaN/Inf (checked at each evaluation, so the last
    checkpoint, written at the previous evaluation, is the last good one)."""
    bad = [
        name
        for name, net in algo.nets.items()
        if not all(bool(torch.isfinite(p).all()) for p in net.parameters())
    ]
    if bad:
        ckpt = run_dir / "checkpoint.pt"
        where = f"the last good checkpoint is {ckpt}" if ckpt.exists() else "no checkpoint yet"
        msg = f"parameters of {', '.join(bad)} became NaN/Inf by step {step}; stopped ({where})"
        logger.info(msg)
        raise TrainingDiverged(msg)


def _device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return dev


def _refs(dataset, env_name: str | None) -> tuple[float, float] | None:
    lo, hi = dataset.info.ref_min_score, dataset.info.ref_max_score
    if lo is not None and hi is not None:
        return float(lo), float(hi)
    return reference_scores(env_name)


def _action_bounds(space, act_dim: int) -> tuple[np.ndarray, np.ndarray]:
    if space is None or not hasattr(space, "low"):
        return -np.ones(act_dim), np.ones(act_dim)
    return np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).stem if "/" in text else text).strip("-")


def _new_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run_name or (
        f"{cfg.algo}_{_slug(cfg.dataset)}_seed{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    )
    path = Path(cfg.log_dir) / name
    if (path / "checkpoint.pt").exists():
        raise ConfigError(f"{path}: a run already exists here; use --resume {path} or another name")
    return path


@contextlib.contextmanager
def _claim(run_dir: Path) -> Iterator[None]:
    """Make the run folder (or take the existing one), check that logs can be written there,
    and hold an exclusive lock on it while training, so that a second bearl process on the same
    folder (a sweep started twice, ``--resume`` of a run still going) stops with a clear error
    instead of writing over the first one's logs and checkpoints. The lock (``flock`` on the
    folder) ends with the process, however it ends. A folder made here and still empty at the
    end (e.g. the dataset failed to load) is removed again, so an input error leaves no empty
    run folder behind. Platforms without ``fcntl`` (Windows) and filesystems that refuse the
    lock train without it."""
    made = not run_dir.exists()
    fd = None
    try:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write_test"
            probe.write_bytes(b"x" * 4096)
            probe.unlink()
        except OSError as e:
            raise BearlError(f"{run_dir}: cannot write logs there ({e.strerror})") from None
        if fcntl is not None:
            fd = os.open(run_dir, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunFolderBusy(
                    f"{run_dir}: another bearl process is training in this folder"
                ) from None
            except OSError:  # a filesystem that cannot lock a folder (e.g. some NFS): no lock
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
        if made and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()


def _configs_of_run(run_dir: Path, override: TrainConfig | None) -> tuple[TrainConfig, Any]:
    path = run_dir / "params.json"
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a bearl run folder (no params.json)")
    variant = json.loads(path.read_text())
    cfg = build(TrainConfig, variant["train"])
    if override is not None and override.steps != cfg.steps:
        cfg.steps = override.steps
    algo_cfg = build(algorithm_class(cfg.algo).config_cls, variant["algo"])
    return cfg, algo_cfg


def _dataset_identity(dataset) -> dict[str, Any]:
    return {
        "source": dataset.info.source,
        "env_name": dataset.info.env_name,
        "transitions": len(dataset),
        "episodes": dataset.num_episodes,
        "ref_min_score": dataset.info.ref_min_score,
        "ref_max_score": dataset.info.ref_max_score,
        "metadata": {
            k: v
            for k, v in dataset.info.metadata.items()
            if isinstance(v, str | int | float | bool)
        },
    }


def _versions() -> dict[str, str]:
    import gymnasium

    from bearl import __version__

    out = {
        "bearl": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "python": sys.version.split()[0],
    }
    try:
        import mujoco

        out["mujoco"] = mujoco.__version__
    except ImportError:
        pass
    return out
