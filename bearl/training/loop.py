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
import sys
import time
import typing
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bearl.algos import algorithm_class
from bearl.config import (
    RESUME_SETTINGS,
    TrainConfig,
    build,
    preset_line,
    to_dict,
    warm_start_note,
)
from bearl.data.dataset import Dataset
from bearl.envs import normalized_score, references_or_d4rl, resolve_env_id
from bearl.errors import BearlError, ConfigError, DiskFull, RunInterrupted
from bearl.files import dataset_label, dataset_slug, read_json, write_atomic
from bearl.perf import (
    FlushDenormals,
    flush_denormals_in_workers,
    machine,
    machine_line,
    resident_mib,
    thread_warning,
    tune_allocator,
)
from bearl.progress import SETTLE_STEPS, StepBar
from bearl.training.behavior_vae import load_or_fit
from bearl.training.checkpoint import (
    check_free_space,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_snapshot,
    set_rng_state,
)
from bearl.training.evaluation import ActionScale, Evaluator
from bearl.training.logging import RunLogger, truncate_progress

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

# progress.csv columns that measure the machine, not the run: they differ between two runs
# that are otherwise identical (the determinism and resume guarantees exclude them)
MACHINE_COLUMNS = ("WallTime", "UpdatesPerSecond", "MemoryMiB")


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
        resume: a run folder to continue instead of starting a new run, with its saved
            configs. A ``cfg`` given may change only the settings in
            ``config.RESUME_SETTINGS`` (``steps`` extends the run); any other setting of
            ``cfg`` or ``algo_cfg`` that differs from the run's raises ConfigError
            (``log_dir`` and ``run_name`` are not compared: the folder is ``resume``).
        dataset: an in-memory Dataset to train on instead of loading ``cfg.dataset``.
    """

    complete = None  # a resumed run that has nothing left to train: what to say when it is read
    if resume is not None:
        run_dir = Path(resume)
        cfg, algo_cfg = _configs_of_run(run_dir, cfg, algo_cfg)
        done = read_json(run_dir / "result.json")
        if isinstance(done, dict) and done.get("steps") == cfg.steps:
            complete = (
                f"bearl: {run_dir} is already complete at {cfg.steps:,} steps; to extend it: "
                f"bearl train --resume {run_dir} --steps M (M > {cfg.steps})"
            )
    else:
        cfg = cfg or TrainConfig()
        if algo_cfg is None:
            from bearl.config import resolve

            cfg, algo_cfg = resolve({**to_dict(cfg)})
        run_dir = _new_run_dir(cfg)
    with _claim(run_dir):  # before the (possibly long) dataset load
        try:
            result = _train(cfg, algo_cfg, run_dir, resume, dataset)
            if complete:
                print(complete, file=sys.stderr)
            return result
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
    if resume is None:
        _set_aside_earlier_run(run_dir)
    device = _seed_and_device(cfg)
    dataset, env_name = _dataset_and_env(cfg, dataset)
    data = _data_level(dataset, env_name)
    evaluator = None
    if cfg.eval_episodes > 0:
        gamma = getattr(algo_cfg, "gamma", 0.99)
        info = dataset.info
        refs = references_or_d4rl(info.ref_min_score, info.ref_max_score, env_name)
        evaluator = Evaluator(
            env_name, cfg.eval_episodes, cfg.seed, refs, gamma, cfg.eval_deterministic, device
        )
        dataset.check_spaces(*evaluator.spaces, env_name)
    scale = ActionScale.of(evaluator.spaces[1] if evaluator else None, dataset.act_dim, device)
    algo_cls = algorithm_class(cfg.algo)
    algo = algo_cls(algo_cfg, dataset.obs_dim, dataset.act_dim, device)
    if cfg.precision != "fp32":
        _check_precision(cfg)
        algo.set_precision(cfg.precision)
    sampler = dataset.sampler(getattr(algo_cfg, "batch_size", 256), device, seed=cfg.seed)
    if resume is None:
        algo.prepare(dataset)  # dataset statistics the algorithm keeps (restored on resume)
    behavior_note = None
    if resume is None and algo.behavior_prefitted and algo.behavior_vae() is not None:
        behavior_note = load_or_fit(algo, dataset, cfg, algo_cfg, scale)  # (forked RNG)
        print(f"bearl: {behavior_note}", file=sys.stderr)
    if evaluator:
        evaluator.attach(dataset, scale)
    snap_every = cfg.eval_every if cfg.snapshot_every is None else cfg.snapshot_every
    check_free_space(run_dir, algo.nets, snapshots=cfg.steps // snap_every + 1 if snap_every else 0)
    # a resumed run is restored before the logger reads progress.csv's header
    state, resume_note = RunState(), None
    if resume is not None:
        state, resume_note = _restore(run_dir, algo, sampler)
    logger = _open_logs(run_dir, cfg, algo_cfg, algo_cls, dataset, env_name, data, state, resume)
    for note in (behavior_note, resume_note):
        if note:
            logger.info(note)

    label = f"training {algo_cls.name}"
    bar = StepBar(cfg.steps, state.step, label, disable=not cfg.progress)
    means = MetricMeans()
    check_every = 1 if device.type == "cpu" else 100
    config = {"train": to_dict(cfg), "algo": to_dict(algo_cfg)}
    flushed = FlushDenormals(cfg.flush_denormals and device.type == "cpu")
    for step in range(state.step + 1, cfg.steps + 1):
        batch = sampler.sample()
        with flushed:  # the update only: evaluation and MuJoCo compute as they always do
            metrics = algo.update(batch._replace(actions=scale.to_unit(batch.actions)))
        means.add(metrics)
        if step % check_every == 0:
            _check_finite(metrics, step, run_dir, logger)
        if step % SETTLE_STEPS == 0 or step == cfg.steps:
            bar.advance(step)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            _check_finite(metrics, step, run_dir, logger)
            _check_parameters(algo, step, run_dir, logger)  # before evaluating or saving
            row = state.row(step, means.pop())
            improved = False
            if evaluator:
                bar.phase(f"evaluating {cfg.eval_episodes} episodes")
                improved = _evaluate(evaluator, algo, step, row, state)
                bar.training()
            logger.row(row, step)
            if snap_every and (step % snap_every == 0 or step == cfg.steps):
                save_snapshot(run_dir, algo, step, config)  # first: a checkpoint has its snapshots
            _save(run_dir, algo, sampler, state, cfg, algo_cfg, improved)
            _report(bar, logger, cfg, row, state, evaluator is not None, step == cfg.steps)
        elif snap_every and step % snap_every == 0:
            save_snapshot(run_dir, algo, step, config)
    bar.finish()  # (a no-op when the last step's report has finished it)
    return _finish(run_dir, logger, cfg, algo_cls, env_name, state, data)


def _open_logs(run_dir, cfg, algo_cfg, algo_cls, dataset, env_name, data, state, resume):
    """The run's logger, with the start of the run said in debug.log and (with a progress
    bar) on stderr: the run folder, the preset, the plan; on resume, what extending keeps."""
    if cfg.steps < state.step:
        raise ConfigError(
            f"{run_dir}: --steps {cfg.steps} is below the step the run has reached "
            f"({state.step}); give --steps {state.step} or more"
        )
    logger = RunLogger(
        run_dir,
        cfg.tensorboard,
        "bearl" if cfg.wandb else None,
        {**to_dict(cfg), **to_dict(algo_cfg)},
        resume=resume is not None,
    )
    if resume is not None:
        logger.info(f"resumed at step {state.step} on {machine_line()}")
        if cfg.device == "cpu":
            logger.info(_denormals_line(cfg))
        saved = _saved_configs(run_dir)[0]
        if cfg.steps != saved.steps:  # params.json keeps the length the run started with
            logger.info(
                f"extended from {saved.steps:,} to {cfg.steps:,} steps (params.json and "
                "variant.json keep the settings the run started with; result.json has the steps "
                "it reached)"
            )
        note = warm_start_note(saved, algo_cfg, cfg.steps)
        if note:  # extending a run whose warm start was capped for its first length
            logger.info(note)
            print(f"bearl: {note}", file=sys.stderr, flush=True)
    else:
        _start_logs(logger, run_dir, cfg, algo_cfg, algo_cls, dataset, env_name, data)
    if cfg.progress:  # once the input has loaded (an error in it stays one line); absolute,
        where = "resuming" if resume is not None else "run folder"  # and not in debug.log
        print(f"bearl: {where} {run_dir.absolute()}", file=sys.stderr, flush=True)
    _say(cfg, logger, preset_line(algo_cls.name, cfg.preset, cfg.env or cfg.dataset))
    if cfg.progress:
        print(f"bearl: {_plan(cfg, algo_cls, env_name, state.step)}", file=sys.stderr, flush=True)
    return logger


def _denormals_line(cfg: TrainConfig) -> str:
    if cfg.flush_denormals:
        return "gradient updates with denormals flushed to zero (--flush_denormals true)"
    return "gradient updates computing on denormals (--flush_denormals false)"


class MetricMeans:
    """Sums of the training metrics since the last progress row (kept on the device)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def pop(self) -> dict[str, float]:
        out = {k: float(v) / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return out


class RunState:
    """Where a run is: its step, wall time, best evaluation so far, last progress row."""

    def __init__(self, step: int = 0, wall_before: float = 0.0, best: dict | None = None) -> None:
        self.step, self.wall_before = step, wall_before
        self.best = best or {"score": -math.inf, "step": None, "return": None}
        self.last: dict[str, Any] = {}
        self.t_start = self.t_row = time.time()
        self.step_row = step

    def row(self, step: int, means: dict[str, float]) -> dict[str, Any]:
        """A new progress row: the machine columns, then the training metrics' means."""
        now = time.time()
        row: dict[str, Any] = {
            "Step": step,
            "WallTime": round(self.wall_before + now - self.t_start, 2),
            "UpdatesPerSecond": round((step - self.step_row) / max(now - self.t_row, 1e-9), 2),
            "MemoryMiB": round(resident_mib(), 1),  # a leak shows up over a long run
        }
        row.update(means)
        self.step, self.last = step, row
        return row

    def next_row(self) -> None:
        self.t_row, self.step_row = time.time(), self.step


def _evaluate(evaluator: Evaluator, algo, step: int, row: dict, state: RunState) -> bool:
    """Evaluation columns into ``row``; True when the score is the best so far."""
    result, columns = evaluator(algo, step)
    row.update(columns)
    score = row.get("NormalizedScore", row["AverageReturn"])
    improved = score > state.best["score"]
    if improved:
        state.best = {"score": score, "step": step, "return": row["AverageReturn"]}
    row["BestScore"] = state.best["score"]
    row.update(evaluator.diagnostics(algo, result))  # bootstrapping error (diagnostics.py)
    return improved


def _save(run_dir: Path, algo, sampler, state: RunState, cfg, algo_cfg, improved: bool) -> None:
    """checkpoint.pt (and best.pt after the best evaluation so far), written atomically."""
    payload = {
        "algo": algo.state_dict(),
        "sampler": sampler.state_dict(),
        "rng": rng_state(),
        "step": state.step,
        "wall_time": state.last["WallTime"],
        "best": state.best,
        "last_row": state.last,  # at full precision (progress.csv rounds): result.json's values
        "config": {"train": to_dict(cfg), "algo": to_dict(algo_cfg)},
        "spaces": {"obs_dim": algo.obs_dim, "act_dim": algo.act_dim},
    }
    if improved:  # first: a checkpoint.pt of this step always has its best.pt
        save_checkpoint(run_dir / "best.pt", payload)
    save_checkpoint(run_dir / "checkpoint.pt", payload)


def _report(
    bar: StepBar, logger, cfg: TrainConfig, row: dict, state: RunState, evaluated: bool, last: bool
) -> None:
    """The progress row as one line: on the bar, on stderr (with a bar) and in debug.log. The
    last one follows the bar's final state (printed once)."""
    msg = _row_message(row, state.best)
    bar.bar.set_postfix_str(msg.split(" | ", 1)[1] if evaluated else "", refresh=False)
    if last:
        bar.finish(msg if cfg.progress else None)
    elif cfg.progress:
        bar.write(msg)
    logger.info(msg)
    state.next_row()


def _plan(cfg: TrainConfig, algo_cls, env_name: str | None, step: int) -> str:
    """What the run is about to do, in one line."""
    where = f" in {_env_id(env_name)}" if env_name and cfg.eval_episodes > 0 else ""
    steps = f"from step {step:,} to {cfg.steps:,}" if step else f"for {cfg.steps:,} steps"
    evals = (
        f", evaluating {cfg.eval_episodes} episodes every {cfg.eval_every:,} steps"
        if cfg.eval_episodes > 0
        else ", no evaluations (--eval_episodes 0)"
    )
    return f"training {algo_cls.name} on {dataset_label(cfg.dataset)}{where} {steps}{evals}"


def _restore(run_dir: Path, algo, sampler) -> tuple[RunState, str | None]:
    """Networks, optimizers, sampler and RNG from checkpoint.pt; progress.csv cut back to it.
    Also returns a warning (printed here) when the checkpoint's sampler cannot go on exactly
    on this device."""
    ckpt = load_checkpoint(run_dir / "checkpoint.pt", algo=algo.name)
    algo.load_state_dict(ckpt["algo"])
    note = sampler.load_state_dict(ckpt["sampler"])
    if note:
        note = f"warning: {run_dir / 'checkpoint.pt'}: {note}"
        print(f"bearl: {note}", file=sys.stderr)
    set_rng_state(ckpt["rng"])
    state = RunState(int(ckpt["step"]), float(ckpt["wall_time"]), ckpt["best"])
    truncate_progress(run_dir / "progress.csv", state.step)
    state.last = ckpt.get("last_row") or _full_precision(
        _last_row(run_dir / "progress.csv"), run_dir, state.step
    )
    return state, note


def _full_precision(row: dict[str, Any], run_dir: Path, step: int) -> dict[str, Any]:
    """A progress row read back from progress.csv (rounded to 6 digits), with the values
    result.json holds at full precision when it is of the same step (a checkpoint written by an
    older bearl does not hold the row itself)."""
    result = read_json(run_dir / "result.json")
    if not isinstance(result, dict) or result.get("steps") != step:
        return row
    full = {
        "WallTime": result.get("wall_time"),
        "NormalizedScore": result.get("final_score"),
        "AverageReturn": result.get("final_return"),
    }
    return {**row, **{k: v for k, v in full.items() if v is not None}}


def _start_logs(logger, run_dir, cfg, algo_cfg, algo_cls, dataset, env_name, data) -> None:
    here = machine()
    logger.write_variant(
        {
            "algorithm": algo_cls.name,
            "train": to_dict(cfg),
            "algo": to_dict(algo_cfg),
            "env_name": env_name,  # as given (or the dataset's)
            "env_id": _env_id(env_name),  # the environment evaluated in
            "dataset": {**_dataset_identity(dataset), **data},
            "versions": _versions(),
            "machine": here,  # where it started; debug.log names each resume's
            "seed": cfg.seed,
        }
    )
    env_id = _env_id(env_name)
    env = env_name if env_id == env_name else f"{env_name} (evaluated in {env_id})"
    logger.info(f"run {run_dir.name}: {algo_cls.name} on {dataset!r}, env {env}")
    logger.info(f"machine: {machine_line(here)}")
    if cfg.device == "cpu":
        logger.info(_denormals_line(cfg))


def _finish(run_dir: Path, logger, cfg: TrainConfig, algo_cls, env_name, state: RunState, data):
    """result.json (the final and best scores, and the data's own level), then progress.png."""
    last, best = state.last, state.best
    result = {
        "algo": algo_cls.name,
        "dataset": cfg.dataset,
        "env": env_name,  # as given (or the dataset's)
        "env_id": _env_id(env_name),  # the environment evaluated in
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


def _check_precision(cfg: TrainConfig) -> None:
    from bearl.perf import native_bf16

    if not native_bf16(cfg.device):
        print(
            f"bearl: warning: --precision {cfg.precision} on a {cfg.device} without native bf16 "
            "matmuls (no avx512_bf16 / amx_bf16 flag): they are converted, and may be slower "
            "than fp32",
            file=sys.stderr,
        )


def _seed_and_device(cfg: TrainConfig) -> torch.device:
    tune_allocator()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.flush_denormals and cfg.device == "cpu":
        flush_denormals_in_workers()  # before anything else runs in parallel
    warning = thread_warning(torch.get_num_threads())
    if warning:
        print(f"bearl: {warning}", file=sys.stderr, flush=True)
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    return device


def _dataset_and_env(cfg: TrainConfig, dataset) -> tuple[Dataset, str | None]:
    if dataset is None:
        from bearl.data.load import load_dataset

        dataset = load_dataset(cfg.dataset, env=cfg.env)
    env_name = cfg.env or dataset.info.env_name
    if cfg.eval_episodes > 0 and env_name is None:
        raise ConfigError(
            f"{cfg.dataset}: the dataset names no environment; pass --env to evaluate "
            "(or --eval_episodes 0)"
        )
    env_id = _env_id(env_name)
    if env_id not in (None, env_name) and cfg.eval_episodes > 0:  # e.g. Hopper-v2: said once
        print(
            f"bearl: {env_name} is evaluated in {env_id} (bearl runs gymnasium's MuJoCo v5 "
            "environments; docs/datasets.md)",
            file=sys.stderr,
        )
    return dataset, env_name


# -- helpers ---------------------------------------------------------------------------------------
def _say(cfg: TrainConfig, logger, text: str) -> None:
    """A line about the run: in debug.log, and on stderr when the run shows its progress."""
    logger.info(text)
    if cfg.progress:
        print(f"bearl: {text}", file=sys.stderr, flush=True)


def _env_id(env_name: str | None) -> str | None:
    """The gymnasium id bearl evaluates ``env_name`` in (``Hopper-v2`` -> ``Hopper-v5``); None
    for no name, or one no environment answers to (a run that does not evaluate)."""
    try:
        return resolve_env_id(env_name) if env_name is not None else None
    except BearlError:
        return None


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


# what a run writes in its folder: set aside, not overwritten, when a new run starts there
_RUN_FILES = (
    "progress.csv", "debug.log", "result.json", "variant.json", "params.json", "progress.png",
    "best.pt", "snapshots",
)  # fmt: skip


def _set_aside_earlier_run(run_dir: Path) -> None:
    """A new run in a folder that holds an earlier run's logs but no checkpoint to resume from
    (it stopped before its first checkpoint, or the checkpoint was lost): move that run's files
    into ``previous-<time>/`` and say so, instead of overwriting its progress.csv and adding to
    its debug.log."""
    if not (run_dir / "progress.csv").exists():
        return
    old = [run_dir / n for n in _RUN_FILES if (run_dir / n).exists()]
    step = int(_last_row(run_dir / "progress.csv").get("Step", 0))
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


def _new_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run_name or (
        f"{cfg.algo}_{dataset_slug(cfg.dataset)}_seed{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
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


def _saved_configs(run_dir: Path) -> tuple[TrainConfig, Any]:
    """The configs a run folder's params.json holds."""
    path = run_dir / "params.json"
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a bearl run folder (no params.json)")
    variant = json.loads(path.read_text())
    cfg = build(TrainConfig, variant["train"])
    algo_cfg = build(algorithm_class(cfg.algo).config_cls, variant["algo"])
    return cfg, algo_cfg


def _configs_of_run(
    run_dir: Path, cfg: TrainConfig | None, algo_cfg: Any = None
) -> tuple[TrainConfig, Any]:
    """The run's saved configs, with the settings a resume may change taken from ``cfg``;
    ConfigError when ``cfg`` or ``algo_cfg`` differs from the run in any other setting."""
    saved, saved_algo = _saved_configs(run_dir)
    changed: dict[str, tuple[Any, Any]] = {}
    if cfg is not None:
        for f in fields(TrainConfig):
            if f.name not in (*RESUME_SETTINGS, "log_dir", "run_name"):
                if getattr(cfg, f.name) != getattr(saved, f.name):
                    changed[f.name] = (getattr(cfg, f.name), getattr(saved, f.name))
        for name in RESUME_SETTINGS:
            setattr(saved, name, getattr(cfg, name))
    if algo_cfg is not None:
        if type(algo_cfg) is not type(saved_algo):
            changed["algo"] = (type(algo_cfg).__name__, type(saved_algo).__name__)
        else:
            for f in fields(saved_algo):
                if getattr(algo_cfg, f.name) != getattr(saved_algo, f.name):
                    changed[f.name] = (getattr(algo_cfg, f.name), getattr(saved_algo, f.name))
    if changed:
        raise _kept_on_resume(run_dir, changed)
    return saved, saved_algo


def resume_config(run_dir: str | Path, values: dict[str, Any]) -> TrainConfig:
    """The TrainConfig that continues ``run_dir`` with ``values`` (settings by name, e.g. the
    flags of ``bearl train --resume RUN ...``, as strings or typed). Only the settings in
    ``config.RESUME_SETTINGS`` may change; a value of any other setting must equal the run's
    own, else ConfigError names them all in one line."""
    from bearl.config import check_settings, normalize_names, original_flag_notes, parse_value

    run_dir = Path(run_dir)
    check_settings(values)
    for note in original_flag_notes(values):
        print(f"bearl: {note}", file=sys.stderr)
    values = normalize_names(values)
    saved, saved_algo = _saved_configs(run_dir)
    hints = {**typing.get_type_hints(type(saved_algo)), **typing.get_type_hints(TrainConfig)}
    own = {"algo": saved_algo, **{f.name: saved_algo for f in fields(saved_algo)}}
    own.update({f.name: saved for f in fields(TrainConfig)})
    changed: dict[str, tuple[Any, Any]] = {}
    for name, value in values.items():
        if name in RESUME_SETTINGS:
            continue
        if name not in own:  # a setting of another algorithm (or none): not this run's
            changed[name] = (value, None)
            continue
        now = parse_value(hints[name], value, name)
        if name == "algo":
            now = algorithm_class(now).name
        before = getattr(own[name], name)
        if now != before:
            changed[name] = (value, before)  # as given
    if changed:
        raise _kept_on_resume(run_dir, changed)
    keep = {k: values[k] for k in RESUME_SETTINGS if k in values}
    return build(TrainConfig, {**to_dict(saved), **keep})


def _kept_on_resume(run_dir: Path, changed: dict[str, tuple[Any, Any]]) -> ConfigError:
    """One line: the settings given that differ from the run's, and what a resume may change."""
    given = ", ".join(f"--{k} {_text(now)}" for k, (now, _) in changed.items())
    kept = ", ".join(
        f"{k} {_text(before)}" if before is not None else f"no {k}"
        for k, (_, before) in changed.items()
    )
    may = ", ".join(f"--{k}" for k in RESUME_SETTINGS)
    return ConfigError(
        f"{run_dir / 'params.json'}: {given}: a resumed run keeps its own settings ({kept}); "
        f"a resume may change only {may} (start a new run for other settings)"
    )


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _data_level(dataset: Dataset, env_name: str | None) -> dict[str, float | None]:
    """The data's own level: the mean return of its episodes (as ``bearl data info``), also
    normalized with the references the evaluations use (None without references)."""
    mean = float(np.mean(dataset.episode_returns))
    info = dataset.info
    refs = references_or_d4rl(info.ref_min_score, info.ref_max_score, env_name)
    score = float(normalized_score(mean, *refs)) if refs else None
    return {"return_mean": mean, "normalized_return_mean": score}


def _dataset_identity(dataset) -> dict[str, Any]:
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
