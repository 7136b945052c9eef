"""``bearl ope``: FQE and the run's own critic at every chosen snapshot of a run, from data alone.

For each run: its dataset (the one it trained on, checked by content, or another given with
``--dataset``, e.g. held-out episodes of the same environment), its snapshots, one batched FQE
fit of all of them (fqe.py), and the run's own critic's Q(s0, pi(s0)) at the same episode
starts (the naive estimate). Written to the run folder as ``ope.json``; nothing else in the run
folder is touched but ``ope_fit.pt`` and ``ope_fit_table.pt``, the fit so far, kept while it
runs: an interrupted ``bearl ope`` goes on from them.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bearl.data.dataset import Dataset
from bearl.errors import BearlError, one_line
from bearl.files import read_json, write_atomic
from bearl.policy.load import load_policy
from bearl.runs.folders import OPE_FILE
from bearl.training.checkpoint import snapshot_path, snapshot_steps
from bearl.training.fqe import FQEConfig, fit_fqe, normalized_value, table_path, value_range

FORMAT = 1


class OPEError(BearlError):
    """Bad input to ``bearl ope`` (a run, a snapshot or a dataset that cannot be used)."""


def choose_snapshots(run: Path, which: str) -> list[int]:
    """Snapshot steps for ``which``: ``all``, ``final``, ``best`` (the step of best.pt, chosen
    with the simulator: for comparison only) or comma-separated steps."""
    steps = snapshot_steps(run)
    if not steps:
        raise OPEError(
            f"{run}: no snapshots (snapshots/step_N.pt); train with a bearl that keeps them "
            "(--snapshot_every, on by default) or rerun the run"
        )
    if which == "all":
        return steps
    if which == "final":
        return steps[-1:]
    if which == "best":
        best = (read_json(run / "result.json") or {}).get("best_step")
        if best is None or int(best) not in steps:
            raise OPEError(f"{run}: no snapshot at the best evaluation's step ({best})")
        return [int(best)]
    chosen = []
    for part in which.split(","):
        if not part.strip().isdigit():
            raise OPEError(f"--snapshots {which}: expected all, best, final or steps (2000,4000)")
        step = int(part)
        if step not in steps:
            raise OPEError(f"{run}: no snapshot of step {step} (it has {steps[0]}..{steps[-1]})")
        chosen.append(step)
    return chosen


def run_dataset(run: Path, dataset: str | Dataset | None) -> Dataset:
    """The dataset to evaluate ``run`` on: ``dataset`` if given, else the one it trained on,
    which must still be the same transitions (checked against params.json's digest)."""
    from bearl.data.load import load_dataset

    params = read_json(run / "params.json")
    if params is None:
        raise OPEError(f"{run}: no params.json; not a bearl run folder")
    saved = params.get("dataset") or {}
    env = params.get("env_name") or saved.get("env_name")
    if dataset is None:
        source = (params.get("train") or {}).get("dataset") or saved.get("source")
        try:
            data = load_dataset(source)
        except BearlError as e:
            raise OPEError(
                f"{run}: its dataset {source} cannot be loaded ({one_line(e)}); make it again "
                "or give the data with --dataset"
            ) from None
        digest = saved.get("sha1")
        if digest and data.digest() != digest:
            raise OPEError(
                f"{run}: its dataset {source} now holds other transitions than the run trained "
                "on (params.json's dataset.sha1 differs); give the run's data with --dataset"
            )
    else:
        data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    where = data.info.source
    if env and data.info.env_name and _family(data.info.env_name) != _family(env):
        raise OPEError(
            f"{where}: a dataset of {data.info.env_name}, but {run} trained in {env}; give "
            "data of the run's environment"
        )
    if data.num_episodes < 2:
        raise OPEError(
            f"{where}: {data.num_episodes} episode; FQE's estimate and interval need episode "
            "starts (terminals / timeouts marking where episodes end)"
        )
    return data


def ope_run(
    run: str | Path,
    snapshots: str = "all",
    cfg: FQEConfig | None = None,
    dataset: str | Dataset | None = None,
    progress: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """FQE and the run's critic at the chosen snapshots of ``run``; writes ``run/ope.json``
    (merged with the entries of earlier calls at other steps) and returns its content."""
    run = Path(run)
    cfg = cfg or FQEConfig()
    steps = choose_snapshots(run, snapshots)
    data = run_dataset(run, dataset)
    policies = []
    for step in steps:
        try:
            policies.append(load_policy(run, checkpoint=f"step_{step}", device=device))
        except BearlError as e:
            msg = f"snapshot of step {step} does not load: {e}"  # ours: one line already
            raise OPEError(msg) from None
    first = policies[0]
    gamma = cfg.gamma if cfg.gamma is not None else float(getattr(first.algo_config, "gamma", 0.99))
    if first.obs_dim != data.obs_dim or first.act_dim != data.act_dim:
        raise OPEError(
            f"{data.info.source}: {data.obs_dim} observation and {data.act_dim} action values, "
            f"but the run's policy takes {first.obs_dim} and gives {first.act_dim}"
        )
    rules = [p.module(deterministic=False) for p in policies]  # each policy's own rule
    fit = run / FIT_FILE  # the fit so far: an interrupted call goes on from it
    key = {"snapshots": [[s, _sha1(snapshot_path(run, s))] for s in steps]}
    result = fit_fqe(rules, data, cfg, gamma, progress, device, checkpoint=fit, key=key)
    critic = [_critic_start_value(p, data, cfg.start_samples, cfg.seed) for p in policies]
    gaps = [action_gap(rule, data, cfg.seed, device) for rule in rules]

    refs = _references(data, first)
    lo, hi = value_range(data, gamma)
    entries = []
    for i, step in enumerate(steps):
        heads = result.heads[i]
        e: dict[str, Any] = {"step": step}
        # no policy's value lies outside what the data's rewards allow: a fit that went there
        # diverged (typically the snapshot acts where the data has no actions)
        e["diverged"] = bool(not np.all(np.isfinite(heads)) or heads.min() < lo or heads.max() > hi)
        values = {
            "fqe": result.estimate[i],
            "fqe_low": result.low[i],
            "fqe_high": result.high[i],
            "critic": critic[i],
        }
        for key, v in values.items():  # normalized where the data has references
            e[key] = _round(normalized_value(v, *refs, gamma) if refs else v)
            e[f"{key}_return"] = _round(v)
        e["fqe_heads_return"] = [_round(v) for v in result.heads[i]]
        e["action_gap"] = _round(gaps[i])
        entries.append(e)

    path = run / OPE_FILE
    old = read_json(path) or {}
    same = _same_settings(old, cfg)  # else: a new fit
    kept = {e["step"]: e for e in old.get("snapshots", [])} if same else {}
    kept.update({e["step"]: e for e in entries})
    out = {
        "format": FORMAT,
        "normalized": refs is not None,
        "gamma": gamma,
        "dataset": {
            "source": data.info.source,
            "sha1": data.digest(),
            "episodes": data.num_episodes,
            "transitions": len(data),
        },
        "references": list(refs) if refs else None,
        "value_range": [_round(lo), _round(hi)],
        "settings": asdict(cfg),
        "seconds": round(result.seconds, 1),
        "cpu_seconds": round(result.cpu_seconds, 1),
        "snapshots": [kept[s] for s in sorted(kept)],
    }
    write_atomic(path, (json.dumps(out, indent=2) + "\n").encode())
    fit.unlink(missing_ok=True)
    table_path(fit).unlink(missing_ok=True)
    return out


FIT_FILE = "ope_fit.pt"


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


GAP_ROWS = 20_000


@torch.no_grad()
def action_gap(rule, data: Dataset, seed: int = 0, device: str = "cpu") -> float:
    """How far the policy acts from the data: the mean squared distance between its action
    (its own rule, sampled) and the dataset's action at up to ``GAP_ROWS`` of the dataset's
    states (a fixed random subset), in the dataset's action units. FQE extrapolates where it
    is large (studies/offline_selection)."""
    rows = np.random.default_rng(seed).permutation(len(data))[:GAP_ROWS]
    s = torch.as_tensor(data.observations[rows], device=device)
    a = torch.as_tensor(data.actions[rows], device=device)
    with _seeded(seed, device):  # the rule may sample
        return float((rule(s) - a).double().pow(2).sum(-1).mean())


@contextmanager
def _seeded(seed: int, device: str | torch.device) -> Iterator[None]:
    """Draw from torch's RNG seeded with ``seed`` (the same numbers at every call), leaving the
    caller's RNG as it was."""
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def add_action_gaps(
    run: Path, old: dict[str, Any], dataset: str | Dataset | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Add ``action_gap`` to the entries of an ope.json written before it existed (no new FQE
    fit: the policies' actions only); returns the new content."""
    data = run_dataset(run, dataset)
    seed = int((old.get("settings") or {}).get("seed", 0))
    for e in old["snapshots"]:
        if "action_gap" not in e:
            policy = load_policy(run, checkpoint=f"step_{e['step']}", device=device)
            e["action_gap"] = _round(action_gap(policy.module(False), data, seed, device))
    write_atomic(run / OPE_FILE, (json.dumps(old, indent=2) + "\n").encode())
    return old


@torch.no_grad()
def _critic_start_value(policy, data: Dataset, samples: int, seed: int = 0) -> float:
    """The run's own critic: mean over the episode starts of Q(s0, a0), a0 from the policy's
    rule (``Algorithm.q_value``, as the training diagnostics; drawn with ``seed``); NaN
    without a critic (BC)."""
    algo = policy.algo
    s0 = torch.as_tensor(data.observations[data.episode_starts], device=policy.device)
    total = 0.0
    with _seeded(seed, policy.device):
        for _ in range(samples):
            a0 = algo.act(s0)
            q = algo.q_value(s0, a0)
            if q is None:
                return math.nan
            total += float(q.double().mean())
    return total / samples


def _references(data: Dataset, policy) -> tuple[float, float] | None:
    lo, hi = data.info.ref_min_score, data.info.ref_max_score
    if lo is None or hi is None:
        return policy.ref_scores
    return float(lo), float(hi)


def _family(env: str) -> str:
    """``Hopper-v5`` and ``hopper-medium-v2``'s ``Hopper-v2`` are the same environment."""
    return env.split("-v")[0].lower()


def _round(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 4)


def ope_runs(runs: list[str | Path], redo: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`ope_run` for each run, each ope.json written as soon as its run is done; a run
    whose ope.json already holds the chosen snapshots with the same settings is skipped
    unless ``redo`` (so that an interrupted ``bearl ope`` over many runs goes on where it
    stopped)."""
    out = []
    for i, run in enumerate(runs, 1):
        done = None if redo else _done(Path(run), kwargs.get("snapshots", "all"), kwargs.get("cfg"))
        if done is not None:
            added = ""
            if any("action_gap" not in e for e in done["snapshots"]):
                kw = {k: kwargs[k] for k in ("dataset", "device") if k in kwargs}
                done, added = add_action_gaps(Path(run), done, **kw), " (action gaps added)"
            msg = f"bearl ope [{i}/{len(runs)}] {run}: done before{added}"
            print(msg, file=sys.stderr, flush=True)
            out.append(done)
            continue
        print(f"bearl ope [{i}/{len(runs)}] {run}", file=sys.stderr, flush=True)
        out.append(ope_run(run, **kwargs))
    return out


def _done(run: Path, snapshots: str, cfg: FQEConfig | None) -> dict[str, Any] | None:
    """The run's ope.json when it already holds ``snapshots`` fitted with ``cfg``."""
    old = read_json(run / OPE_FILE)
    if not old or not _same_settings(old, cfg or FQEConfig()):
        return None
    try:
        want = set(choose_snapshots(run, snapshots))
    except OPEError:
        return None
    return old if want <= {e["step"] for e in old.get("snapshots", [])} else None


# settings added to FQEConfig with a default other than the behaviour before them
BEFORE_SETTING = {"next_actions": "fresh"}


def _same_settings(old: dict[str, Any], cfg: FQEConfig) -> bool:
    """Whether an ope.json was fitted with ``cfg``; a setting added to FQEConfig since the file
    was written counts as the behaviour before it existed (its default, or BEFORE_SETTING)."""
    if "settings" not in old:
        return False
    had = {**asdict(FQEConfig()), **BEFORE_SETTING, **old["settings"]}
    return json.dumps(had, sort_keys=True) == json.dumps(asdict(cfg), sort_keys=True)
