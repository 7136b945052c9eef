"""A run folder's life: named, claimed against other processes, an earlier run set aside, its
files written (params.json and variant.json at the start, debug.log's first lines, result.json
and progress.png at the end), and what it says when it is complete, interrupted or out of disk.

The training loop (loop.py) calls these; it writes progress.csv rows and checkpoints itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bearl.config import RunConfig, TrainConfig, preset_line, to_dict
from bearl.data.dataset import Dataset
from bearl.envs import resolve_env_id
from bearl.errors import BearlError, ConfigError, RunInterrupted
from bearl.files import dataset_label, dataset_slug, read_json, write_atomic
from bearl.perf import machine, machine_line
from bearl.training.checkpoint import load_checkpoint
from bearl.training.logging import RunLogger

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None


class RunFolderBusy(BearlError):
    """Another process is training in the run folder."""


@dataclass
class RunFolder:
    """A run folder being trained in, and what its files record of the run."""

    path: Path
    run: RunConfig
    """The run's settings (config.resolve_run)."""
    algo_name: str
    env_name: str | None
    """The environment as given (or the dataset's)."""
    data: dict[str, float | None]
    """The data's own level: ``return_mean``, ``normalized_return_mean`` (None without
    references)."""

    @property
    def cfg(self) -> TrainConfig:
        return self.run.train


# -- before the run: its folder ----------------------------------------------------------------
def new_run_dir(cfg: TrainConfig) -> Path:
    """The folder of a new run: ``--run_name``, or ``<algo>_<dataset>_seed<seed>_<time>``, under
    ``--log_dir``; ConfigError when a run with a checkpoint is there already."""
    name = cfg.run_name or (
        f"{cfg.algo}_{dataset_slug(cfg.dataset)}_seed{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    )
    path = Path(cfg.log_dir) / name
    if (path / "checkpoint.pt").exists():
        raise ConfigError(f"{path}: a run already exists here; use --resume {path} or another name")
    return path


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[None]:
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


# what a run writes in its folder: set aside, not overwritten, when a new run starts there
RUN_FILES = (
    "progress.csv", "debug.log", "result.json", "variant.json", "params.json", "progress.png",
    "best.pt", "snapshots",
)  # fmt: skip


def set_aside_earlier_run(run_dir: Path) -> None:
    """A new run in a folder that holds an earlier run's logs but no checkpoint to resume from
    (it stopped before its first checkpoint, or the checkpoint was lost): move that run's files
    into ``previous-<time>/`` and say so, instead of overwriting its progress.csv and adding to
    its debug.log."""
    if not (run_dir / "progress.csv").exists():
        return
    old = [run_dir / n for n in RUN_FILES if (run_dir / n).exists()]
    step = int(last_row(run_dir / "progress.csv").get("Step", 0))
    aside = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    for path in old:
        path.rename(aside / path.name)
    print(
        f"bearl: {run_dir} held a run logged to step {step:,} with no checkpoint.pt to resume "
        f"from; its files are kept in {aside.name}/ and this run starts at step 0",
        file=sys.stderr,
        flush=True,
    )


def complete_note(run: RunConfig) -> str | None:
    """For a resumed run that has nothing left to train: what to say once it is read."""
    done = read_json(run.resume / "result.json") if run.resume is not None else None
    if not (isinstance(done, dict) and done.get("steps") == run.train.steps):
        return None
    return (
        f"bearl: {run.resume} is already complete at {run.train.steps:,} steps; to extend it: "
        f"bearl train --resume {run.resume} --steps M (M > {run.train.steps})"
    )


def interrupted(run_dir: Path, eval_every: int) -> RunInterrupted:
    """Ctrl-C: the run folder, and the command that continues it from its checkpoint."""
    if (run_dir / "checkpoint.pt").exists():
        step = int(last_row(run_dir / "progress.csv").get("Step", 0))
        return RunInterrupted(
            f"{run_dir}: continue from its checkpoint (step {step}) with: "
            f"bearl train --resume {run_dir}"
        )
    return RunInterrupted(
        f"{run_dir}: no checkpoint yet (the first is written at step {eval_every})"
    )


# -- the start of the run: params.json, variant.json, debug.log --------------------------------
def open_logs(folder: RunFolder, dataset: Dataset, step: int) -> RunLogger:
    """The run's logger, with the start of the run said in debug.log and (with a progress
    bar) on stderr: the run folder, the preset, the plan; on resume (at ``step``), what
    extending keeps. A new run writes params.json and variant.json."""
    run, cfg, run_dir = folder.run, folder.cfg, folder.path
    if cfg.steps < step:
        raise ConfigError(
            f"{run_dir}: --steps {cfg.steps} is below the step the run has reached "
            f"({step}); give --steps {step} or more"
        )
    logger = RunLogger(
        run_dir,
        cfg.tensorboard,
        "bearl" if cfg.wandb else None,
        {**to_dict(cfg), **to_dict(run.algo)},
        resume=run.resume is not None,
    )
    if run.resume is not None:
        logger.info(f"resumed at step {step} on {machine_line()}")
        if cfg.device == "cpu":
            logger.info(_denormals_line(cfg))
        if cfg.steps != run.started_steps:  # params.json keeps the length the run started with
            logger.info(
                f"extended from {run.started_steps:,} to {cfg.steps:,} steps (params.json and "
                "variant.json keep the settings the run started with; result.json has the steps "
                "it reached)"
            )
        if run.extension_note:  # e.g. a warm start capped for the run's first length
            logger.info(run.extension_note)
            print(f"bearl: {run.extension_note}", file=sys.stderr, flush=True)
    else:
        _start_logs(folder, logger, dataset)
    if cfg.progress:  # once the input has loaded (an error in it stays one line); absolute,
        where = "resuming" if run.resume is not None else "run folder"  # and not in debug.log
        print(f"bearl: {where} {run_dir.absolute()}", file=sys.stderr, flush=True)
    _say(cfg, logger, preset_line(folder.algo_name, cfg.preset, cfg.env or cfg.dataset))
    if cfg.progress:
        print(f"bearl: {_plan(folder, step)}", file=sys.stderr, flush=True)
    return logger


def _start_logs(folder: RunFolder, logger: RunLogger, dataset: Dataset) -> None:
    cfg, env_name = folder.cfg, folder.env_name
    here = machine()
    logger.write_variant(
        {
            "algorithm": folder.algo_name,
            "train": to_dict(cfg),
            "algo": to_dict(folder.run.algo),
            "env_name": env_name,  # as given (or the dataset's)
            "env_id": env_id(env_name),  # the environment evaluated in
            "dataset": {**dataset_identity(dataset), **folder.data},
            "versions": versions(),
            "machine": here,  # where it started; debug.log names each resume's
            "seed": cfg.seed,
        }
    )
    evaluated_in = env_id(env_name)
    env = env_name if evaluated_in == env_name else f"{env_name} (evaluated in {evaluated_in})"
    logger.info(f"run {folder.path.name}: {folder.algo_name} on {dataset!r}, env {env}")
    logger.info(f"machine: {machine_line(here)}")
    if cfg.device == "cpu":
        logger.info(_denormals_line(cfg))


def _denormals_line(cfg: TrainConfig) -> str:
    if cfg.flush_denormals:
        return "gradient updates with denormals flushed to zero (--flush_denormals true)"
    return "gradient updates computing on denormals (--flush_denormals false)"


def _plan(folder: RunFolder, step: int) -> str:
    """What the run is about to do, in one line."""
    cfg, env_name = folder.cfg, folder.env_name
    where = f" in {env_id(env_name)}" if env_name and cfg.eval_episodes > 0 else ""
    steps = f"from step {step:,} to {cfg.steps:,}" if step else f"for {cfg.steps:,} steps"
    evals = (
        f", evaluating {cfg.eval_episodes} episodes every {cfg.eval_every:,} steps"
        if cfg.eval_episodes > 0
        else ", no evaluations (--eval_episodes 0)"
    )
    return f"training {folder.algo_name} on {dataset_label(cfg.dataset)}{where} {steps}{evals}"


def _say(cfg: TrainConfig, logger: RunLogger, text: str) -> None:
    """A line about the run: in debug.log, and on stderr when the run shows its progress."""
    logger.info(text)
    if cfg.progress:
        print(f"bearl: {text}", file=sys.stderr, flush=True)


# -- the end of the run: result.json, progress.png ---------------------------------------------
def finish(
    folder: RunFolder, logger: RunLogger, last: dict[str, Any], best: dict[str, Any]
) -> dict[str, Any]:
    """result.json (the final and best scores, and the data's own level), then progress.png;
    ``last``: the last progress row, ``best``: the best evaluation's score, step and return."""
    cfg, run_dir, data = folder.cfg, folder.path, folder.data
    result = {
        "algo": folder.algo_name,
        "dataset": cfg.dataset,
        "env": folder.env_name,  # as given (or the dataset's)
        "env_id": env_id(folder.env_name),  # the environment evaluated in
        "seed": cfg.seed,
        "steps": cfg.steps,
        "precision": cfg.precision,
        "wall_time": last.get("WallTime"),
        "final_score": last.get("NormalizedScore"),
        "final_return": last.get("AverageReturn"),
        "best_score": best["score"] if best["step"] is not None else None,
        "best_step": best["step"],
        "best_return": best["return"],
        "data_score": data["normalized_return_mean"],  # the dataset's episodes, normalized
        "data_return": data["return_mean"],
        "run_dir": run_dir.name,  # relative to the run's parent: no machine path in results
        "machine": machine(),  # the one that finished it (params.json: the one that started)
    }
    write_atomic(run_dir / "result.json", json.dumps(result, indent=2).encode())
    logger.info(f"done: {json.dumps(result)}")
    if "AverageReturn" in last:  # the learning curve, as `bearl plot` draws it for one run
        from bearl.training.curve import plot_run

        try:
            plot_run(run_dir)
        except OSError as e:  # the run is finished all the same
            logger.info(f"progress.png not written: {e}")
            print(f"bearl: {run_dir / 'progress.png'} not written: {e}", file=sys.stderr)
    logger.close()
    return result


# -- helpers -----------------------------------------------------------------------------------
def env_id(env_name: str | None) -> str | None:
    """The gymnasium id bearl evaluates ``env_name`` in (``Hopper-v2`` -> ``Hopper-v5``); None
    for no name, or one no environment answers to (a run that does not evaluate)."""
    try:
        return resolve_env_id(env_name) if env_name is not None else None
    except BearlError:
        return None


def last_row(path: Path) -> dict[str, Any]:
    """The last progress row as numbers (a run resumed at its final step logs no new row)."""
    import csv

    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items() if v not in ("", None)} if rows else {}


def disk_full_note(run_dir: Path) -> str:
    """What a run stopped by a full disk has kept, and the command that continues it."""
    try:
        step = int(load_checkpoint(run_dir / "checkpoint.pt")["step"])
    except BearlError:
        return "; the run stopped before its first checkpoint: free some space and start it again"
    return (
        f"; the run stopped, its last checkpoint (step {step}) is kept: free some space, then "
        f"continue with: bearl train --resume {run_dir}"
    )


def dataset_identity(dataset) -> dict[str, Any]:
    """What variant.json records of the dataset: where it came from, its size and digest."""
    return {
        "source": dataset.info.source,
        "env_name": dataset.info.env_name,
        "transitions": len(dataset),
        "episodes": dataset.num_episodes,
        "sha1": dataset.digest(),  # the same transitions wherever the dataset was made
        "ref_min_score": dataset.info.ref_min_score,
        "ref_max_score": dataset.info.ref_max_score,
        "metadata": {
            k: v
            for k, v in dataset.info.metadata.items()
            if isinstance(v, str | int | float | bool)
        },
    }


def versions() -> dict[str, str]:
    """The versions of bearl and of what computes a run (variant.json)."""
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
