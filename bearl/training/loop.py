"""The training loop: dataset -> minibatches -> ``algo.update`` -> logs, evaluation, checkpoints.

The loop knows nothing about any particular algorithm. Every ``eval_every`` gradient steps it
evaluates the policy, appends a row to ``progress.csv`` (means of every training metric since
the previous row), and writes ``checkpoint.pt`` atomically (and ``best.pt`` when the score is
the best so far). ``train(..., resume=RUN_DIR)`` continues a run; on CPU the continued run gives
the same numbers as an uninterrupted one.

It receives a run's settings resolved once (``config.resolve_run``); the run folder's life
(its name, the claim on it, its params.json, variant.json and result.json) is run_folder.py's.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bearl.algos import algorithm_class
from bearl.config import RunConfig, TrainConfig, resolve_run, to_dict
from bearl.data.dataset import Dataset
from bearl.envs import normalized_score, references_or_d4rl
from bearl.errors import BearlError, ConfigError, DiskFull
from bearl.files import read_json
from bearl.perf import (
    FlushDenormals,
    flush_denormals_in_workers,
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
from bearl.training.fqe import FQETracker
from bearl.training.logging import truncate_progress
from bearl.training.run_folder import (
    RunFolder,
    claim,
    complete_note,
    disk_full_note,
    env_id,
    finish,
    interrupted,
    last_row,
    new_run_dir,
    open_logs,
    set_aside_earlier_run,
)

# progress.csv columns that measure the machine, not the run: they differ between two runs
# that are otherwise identical (the determinism and resume guarantees exclude them)
MACHINE_COLUMNS = ("WallTime", "UpdatesPerSecond", "MemoryMiB")


class TrainingDiverged(BearlError):
    """A loss became NaN or Inf."""


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

    The settings are resolved once, by ``bearl.config.resolve_run``; ``train_run`` trains them.
    """
    return train_run(resolve_run(cfg=cfg, algo_cfg=algo_cfg, resume=resume), dataset)


def train_run(run: RunConfig, dataset: Dataset | None = None) -> dict[str, Any]:
    """Train the run ``run`` describes (settings resolved by ``config.resolve_run``: a new run,
    or ``run.resume`` continued); returns the content of ``result.json``."""
    run_dir = run.resume if run.resume is not None else new_run_dir(run.train)
    complete = complete_note(run)  # a resumed run with nothing left to train: said once read
    with claim(run_dir):  # before the (possibly long) dataset load
        try:
            result = _train(run, run_dir, dataset)
            if complete:
                print(complete, file=sys.stderr)
            return result
        except DiskFull as e:  # one line: the file, and how to go on from the last checkpoint
            raise DiskFull(e.path, e.reason, disk_full_note(run_dir)) from None
        except KeyboardInterrupt:
            raise interrupted(run_dir, run.train.eval_every) from None


def _train(run: RunConfig, run_dir: Path, dataset: Dataset | None) -> dict[str, Any]:
    """The body of :func:`train_run`, run while this process holds the run folder."""
    cfg, algo_cfg, resume = run.train, run.algo, run.resume
    if resume is None:
        set_aside_earlier_run(run_dir)
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
    tracker = None
    if cfg.fqe_every:  # a learning curve from data alone
        info = dataset.info
        refs = references_or_d4rl(info.ref_min_score, info.ref_max_score, env_name)
        gamma = getattr(algo_cfg, "gamma", 0.99)
        tracker = FQETracker(dataset, gamma, refs, cfg.fqe_updates, device, cfg.seed)
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
        state, resume_note = _restore(run_dir, algo, sampler, tracker)
    folder = RunFolder(run_dir, run, algo_cls.name, env_name, data)
    logger = open_logs(folder, dataset, state.step)
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
            if tracker:
                if step % cfg.fqe_every == 0 or step == cfg.steps:
                    bar.phase(f"FQE, {cfg.fqe_updates} steps")
                    row.update(tracker(lambda s: scale.to_env(algo.act(s))))
                    bar.training()
                else:
                    row.update(tracker.empty())
            logger.row(row, step)
            if snap_every and (step % snap_every == 0 or step == cfg.steps):
                save_snapshot(run_dir, algo, step, config)  # first: a checkpoint has its snapshots
            _save(run_dir, algo, sampler, state, cfg, algo_cfg, improved, tracker)
            _report(bar, logger, cfg, row, state, evaluator is not None, step == cfg.steps)
        elif snap_every and step % snap_every == 0:
            save_snapshot(run_dir, algo, step, config)
    bar.finish()  # (a no-op when the last step's report has finished it)
    return finish(folder, logger, state.last, state.best)


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


def _save(
    run_dir: Path, algo, sampler, state: RunState, cfg, algo_cfg, improved: bool, tracker=None
) -> None:
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
    if tracker is not None:  # the FQE critic following the policy goes on after a resume
        payload["fqe"] = tracker.fqe.state_dict()
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


def _restore(run_dir: Path, algo, sampler, tracker=None) -> tuple[RunState, str | None]:
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
    if tracker is not None and "fqe" in ckpt:
        tracker.fqe.load_state_dict(ckpt["fqe"])
    state = RunState(int(ckpt["step"]), float(ckpt["wall_time"]), ckpt["best"])
    truncate_progress(run_dir / "progress.csv", state.step)
    state.last = ckpt.get("last_row") or _full_precision(
        last_row(run_dir / "progress.csv"), run_dir, state.step
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
    evaluated_in = env_id(env_name)
    if evaluated_in not in (None, env_name) and cfg.eval_episodes > 0:  # e.g. Hopper-v2: said once
        print(
            f"bearl: {env_name} is evaluated in {evaluated_in} (bearl runs gymnasium's MuJoCo v5 "
            "environments; docs/datasets.md)",
            file=sys.stderr,
        )
    return dataset, env_name


def _row_message(row: dict[str, Any], best: dict[str, Any]) -> str:
    msg = f"step {row['Step']:>8} | {row['UpdatesPerSecond']:.1f} upd/s"
    if "AverageReturn" in row:
        msg += f" | return {row['AverageReturn']:.1f} ± {row['StdReturn']:.1f}"
        if "NormalizedScore" in row:
            msg += (
                f" | score {row['NormalizedScore']:.1f} (best {best['score']:.1f} @ {best['step']})"
            )
    return msg


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


def _data_level(dataset: Dataset, env_name: str | None) -> dict[str, float | None]:
    """The data's own level: the mean return of its episodes (as ``bearl data info``), also
    normalized with the references the evaluations use (None without references)."""
    mean = float(np.mean(dataset.episode_returns))
    info = dataset.info
    refs = references_or_d4rl(info.ref_min_score, info.ref_max_score, env_name)
    score = float(normalized_score(mean, *refs)) if refs else None
    return {"return_mean": mean, "normalized_return_mean": score}
