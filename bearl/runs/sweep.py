"""Multi-seed sweeps: a YAML spec expanded into trials, run on Ray (or one after another).

A spec (docs/sweeps.md)::

    log_dir: runs/sweep-bear          # parent of the trials' run folders
    algos: [BEAR, BCQ]
    datasets: [hopper-medium, walker2d-medium]
    seeds: [0, 1, 2]                  # or num_seeds: 3 (seeds 0, 1, 2)
    grid:                             # any TrainConfig or algorithm setting: the values to try
      mmd_sigma: [10, 20]
    base:                             # settings common to every trial
      steps: 100000
      eval_every: 5000

Trials are the product datasets x algos x grid x seeds, run seed by seed. A grid or base
setting that an algorithm does not have is left out of its trials (BCQ above runs once per seed,
not once per ``mmd_sigma``). Each trial is one run folder with a name built from its values,
``<ALGO>_<dataset>[_<field>=<value>...]_seed<N>``, so running the spec again skips the trials
that have ``result.json`` and resumes those that have a checkpoint. A folder whose saved
settings differ from the trial's is reported as a conflict and left alone, except an fp32 run
in a bf16 trial's folder (``fp32_fallback`` of ``run_sweep``), which stands for the trial.

Trials that differ by more than a grid (other seeds or settings per algorithm) go in
``parts``, each a spec of its own that takes what it does not set from the top (its ``base``
and ``grid`` on top of the top's)::

    log_dir: studies/bear_200k/runs
    datasets: [walker2d-medium, hopper-medium]
    base: {steps: 200000}
    parts:
      - {algos: [BEAR], seeds: [1, 2], base: {precision: bf16}}
      - {algos: [BC], seeds: [1, 2]}

The trials of a spec with parts run seed by seed across the parts (``order: seeds``, the
default), or part by part, each seed by seed (``order: parts``: cheap algorithms' whole table
before an expensive one's first seed).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from bearl.config import RESUME_SETTINGS
from bearl.errors import BearlError, ConfigError
from bearl.files import dataset_label, dataset_slug, read_json, slug

SPEC_KEYS = {"log_dir", "algos", "datasets", "seeds", "num_seeds", "grid", "base", "parts"}
PART_KEYS = SPEC_KEYS - {"log_dir", "parts"}
ORDERS = ("seeds", "parts")
RESERVED = {"algo", "dataset", "seed", "run_name"}  # set by the sweep itself
REPORT_EVERY = 30.0  # seconds between progress summaries while trials run
# settings that may differ between a trial and its existing run folder: those a resume may
# change, and the folder's own name
NOT_COMPARED = set(RESUME_SETTINGS) | {"log_dir", "run_name"}
RAY_MISSING = (
    "bearl sweep runs trials on Ray, which is not installed: pip install 'bearl[ray]' (from a "
    "clone: pip install -e '.[ray]'), or pass --local to run the trials one after another in "
    "this process"
)


@dataclass
class SweepSpec:
    """A parsed sweep spec (see the module docstring)."""

    algos: list[str]
    datasets: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    log_dir: str = "runs/sweep"
    source: str = "spec"
    """Where the spec came from (its file), for error messages."""
    parts: list[SweepSpec] = field(default_factory=list)
    """Specs of their own, expanded instead of this one's product (see the module docstring);
    this spec's algos, datasets and seeds are then their union."""
    order: str = "seeds"
    """With parts: ``seeds`` runs the trials seed by seed across the parts, ``parts`` runs each
    part's trials (seed by seed) before the next part's."""


@dataclass
class Trial:
    """One run of the sweep: its folder name and every setting given to ``config.resolve``."""

    name: str
    values: dict[str, Any]
    grid: dict[str, Any] = field(default_factory=dict)  # the grid values of this trial

    @property
    def run_dir(self) -> Path:
        return Path(self.values["log_dir"]) / self.name

    @property
    def algo(self) -> str:
        return str(self.values["algo"])

    @property
    def dataset(self) -> str:
        return dataset_label(str(self.values["dataset"]))


# -- spec -> trials -------------------------------------------------------------------------
def load_spec(source: str | Path | dict[str, Any], where: str | None = None) -> SweepSpec:
    """Read and check a spec from a YAML file or a dict (``where``: its name in errors)."""
    from bearl.config import load_yaml
    from bearl.original_flags import ORIGINAL_FLAGS

    where = where or ("spec" if isinstance(source, dict) else str(source))
    data = dict(source) if isinstance(source, dict) else load_yaml(source)
    if "parts" in data:
        return _load_parts(data, where)
    if "order" in data:
        raise ConfigError(f"{where}: 'order' orders the trials of parts; this spec has no parts")
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {_unknown_keys(unknown, SPEC_KEYS)} "
            f"(a spec has {', '.join(sorted(SPEC_KEYS))}; settings go under grid or base)"
        )

    def names(key: str) -> list[str]:
        value = data.get(key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: '{key}' must be a non-empty list")
        return [str(v) for v in value]

    if "seeds" in data and "num_seeds" in data:
        raise ConfigError(f"{where}: give either seeds or num_seeds, not both")
    if "num_seeds" in data:
        n = data["num_seeds"]
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}: num_seeds must be a positive integer")
        seeds = list(range(n))
    else:
        raw = data.get("seeds", [0])
        raw = raw if isinstance(raw, list) else [raw]
        try:
            seeds = [int(s) for s in raw]
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: seeds must be integers") from None
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}: seeds must be a non-empty list without repeats")

    def mapping(key: str) -> dict[str, Any]:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping of setting: value")
        value = {ORIGINAL_FLAGS.get(k, k): v for k, v in value.items()}
        taken = RESERVED & set(value)
        if taken:
            raise ConfigError(
                f"{where}: {key} may not set {', '.join(sorted(taken))} "
                "(use algos, datasets and seeds)"
            )
        return value

    grid, base = mapping("grid"), mapping("base")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}: grid.{k} must be a non-empty list of values")
    log_dir = data.get("log_dir") or base.pop("log_dir", None)
    base.pop("log_dir", None)
    if not log_dir:
        log_dir = f"runs/{Path(where).stem}" if where != "spec" else "runs/sweep"
    return SweepSpec(names("algos"), names("datasets"), seeds, grid, base, str(log_dir), where)


def _unknown_keys(unknown: set[str], keys: set[str]) -> str:
    """Spec keys that are none, each with the closest key (``algo (did you mean algos?)``; a key
    is never taken for a longer one it starts) or, for a setting, where it goes."""
    import difflib

    from bearl.config import setting_names

    settings = setting_names() - RESERVED  # algo, dataset, seed: the spec's algos, datasets...
    parts = []
    for name in sorted(map(str, unknown)):
        close = difflib.get_close_matches(name, sorted(keys), n=1, cutoff=0.6)
        if name in SPEC_KEYS:  # a key of the top of a spec, not of its parts
            parts.append(f"{name} (a key of the spec's top, not of a part)")
        elif name in settings:
            parts.append(f"{name} (a setting: under base or grid)")
        elif close:
            parts.append(f"{name} (did you mean {close[0]}?)")
        else:
            parts.append(name)
    return ", ".join(parts)


def _load_parts(data: dict[str, Any], where: str) -> SweepSpec:
    """A spec with ``parts``: each part completed from the top and read as a spec."""
    parts = data.get("parts")
    if not isinstance(parts, list) or not parts:
        raise ConfigError(f"{where}: 'parts' must be a non-empty list of specs")
    order = data.get("order", "seeds")
    if order not in ORDERS:
        raise ConfigError(f"{where}: order must be one of {', '.join(ORDERS)}, got {order!r}")
    top = {k: v for k, v in data.items() if k not in ("parts", "order")}
    specs = []
    for i, part in enumerate(parts):
        here = f"{where}: parts[{i}]"
        if not isinstance(part, dict):
            raise ConfigError(f"{here} must be a mapping (algos, datasets, seeds, grid, base)")
        unknown = set(part) - PART_KEYS
        if unknown:
            raise ConfigError(
                f"{here}: unknown key(s) {_unknown_keys(unknown, PART_KEYS)} "
                f"(a part has {', '.join(sorted(PART_KEYS))})"
            )
        merged = {k: v for k, v in top.items() if k not in ("grid", "base")}
        if not merged.get("log_dir") and where != "spec":
            merged["log_dir"] = f"runs/{Path(where).stem}"  # as for a spec without parts
        if "seeds" in part or "num_seeds" in part:  # the part's seeds replace the top's
            for key in ("seeds", "num_seeds"):
                merged.pop(key, None)
        merged.update({k: v for k, v in part.items() if k not in ("grid", "base")})
        for key in ("grid", "base"):
            merged[key] = {**(top.get(key) or {}), **(part.get(key) or {})}
        specs.append(load_spec(merged, here))

    def union(key: str) -> list:
        return list(dict.fromkeys(v for s in specs for v in getattr(s, key)))

    return SweepSpec(
        union("algos"), union("datasets"), sorted(union("seeds")), {}, dict(top.get("base") or {}),
        specs[0].log_dir, where, specs, order,
    )  # fmt: skip


def expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of the spec, or of its parts one after another (see :func:`_expand`); two
    parts that make the same trial with other settings are an error."""
    if not spec.parts:
        return _expand(spec)
    trials: dict[str, Trial] = {}
    for part in spec.parts:
        for t in _expand(part):
            if t.name in trials and trials[t.name].values != t.values:
                raise ConfigError(
                    f"{part.source}: its trial {t.name} is also another part's, with other settings"
                )
            trials.setdefault(t.name, t)
    if spec.order == "parts":
        return list(trials.values())
    return sorted(trials.values(), key=lambda t: spec.seeds.index(t.values["seed"]))


def _expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of the spec (duplicates dropped), seed by seed: every dataset, algorithm and
    grid point with the first seed, then with the second, ... so a sweep stopped halfway has
    the whole table at fewer seeds rather than part of it at all seeds.

    Each trial's settings are checked with ``config.resolve``: a bad value fails here, before
    anything runs."""
    from bearl.algos import ALGORITHMS, algorithm_class
    from bearl.config import TrainConfig, resolve, unknown_settings

    train_names = {f.name for f in fields(TrainConfig)}
    anywhere = train_names | {
        f.name for a in ALGORITHMS for f in fields(algorithm_class(a).config_cls)
    }
    for part, values in (("grid", spec.grid), ("base", spec.base)):
        unknown = set(values) - anywhere
        if unknown:
            raise unknown_settings(unknown, f"{spec.source}: {part}", anywhere)
    log_dir = Path(spec.log_dir).expanduser()  # as written: params.json holds no machine path
    trials: dict[str, Trial] = {}
    for dataset, algo_name in itertools.product(spec.datasets, spec.algos):
        algo = algorithm_class(algo_name).name
        own = train_names | {f.name for f in fields(algorithm_class(algo).config_cls)}
        grid = {k: v for k, v in sorted(spec.grid.items()) if k in own}
        base = {k: v for k, v in spec.base.items() if k in own}
        for combo in itertools.product(*grid.values()):
            point = dict(zip(grid, combo))
            for seed in spec.seeds:
                name = "_".join(
                    [algo, dataset_slug(dataset)]
                    + [f"{k}={slug(v)}" for k, v in point.items()]
                    + [f"seed{seed}"]
                )
                values = {
                    "progress": False,
                    **base,
                    **point,
                    "algo": algo,
                    "dataset": _absolute_if_file(dataset),
                    "seed": seed,
                    "log_dir": str(log_dir),
                    "run_name": name,
                }
                if name in trials:  # a grid setting this algorithm lacks: the same trial
                    if trials[name].values != values:
                        raise ConfigError(
                            f"two trials would share the folder {name}: give datasets "
                            "distinct names"
                        )
                    continue
                resolve(dict(values))  # fail early on a bad value
                trials[name] = Trial(name, values, point)
    for k in spec.grid:
        if not any(k in t.values for t in trials.values()):
            raise ConfigError(f"grid: none of {', '.join(spec.algos)} has the setting {k}")
    return sorted(trials.values(), key=lambda t: spec.seeds.index(t.values["seed"]))


def _absolute_if_file(dataset: str) -> str:
    p = Path(dataset).expanduser()
    return str(p.absolute()) if p.exists() else dataset


# -- the state of a trial on disk --------------------------------------------------------------
def trial_status(trial: Trial) -> tuple[str, str]:
    """``(status, detail)``: ``done`` (result.json for at least the trial's steps), ``resume``
    (a checkpoint), ``new``, or ``conflict`` (the folder holds a run with other settings)."""
    from bearl.config import default_settings, resolve, to_dict

    d = trial.run_dir
    cfg, algo_cfg = resolve(dict(trial.values))
    saved = read_json(d / "params.json")
    if saved is not None:
        diff = _differences(
            {**to_dict(algo_cfg), **to_dict(cfg)},
            {**(saved.get("algo") or {}), **(saved.get("train") or {})},
            default_settings(trial.algo),
        )
        if diff or saved.get("algorithm") != trial.algo:
            what = ", ".join(diff) or "algorithm"
            return "conflict", f"its folder holds a run with other settings ({what})"
    result = read_json(d / "result.json")
    if result is not None and int(result.get("steps") or 0) >= cfg.steps:
        return "done", _score_text(result.get("best_score"))
    if (d / "checkpoint.pt").exists():
        return "resume", "from its checkpoint"
    return "new", ""


def _as_fp32(trial: Trial) -> Trial:
    """The trial with ``precision: fp32`` in place of bf16 (the reference precision)."""
    return Trial(trial.name, {**trial.values, "precision": "fp32"}, dict(trial.grid))


def _as_on_disk(trial: Trial) -> tuple[Trial, bool]:
    """A bf16 trial whose folder holds an fp32 run with its other settings the same (run with
    ``fp32_fallback`` on a CPU without native bf16) is that fp32 run: the trial with fp32, and
    True. fp32 is the reference that bf16 approximates (docs/performance.md, the parity table),
    so every sweep of the spec counts that run as the trial's and resumes it in fp32. The
    reverse, a bf16 run in an fp32 trial's folder, stays a conflict."""
    from bearl.config import resolve

    saved = read_json(trial.run_dir / "params.json")
    if saved is None or (saved.get("train") or {}).get("precision") != "fp32":
        return trial, False
    if resolve(dict(trial.values))[0].precision != "bf16":
        return trial, False
    fp32 = _as_fp32(trial)
    return (fp32, True) if trial_status(fp32)[0] != "conflict" else (trial, False)


def _deferred(trial: Trial) -> str:
    """Why the trial waits for another machine (empty: it does not): a bf16 trial where the
    device converts bf16 matmuls instead of computing them."""
    from bearl.config import resolve
    from bearl.perf import native_bf16

    cfg, _ = resolve(dict(trial.values))
    if cfg.precision != "bf16" or native_bf16(cfg.device):
        return ""
    return f"this {cfg.device} has no native bf16 matmuls (no avx512_bf16 / amx_bf16 flag)"


def _differences(
    now: dict[str, Any], saved: dict[str, Any], defaults: dict[str, Any] | None = None
) -> list[str]:
    """Settings whose values differ. A setting the saved run does not have (added by a newer
    bearl) counts only when the trial sets it away from its default: at the default, the new
    bearl does what the old one did."""
    defaults = defaults or {}
    keys = (set(now) | set(saved)) - NOT_COMPARED
    return sorted(
        k
        for k in keys
        if json.dumps(now.get(k)) != json.dumps(saved.get(k))
        and not (k not in saved and k in defaults and json.dumps(now[k]) == json.dumps(defaults[k]))
    )


def run_trial(values: dict[str, Any]) -> dict[str, Any]:
    """Run one trial (in a Ray worker or in this process) with one torch thread: train it, or
    resume it from its checkpoint, or skip it when finished. Returns ``{"name", "status"
    (done, skipped, failed, conflict, elsewhere), "result", "error"}``; it does not raise for a
    failed training (the sweep goes on). ``elsewhere``: another process (e.g. the same sweep
    started twice) is training in the trial's folder, so this one leaves it to that process."""
    import torch

    trial = Trial(str(values["run_name"]), dict(values))
    out: dict[str, Any] = {"name": trial.name, "status": "", "result": None, "error": None}
    threads = torch.get_num_threads()
    try:
        status, detail = trial_status(trial)
        if status == "done":
            return {**out, "status": "skipped", "result": read_json(trial.run_dir / "result.json")}
        if status == "conflict":
            return {**out, "status": "conflict", "error": detail}
        from bearl.config import resolve
        from bearl.training.loop import train
        from bearl.training.run_folder import RunFolderBusy

        cfg, algo_cfg = resolve(dict(values))
        torch.set_num_threads(1)
        try:
            if status == "resume":
                result = train(cfg, resume=trial.run_dir)
            else:
                result = train(cfg, algo_cfg)
        except RunFolderBusy:
            return {**out, "status": "elsewhere"}
        return {**out, "status": "done", "result": result}
    except Exception as e:  # noqa: BLE001 - one failed trial must not stop the sweep
        return {**out, "status": "failed", "error": f"{type(e).__name__}: {e}"}
    finally:
        torch.set_num_threads(threads)


def run_trial_in(folder: str, values: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_trial` from ``folder`` (the sweep's working folder): a Ray worker may start
    elsewhere, and the trials' relative log_dir and dataset paths are relative to the sweep's."""
    import os

    if os.path.isdir(folder):
        os.chdir(folder)
    else:  # a worker on another machine: the folder's path as it is here
        values = {**values, "log_dir": os.path.join(folder, values["log_dir"])}
    return run_trial(values)


# -- progress ----------------------------------------------------------------------------------
class SweepProgress:
    """Counts of done / running / pending / failed trials and the best scores so far (from the
    trials' result.json, or the last BestScore of a running trial's progress.csv)."""

    def __init__(self, trials: list[Trial], out: TextIO) -> None:
        self.trials = {t.name: t for t in trials}
        self.state = {t.name: "pending" for t in trials}
        self.best: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.out = out
        self.t0 = time.time()

    def start(self, trial: Trial) -> None:
        self.state[trial.name] = "running"

    def finish(self, trial: Trial, outcome: dict[str, Any]) -> None:
        status = outcome.get("status", "failed")
        self.state[trial.name] = "done" if status in ("done", "skipped") else status
        if outcome.get("error"):
            self.errors[trial.name] = str(outcome["error"])
            self.print(f"{trial.name}: {status}: {outcome['error']}")
        elif status == "elsewhere":
            self.print(f"{trial.name}: another process is training it; left to that one")
        score = (outcome.get("result") or {}).get("best_score")
        if isinstance(score, int | float):
            self.best[trial.name] = float(score)

    def recheck_elsewhere(self) -> None:
        """Trials left to another process that it has finished since count as done."""
        for name, state in list(self.state.items()):
            trial = self.trials[name]
            if state == "elsewhere" and trial_status(trial)[0] == "done":
                result = read_json(trial.run_dir / "result.json")
                self.finish(trial, {"status": "done", "result": result})
                self.print(f"{name}: finished by another process")

    def _running_best(self, trial: Trial) -> float | None:
        from bearl.runs.plot import read_progress

        try:
            col = read_progress(trial.run_dir).get("BestScore")
        except BearlError:
            return None
        return float(col[-1]) if col is not None and np.isfinite(col[-1]) else None

    def counts(self) -> dict[str, int]:
        states = ("done", "running", "pending", "failed", "conflict", "elsewhere", "deferred")
        out = dict.fromkeys(states, 0)
        for s in self.state.values():
            out[s] = out.get(s, 0) + 1
        return out

    def summary(self) -> str:
        c = self.counts()
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.time() - self.t0))
        head = (
            f"sweep [{elapsed}] {c['done']}/{len(self.trials)} done, {c['running']} running, "
            f"{c['pending']} pending, {c['failed']} failed"
            + (f", {c['conflict']} conflicts" if c["conflict"] else "")
            + (f", {c['elsewhere']} training in another process" if c["elsewhere"] else "")
            + (f", {c['deferred']} deferred (bf16)" if c["deferred"] else "")
        )
        best: dict[str, tuple[float, str]] = {}
        for name, t in self.trials.items():
            score = self.best.get(name)
            if score is None and self.state[name] == "running":
                score = self._running_best(t)
            group = f"{t.algo} {t.dataset}"
            if score is not None and (group not in best or score > best[group][0]):
                best[group] = (score, name)
        lines = [head] + [
            f"  best so far  {g:<32} {s:9.2f}  ({n})" for g, (s, n) in sorted(best.items())
        ]
        return "\n".join(lines)

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


# -- running -----------------------------------------------------------------------------------
def run_sweep(
    spec: SweepSpec | str | Path | dict[str, Any],
    address: str | None = None,
    max_concurrent: int | None = None,
    local: bool = False,
    dry_run: bool = False,
    out: TextIO | None = None,
    converted_bf16: bool = False,
    fp32_fallback: bool = False,
) -> dict[str, Any]:
    """Run every unfinished trial of ``spec``; returns ``{"trials", "counts", "errors"}``.

    Args:
        address: a Ray cluster to connect to (``auto``, ``ray://host:10001``, ...); None starts
            a local Ray instance.
        max_concurrent: trials in flight at once (default: the cluster's CPUs; one CPU each).
        local: run the trials one after another without Ray, each in a fresh process (two
            such sweeps of one spec share the trials through the run-folder locks).
        dry_run: only print the trials and their state.
        converted_bf16: also run the bf16 trials where the device has no native bf16 matmuls
            (a CPU without ``avx512_bf16`` / ``amx_bf16``). By default they are deferred: there
            torch converts every bf16 matmul to fp32 and back, several times slower than fp32
            itself (docs/performance.md), so the sweep leaves them, with their checkpoints, for
            a machine that has it, and runs the rest.
        fp32_fallback: where bf16 trials would be deferred, run those not started yet in fp32
            instead (the reference precision, faster there than converted bf16); their folders
            record fp32, and any later sweep of the spec counts such a run as the trial's and
            resumes it in fp32. Started bf16 trials stay deferred: a run keeps its precision.
    """
    out = out or sys.stdout
    if converted_bf16 and fp32_fallback:
        raise ConfigError("--converted-bf16 and --fp32-fallback: choose one")
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    trials, fp32_runs = [], set()
    for t in expand(spec):
        t, fp32 = _as_on_disk(t)
        trials.append(t)
        if fp32:
            fp32_runs.add(t.name)
    status = {t.name: trial_status(t) for t in trials}
    if not converted_bf16:
        for i, t in enumerate(trials):
            why = _deferred(t)
            if not why or status[t.name][0] not in ("new", "resume"):
                continue
            if fp32_fallback and status[t.name][0] == "new":
                trials[i] = _as_fp32(t)
                fp32_runs.add(t.name)
                continue
            kept = "; its checkpoint is kept" if status[t.name][0] == "resume" else ""
            status[t.name] = ("deferred", why + kept)
    for name in fp32_runs:
        s, detail = status[name]
        status[name] = (s, "; ".join(x for x in ("fp32 in place of bf16", detail) if x))
    if dry_run:
        _print_plan(trials, status, spec, out)
        return {"trials": [t.name for t in trials], "counts": _plan_counts(status), "errors": {}}
    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError("--max-concurrent must be >= 1")
    progress = SweepProgress(trials, out)
    todo = []
    for t in trials:
        s, detail = status[t.name]
        if s == "done":
            progress.finish(
                t, {"status": "skipped", "result": read_json(t.run_dir / "result.json")}
            )
        elif s == "conflict":
            progress.finish(t, {"status": "conflict", "error": detail})
        elif s == "deferred":
            progress.finish(t, {"status": "deferred"})
        else:
            todo.append(t)
    deferred = [t.name for t in trials if status[t.name][0] == "deferred"]
    if deferred:
        progress.print(
            f"sweep: {len(deferred)} bf16 trials deferred: {status[deferred[0]][1]}; "
            "run them on a machine with native bf16, or pass --converted-bf16 to run them here "
            "(or --fp32-fallback to run those not started in fp32)"
        )
    progress.print(
        f"sweep: {len(trials)} trials in {spec.log_dir}: "
        f"{len(trials) - len(todo) - len(deferred)} finished or in conflict, "
        + (f"{len(deferred)} deferred, " if deferred else "")
        + f"{len(todo)} to run"
        + ("" if local else (f" on Ray ({address})" if address else " on a local Ray instance"))
    )
    if local:
        _run_local(todo, progress)
    else:
        _run_ray(todo, progress, address, max_concurrent)
    progress.recheck_elsewhere()
    progress.print(progress.summary())
    return {
        "trials": [t.name for t in trials],
        "counts": progress.counts(),
        "errors": progress.errors,
    }


def _run_local(todo: list[Trial], progress: SweepProgress) -> None:
    for t in todo:
        progress.start(t)
        progress.print(progress.summary())
        progress.print(f"running {t.name}")
        try:
            outcome = run_in_subprocess(t.values)
        except KeyboardInterrupt:
            progress.print("sweep interrupted: run the same command again to resume it")
            raise
        progress.finish(t, outcome)


TRIAL_EXIT_GRACE_S = 30.0  # a trial that sent its outcome, given this long to exit by itself


def run_in_subprocess(
    values: dict[str, Any], fn: Callable[[dict[str, Any]], dict[str, Any]] = run_trial
) -> dict[str, Any]:
    """``fn(values)`` (a trial) in a fresh process, as Ray runs it in a worker: each trial starts
    with a clean interpreter (its ``MemoryMiB`` is its own, not what earlier trials left in the
    allocator) and a crash in native code or a kill ends only that trial.

    The trial never outlives this process: SIGTERM or SIGHUP here (``kill``, a closed terminal)
    raises KeyboardInterrupt like Ctrl-C, and on the way out the trial is terminated; if this
    process dies without a chance to clean up (SIGKILL), the trial notices and exits by itself.
    Its last checkpoint is kept either way (checkpoints are written atomically)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    name = str(values.get("run_name"))
    proc = ctx.Process(target=_trial_process, args=(fn, values, send), name=f"bearl-{name}")
    with _signals_interrupt():
        proc.start()
        send.close()  # only the trial holds the sending end now: its death means EOF here
        try:
            outcome = receive.recv()
        except EOFError:
            return {
                "name": name,
                "status": "failed",
                "result": None,
                "error": "the trial's process ended abruptly (killed, or a crash in native "
                "code); its last checkpoint is kept",
            }
        else:
            # the trial has sent its outcome and is exiting: let it run its exit handlers
            # (terminated there, it would leave its semaphores to the resource tracker, which
            # warns of "leaked semaphore objects" when the sweep ends)
            proc.join(TRIAL_EXIT_GRACE_S)
            return outcome
        finally:
            receive.close()
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
            if proc.is_alive():
                proc.kill()
            proc.join()


def _trial_process(
    fn: Callable[[dict[str, Any]], dict[str, Any]], values: dict[str, Any], send: Any
) -> None:
    """Body of a trial's process: run ``fn`` and send its outcome back. Ctrl-C is left to the
    parent (which then terminates this process), and a daemon thread waits for the parent's
    death and ends this process with it, so no trial runs on unwatched."""
    import multiprocessing
    import os
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    parent = multiprocessing.parent_process()
    if parent is not None:

        def exit_with_parent() -> None:
            parent.join()
            os._exit(1)

        threading.Thread(target=exit_with_parent, daemon=True).start()
    send.send(fn(values))
    send.close()


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt while inside (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {sig: signal.signal(sig, interrupt) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():  # None: one set outside Python (by Ray)
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _run_ray(
    todo: list[Trial], progress: SweepProgress, address: str | None, max_concurrent: int | None
) -> None:
    try:
        import ray
    except ImportError:
        raise BearlError(RAY_MISSING) from None
    if not todo:
        return
    started = not ray.is_initialized()
    running: dict[Any, Trial] = {}
    try:
        # SIGTERM and SIGHUP stop the sweep as Ctrl-C does, as with --local. Set again once
        # Ray has started: ray.init puts its own handler in place, which prints a native crash
        # dump ("*** SIGTERM received at ...") and exits with status 1.
        with _signals_interrupt():
            if started:
                local_only = {} if address else {"include_dashboard": False}
                ray.init(address=address, log_to_driver=False, **local_only)
            with _signals_interrupt():
                _ray_loop(ray, todo, running, progress, max_concurrent)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)
        if running:  # their workers end (checkpoints are written atomically) before Ray does
            ray.wait(list(running), num_returns=len(running), timeout=10)
        progress.print("sweep interrupted: run the same command again to resume it")
        raise
    finally:
        if started and ray.is_initialized():
            ray.shutdown()


def _ray_loop(
    ray: Any,
    todo: list[Trial],
    running: dict[Any, Trial],
    progress: SweepProgress,
    max_concurrent: int | None,
) -> None:
    """Run ``todo`` as Ray tasks, ``max_concurrent`` at once; ``running``: the tasks in flight
    (object ref -> trial), for the caller to cancel on an interrupt."""
    limit = max_concurrent or max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote: Callable[..., Any] = ray.remote(num_cpus=1, max_retries=0)(run_trial_in)
    pending = list(todo)
    here = str(Path.cwd())

    def fill() -> None:
        while pending and len(running) < limit:
            t = pending.pop(0)
            running[remote.remote(here, t.values)] = t
            progress.start(t)

    fill()
    progress.print(progress.summary())
    last = time.time()
    while running:
        ready, _ = ray.wait(list(running), num_returns=1, timeout=REPORT_EVERY)
        for ref in ready:
            t = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a crashed worker fails one trial
                outcome = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            progress.finish(t, outcome)
        fill()
        if running and (ready or time.time() - last >= REPORT_EVERY):
            progress.print(progress.summary())
            last = time.time()


def _plan_counts(status: dict[str, tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s, _ in status.values():
        counts[s] = counts.get(s, 0) + 1
    return counts


# -- what is left, in core-hours ------------------------------------------------------------------
def _rate_key(trial: Trial) -> tuple[str, str, str]:
    """What sets a trial's pace: its algorithm, precision and behaviour model."""
    from bearl.config import resolve

    cfg, algo_cfg = resolve(dict(trial.values))
    return trial.algo, cfg.precision, str(getattr(algo_cfg, "behavior_model", "joint"))


def _saved_rate_key(run_dir: Path) -> tuple[str, str, str] | None:
    """``_rate_key`` of a finished run, from its params.json (None without one)."""
    saved = read_json(run_dir / "params.json")
    if not saved or not saved.get("algorithm"):
        return None
    algo, train = saved.get("algo") or {}, saved.get("train") or {}
    precision = str(train.get("precision") or "fp32")
    return str(saved["algorithm"]), precision, str(algo.get("behavior_model") or "joint")


RECENT_ROWS = 4  # a trial's own pace: over its last four progress rows' intervals


def _own_pace(trial: Trial) -> tuple[int, float] | None:
    """(step of the trial's last progress row, its recent pace in steps per wall second), or
    None before its first row. The pace is the median of those of its last ``RECENT_ROWS``
    intervals between rows (the first from its start): what the trial does now, on
    this machine with this code, not the mean over sessions on other machines, the denormal-
    slowed updates of bearl before 2026-12-06 (docs/performance.md), or a pause (SIGSTOP for a
    benchmark: the wall clock runs on) in one of those intervals."""
    from bearl.training.curve import read_progress

    try:
        rows = read_progress(trial.run_dir)
    except BearlError:
        return None
    steps, walls = rows["Step"], rows["WallTime"]
    step, wall = int(steps[-1]), float(walls[-1])
    if step <= 0 or wall <= 0:
        return None
    ends = [(0, 0.0), *zip(steps.tolist(), walls.tolist())][-RECENT_ROWS - 1 :]
    paces = [(b - a) / (y - x) for (a, x), (b, y) in zip(ends, ends[1:]) if b > a and y > x]
    return step, float(np.median(paces)) if paces else step / wall


def _runs(n: int) -> str:
    return f"{n} run{'s' * (n > 1)}"


def _same_cpu(a: dict | None, b: dict) -> bool:
    return bool(a) and all(a.get(k) == b.get(k) for k in ("cpu", "family", "model"))


def estimate_left(
    trials: list[Trial], status: dict[str, tuple[str, str]]
) -> dict[str, tuple[float, str] | None]:
    """Core-hours each unfinished trial has left (one core, evaluations included), and what
    the estimate rests on; None where nothing measured applies.

    The pace is the trial's own (the median over its last progress intervals) once it
    has run, else the mean pace of the finished runs of the same algorithm, precision and
    behaviour model in the spec's log folders (its trials, and other specs' runs there, e.g.
    an earlier stage of a study), those on this machine's CPU model when there are any
    (``result.json``'s ``machine``), else that of such trials in progress. A core-hour buys
    other numbers of steps on other CPUs (docs/performance.md), so an estimate from another
    CPU says so.
    """
    from bearl.config import resolve
    from bearl.perf import machine

    here = machine()
    finished: dict[tuple[str, str, str], list[tuple[float, bool]]] = {}
    of_spec = {t.run_dir: t for t in trials}
    keys = {t.name: _rate_key(t) for t in trials}  # one resolve per trial
    for folder in sorted({t.run_dir.parent for t in trials}):
        for run in sorted(folder.glob("*/result.json")):
            t = of_spec.get(run.parent)
            if t is not None and status[t.name][0] != "done":
                continue  # a result.json short of the trial's steps (it is being extended)
            result = read_json(run)
            key = keys[t.name] if t is not None else _saved_rate_key(run.parent)
            if key and result and float(result.get("wall_time") or 0) > 0 and result.get("steps"):
                pace = float(result["steps"]) / float(result["wall_time"])
                same = _same_cpu(result.get("machine"), here)
                finished.setdefault(key, []).append((pace, same))
    unfinished = [t for t in trials if status[t.name][0] not in ("done", "conflict")]
    own_paces = {t.name: _own_pace(t) for t in unfinished}
    running: dict[tuple[str, str, str], list[float]] = {}
    for t in unfinished:
        if own := own_paces[t.name]:
            running.setdefault(keys[t.name], []).append(own[1])
    out: dict[str, tuple[float, str] | None] = {}
    for t in unfinished:
        steps, key, own = resolve(dict(t.values))[0].steps, keys[t.name], own_paces[t.name]
        step = own[0] if own else 0
        if own:
            pace, basis = own[1], "its own recent pace"
        elif key in finished:
            mine = [p for p, same in finished[key] if same]
            pool = mine or [p for p, _ in finished[key]]
            where = "on this CPU" if mine else "on other CPUs"
            pace, basis = float(np.mean(pool)), f"{_runs(len(pool))} finished {where}"
        elif key in running:
            pace, basis = float(np.mean(running[key])), f"{_runs(len(running[key]))} in progress"
        else:
            out[t.name] = None
            continue
        out[t.name] = (max(steps - step, 0) / pace / 3600, f"{basis}, {pace:.1f} steps/s")
    return out


def _print_plan(
    trials: list[Trial], status: dict[str, tuple[str, str]], spec: SweepSpec, out: TextIO
) -> None:
    print(f"{len(trials)} trials in {spec.log_dir}:", file=out)
    width = max(len(t.name) for t in trials)
    left = estimate_left(trials, status)
    for t in trials:
        s, detail = status[t.name]
        if t.name in left:
            est = left[t.name]
            cost = f"~{est[0]:.2f} core-h left ({est[1]})" if est else "no pace measured yet"
            detail = f"{detail}; {cost}" if detail else cost
        print(f"  {s:<8} {t.name:<{width}}  {detail}".rstrip(), file=out)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(_plan_counts(status).items()))
    print(f"({counts}; common settings: {json.dumps(spec.base, default=str)})", file=out)
    if left:
        known = [e[0] for e in left.values() if e]
        unknown = len(left) - len(known)
        if not known:
            trials_text = f"{unknown} unfinished trial{'s' * (unknown > 1)}"
            print(f"left: {trials_text}, no pace measured yet for any", file=out)
            return
        print(
            f"left: ~{sum(known):.1f} core-hours in {len(known)} unfinished trials at their "
            "measured pace (one core each, evaluations included)"
            + (f"; {unknown} with no pace measured yet" if unknown else ""),
            file=out,
        )


def _score_text(score: Any) -> str:
    return f"best {score:.2f}" if isinstance(score, int | float) else ""
