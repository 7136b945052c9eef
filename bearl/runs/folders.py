"""Run folders on disk: finding them, what each one ran, grouping them (plot, report, sweep).

A run folder is what ``bearl train`` writes: ``progress.csv``, ``variant.json`` / ``params.json``
(keys ``algorithm``, ``train{...}``, ``algo{...}``, ...), ``result.json`` when finished.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bearl.errors import BearlError
from bearl.files import as_int, dataset_label, read_json, slug  # noqa: F401 (slug re-exported)

# Settings that do not change what a run computes; runs differing only in these are seeds of
# one experiment.
NOT_EXPERIMENT_SETTINGS = frozenset(
    {"seed", "run_name", "log_dir", "progress", "threads", "device", "tensorboard", "wandb"}
)


def find_runs(
    paths: Iterable[str | Path], markers: Sequence[str] = ("progress.csv",)
) -> list[Path]:
    """Run folders among ``paths``: a folder holding one of ``markers`` is a run, otherwise its
    direct subfolders holding one are (sorted by name). Raises BearlError for a path that does
    not exist or holds no run; duplicates are dropped."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise BearlError(f"{p}: no such folder")
        if not p.is_dir():
            raise BearlError(f"{p}: not a folder (give run folders or folders of runs)")
        if _is_run(p, markers):
            found.append(p)
            continue
        children = [c for c in sorted(p.iterdir()) if c.is_dir() and _is_run(c, markers)]
        if not children:
            raise BearlError(
                f"{p}: no bearl runs here (no {' or '.join(markers)} in it or in its subfolders)"
            )
        found.extend(children)
    seen: set[Path] = set()
    unique = []
    for r in found:
        if r.resolve() not in seen:
            seen.add(r.resolve())
            unique.append(r)
    return unique


def _is_run(path: Path, markers: Sequence[str]) -> bool:
    return any((path / m).is_file() for m in markers)


@dataclass
class RunInfo:
    """What a run folder ran: algorithm, dataset label, seed, and every setting (flat)."""

    path: Path
    algorithm: str
    dataset: str
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def setting(self, name: str) -> Any:
        return self.settings.get(name)


def run_info(run_dir: str | Path) -> RunInfo:
    """Read ``variant.json`` (or ``params.json``), else ``result.json``; else the folder name
    is the algorithm and the dataset is ``?``."""
    run_dir = Path(run_dir)
    for name in ("variant.json", "params.json"):
        v = read_json(run_dir / name)
        if isinstance(v, dict) and "train" in v:
            train, algo = v.get("train") or {}, v.get("algo") or {}
            return RunInfo(
                run_dir,
                str(v.get("algorithm") or train.get("algo") or "?"),
                dataset_label(str(train.get("dataset", "?"))),
                as_int(v.get("seed", train.get("seed"))),
                {"precision": "fp32", **algo, **train},  # (runs before --precision: fp32)
            )
    r = read_json(run_dir / "result.json")
    if isinstance(r, dict) and "algo" in r:
        return RunInfo(
            run_dir,
            str(r["algo"]),
            dataset_label(str(r.get("dataset", "?"))),
            as_int(r.get("seed")),
        )
    return RunInfo(run_dir, run_dir.name, "?")


def cost_settings(info: RunInfo) -> str:
    """The settings that make a run cheaper (docs/performance.md): ``fp32``, ``bf16``, and
    ``+ pretrained`` when the behaviour VAE was fitted once and frozen (``+ prefit``: fitted
    once, then on at every step). Runs from before these settings existed are fp32 with the
    joint VAE."""
    precision = info.setting("precision") or "fp32"
    behavior = info.setting("behavior_model") or "joint"
    return precision if behavior == "joint" else f"{precision} + {behavior}"


def group_label(info: RunInfo, by: Sequence[str] = ()) -> str:
    """``ALGO / dataset`` plus ``(field=value, ...)`` for the ``by`` settings."""
    return f"{info.algorithm} / {info.dataset}{settings_suffix(info, by)}"


def settings_suffix(info: RunInfo, by: Sequence[str] = ()) -> str:
    """`` (field=value, ...)`` for the ``by`` settings of a run, or nothing."""
    if not by:
        return ""
    return " (" + ", ".join(f"{k}={shown_setting(info, k)}" for k in by) + ")"


def group_runs(runs: Iterable[RunInfo], by: Sequence[str] = ()) -> dict[str, list[RunInfo]]:
    """Runs grouped by algorithm, dataset and the ``by`` settings, labels sorted."""
    groups: dict[str, list[RunInfo]] = {}
    for info in runs:
        groups.setdefault(group_label(info, by), []).append(info)
    return dict(sorted(groups.items()))


def differing_settings(runs: Sequence[RunInfo]) -> list[str]:
    """Settings (other than seed and bookkeeping) whose values differ among ``runs``. A run
    that lacks a setting (saved by an older bearl) counts as having its default."""
    from bearl.config import default_settings

    keys = sorted({k for r in runs for k in r.settings} - NOT_EXPERIMENT_SETTINGS)
    defaults = {algo: default_settings(algo) for algo in {r.algorithm for r in runs}}

    def value(r: RunInfo, k: str) -> str:
        return json.dumps(r.settings[k] if k in r.settings else defaults[r.algorithm].get(k))

    return [k for k in keys if len({value(r, k) for r in runs}) > 1]


def warn_mixed_groups(groups: dict[str, list[RunInfo]], by: Sequence[str] = ()) -> None:
    """Print a note for each group whose runs differ in more than the seed."""
    for label, runs in groups.items():
        diff = [k for k in differing_settings(runs) if k not in by and k != "steps"]
        if diff:
            print(
                f"bearl: note: the runs of '{label}' differ in {', '.join(diff)}; "
                f"split them with {' '.join(f'--by {k}' for k in diff)}",
                file=sys.stderr,
            )


def shown_setting(info: RunInfo, name: str) -> str:
    """A run's setting for a label or a table cell: its value; for a run saved before the
    setting existed, its algorithm's default (what it ran with, as ``differing_settings``
    counts it); ``-`` where the algorithm has no such setting (``behavior_model`` of TD3)."""
    if name in info.settings:
        return show_value(info.settings[name])
    from bearl.config import default_settings

    defaults = default_settings(info.algorithm)
    return show_value(defaults[name]) if name in defaults else "-"


def show_value(value: Any) -> str:
    """A setting's value for a label (lists joined with commas)."""
    if isinstance(value, list | tuple):
        return ",".join(str(x) for x in value)
    return str(value)


OPE_FILE = "ope.json"  # written by `bearl ope` (bearl/ope/estimate.py)


def diverged_steps(run_dir: str | Path) -> list[int]:
    """The steps whose FQE fit diverged in the run's ope.json (none without one)."""
    data = read_json(Path(run_dir) / OPE_FILE)
    entries = data.get("snapshots", []) if isinstance(data, dict) else []
    return [int(e["step"]) for e in entries if e.get("diverged") and "step" in e]


def with_ope(run_dir: str | Path, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``columns`` (a run's progress.csv) with the run's ope.json entries as columns of their
    own (``fqe``, ``fqe_low``, ``fqe_high``, ``critic`` and their ``_return``s), at the rows of
    their steps (NaN elsewhere), so that ``--metric fqe`` reads them as any other column. A
    diverged fit's FQE values are left out (NaN): they lie outside what the rewards allow and
    estimate nothing."""
    data = read_json(Path(run_dir) / OPE_FILE)
    if not isinstance(data, dict) or "Step" not in columns:
        return columns
    steps = columns["Step"]
    out = dict(columns)
    for entry in data.get("snapshots", []):
        rows = np.flatnonzero(steps == entry.get("step"))
        diverged = bool(entry.get("diverged", False))
        for key, value in entry.items():
            if key == "step" or not isinstance(value, int | float):
                continue
            if diverged and key.startswith("fqe"):
                continue
            col = out.setdefault(key, np.full(len(steps), np.nan))
            col[rows] = float(value)
    return out
