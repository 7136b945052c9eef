"""bearl's own D4RL-style suite: ``<env>-<kind>`` datasets made from shipped behaviour policies.

Made the way D4RL made its gym-MuJoCo datasets: roll out a behaviour policy, sampling its
stochastic tanh-Gaussian actions, 1000-step time limit, ``terminals`` = env termination,
``timeouts`` = time limit. Kinds:

- ``random``: uniform random actions (D4RL's ``collect_data.py --random``);
- ``medium`` / ``expert``: the shipped medium / expert SAC snapshots (``bearl/data/policies``);
- ``medium-replay``: the training history up to the medium snapshot, rebuilt by rolling out the
  shipped chain of snapshots in order (see docs/datasets.md for why and how it differs from
  D4RL's stored replay buffer);
- ``medium-expert``: the first half ``medium`` and the second half ``expert`` rollouts.

Datasets are written as Minari datasets ``bearl/<env>/<kind>-v0`` (under
``MINARI_DATASETS_PATH``, default Minari's own root) with env spec, D4RL's reference scores and
a description of how they were made. Same name + size + seed = the same data, bit for bit.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bearl.data.dataset import Dataset, DatasetInfo
from bearl.data.policy_io import load_policy_file
from bearl.envs import ENV_IDS, make_env, reference_scores
from bearl.errors import DatasetError, DatasetExists
from bearl.files import waiting_lock
from bearl.nets import TanhGaussianActor

SUITE_ENVS = ("hopper", "walker2d", "halfcheetah")
SUITE_KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")
SUITE_NAMES = tuple(f"{e}-{k}" for e in SUITE_ENVS for k in SUITE_KINDS)
DEFAULT_SIZE = 1_000_000
MAX_EPISODE_STEPS = 1000


def parse_name(name: str) -> tuple[str, str]:
    """``"hopper-medium-replay"`` -> ``("hopper", "medium-replay")``; DatasetError otherwise."""
    family, _, kind = name.strip().lower().partition("-")
    if family not in SUITE_ENVS or kind not in SUITE_KINDS:
        close = difflib.get_close_matches(name, SUITE_NAMES, n=3)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else f" (known: {', '.join(SUITE_NAMES)})"
        )
        raise DatasetError(name, f"not a bearl suite dataset{hint}")
    return family, kind


def dataset_id(name: str) -> str:
    """The Minari id of a suite dataset: ``hopper-medium`` -> ``bearl/hopper/medium-v0``."""
    family, kind = parse_name(name)
    return f"bearl/{family}/{kind}-v0"


def policy_file(family: str, level: str) -> Path:
    """Path of a shipped policy file (``bearl/data/policies/<env>-<level>.pt``)."""
    return Path(str(resources.files("bearl.data") / "policies" / f"{family}-{level}.pt"))


# Version of the rollout recipe (environment stepping, seeding, action sampling, how episodes
# are cut). Recorded in every dataset made; bump it whenever a change to that code would make
# different data from the same policies and seed, so that copies made before are made again.
# A dataset without the field was made by version 1.
RECIPE_VERSION = 1


def policy_digest(name: str) -> str:
    """SHA-256 (first 16 hex digits) of the shipped files suite dataset ``name`` is made from;
    ``"none"`` for random. Recorded in each made dataset, so a dataset made by an earlier bearl
    (other shipped policies) is recognised as stale and made again (:func:`load_or_make`)."""
    family, kind = parse_name(name)
    levels = {"random": [], "medium-replay": ["replay"], "medium-expert": ["medium", "expert"]}
    files = [policy_file(family, lv) for lv in levels.get(kind, [kind])]
    if not files:
        return "none"
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes() if f.exists() else b"missing")
    return h.hexdigest()[:16]


def load_shipped_policy(family: str, level: str) -> tuple[TanhGaussianActor, dict[str, Any]]:
    path = policy_file(family, level)
    if not path.exists():
        raise DatasetError(
            f"{family}-{level}",
            f"no shipped {level} policy for {family} ({path.name} is not in this bearl "
            f"version); train one with `bearl data train-behavior --env {ENV_IDS[family]}`",
        )
    return load_policy_file(path)


# -- rollouts ------------------------------------------------------------------------------------
def rollout(
    env_id: str,
    actor: TanhGaussianActor | None,
    size: int,
    seed: int = 0,
    num_envs: int = 10,
    progress: bool = True,
    desc: str = "rollout",
) -> Dataset:
    """Roll out ``actor`` (None: uniform random actions) until ``size`` transitions.

    ``num_envs`` episodes run side by side in a gymnasium ``SyncVectorEnv`` with the policy
    batched over them; a finished env resets in the same step (``AutoresetMode.SAME_STEP``) and
    its episode's last next-observation is taken from ``info["final_obs"]``. Complete episodes
    are kept in the order they finish; the data is then cut to exactly ``size`` rows (the last
    episode may be cut: its last row is then a timeout). Deterministic for a given seed.
    """
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    from bearl.progress import progress_bar

    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    space = envs.single_action_space
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=[seed * 1_000_003 + i * 100_003 for i in range(num_envs)])
    obs = obs.astype(np.float32)
    current: list[dict[str, list]] = [_new_episode() for _ in range(num_envs)]
    done_eps: list[dict[str, np.ndarray]] = []
    total = 0
    bar = progress_bar(size, disable=not progress, unit="tr", desc=desc, smoothing=0.05)
    with torch.no_grad():
        while total < size:
            if actor is None:
                actions = rng.uniform(space.low, space.high, size=(num_envs, *space.shape))
            else:
                mean, log_std = actor.dist_params(torch.from_numpy(obs))
                eps = torch.randn(mean.shape, generator=gen)
                actions = torch.tanh(mean + log_std.exp() * eps).numpy()
            actions = actions.astype(np.float32)
            nxt, rewards, term, trunc, info = envs.step(actions)
            nxt = nxt.astype(np.float32)
            for i in range(num_envs):
                ep = current[i]
                ep["obs"].append(obs[i])
                ep["act"].append(actions[i])
                ep["rew"].append(rewards[i])
                if term[i] or trunc[i]:  # nxt[i] is already the next episode's first obs
                    ep["next"].append(np.asarray(info["final_obs"][i], np.float32))
                    ep_arr = _finish(ep, bool(term[i]))
                    done_eps.append(ep_arr)
                    kept = min(len(ep_arr["rew"]), max(size - total, 0))  # the cut is not kept
                    total += len(ep_arr["rew"])
                    bar.update(kept)
                    current[i] = _new_episode()
                else:
                    ep["next"].append(nxt[i])
            obs = nxt
    bar.close()
    envs.close()
    cat = {k: np.concatenate([e[k] for e in done_eps])[:size] for k in done_eps[0]}
    lo_hi = reference_scores(env_id)
    return Dataset(
        cat["obs"],
        cat["act"],
        cat["rew"],
        cat["next"],
        cat["term"],
        cat["timeout"],
        DatasetInfo(
            source=desc,
            env_name=env_id,
            ref_min_score=lo_hi[0] if lo_hi else None,
            ref_max_score=lo_hi[1] if lo_hi else None,
        ),
    )


def _new_episode() -> dict[str, list]:
    return {"obs": [], "act": [], "rew": [], "next": []}


def _finish(ep: dict[str, list], terminated: bool) -> dict[str, np.ndarray]:
    n = len(ep["rew"])
    term = np.zeros(n, bool)
    timeout = np.zeros(n, bool)
    (term if terminated else timeout)[-1] = True
    return {
        "obs": np.stack(ep["obs"]),
        "act": np.stack(ep["act"]),
        "rew": np.asarray(ep["rew"], np.float32),
        "next": np.stack(ep["next"]),
        "term": term,
        "timeout": timeout,
    }


def concat(parts: list[Dataset], source: str) -> Dataset:
    """Datasets one after another (each part's last row already ends an episode)."""
    first = parts[0].info
    return Dataset(
        np.concatenate([p.observations for p in parts]),
        np.concatenate([p.actions for p in parts]),
        np.concatenate([p.rewards for p in parts]),
        np.concatenate([p.next_observations for p in parts]),
        np.concatenate([p.terminals for p in parts]),
        np.concatenate([p.timeouts for p in parts]),
        DatasetInfo(source, first.env_name, first.ref_min_score, first.ref_max_score),
    )


# -- the suite -----------------------------------------------------------------------------------
def default_size(name: str) -> int:
    """1M transitions (D4RL's size), except medium-replay: as many as the behaviour run took
    env steps up to the medium snapshot (as D4RL's replay datasets)."""
    family, kind = parse_name(name)
    if kind == "medium-replay" and policy_file(family, "replay").exists():
        chain = torch.load(policy_file(family, "replay"), map_location="cpu", weights_only=True)
        return _replay_env_steps(chain)
    return DEFAULT_SIZE


def _replay_env_steps(chain: dict) -> int:
    """Env steps of the behaviour run up to the medium snapshot (older files lack the key)."""
    return int(chain.get("env_steps", chain["transitions_per_snapshot"] * len(chain["snapshots"])))


def generate(name: str, size: int | None = None, seed: int = 0, progress: bool = True) -> Dataset:
    """Make suite dataset ``name`` in memory (no file written). The caller's random state is
    left as it was: building the shipped policies' networks draws from torch's global
    generator, and a training run that makes its dataset first must start from the same random
    state as one that reads it from disk."""
    with torch.random.fork_rng(devices=[]):
        return _generate(name, size, seed, progress)


def _generate(name: str, size: int | None, seed: int, progress: bool) -> Dataset:
    family, kind = parse_name(name)
    size = size or default_size(name)
    env_id = ENV_IDS[family]
    meta: dict[str, Any] = {"suite_name": f"{family}-{kind}", "size": size, "seed": seed}
    meta["policy_digest"] = policy_digest(name)
    meta["recipe_version"] = RECIPE_VERSION
    if kind == "random":
        ds = rollout(env_id, None, size, seed, progress=progress, desc=name)
        meta["policy"] = "uniform random actions"
    elif kind in ("medium", "expert"):
        actor, pmeta = load_shipped_policy(family, kind)
        ds = rollout(env_id, actor, size, seed, progress=progress, desc=name)
        meta["policy"] = f"{family}-{kind}.pt"
        meta["policy_meta"] = json.dumps(pmeta)
    elif kind == "medium-expert":
        half = size // 2
        parts = []
        for level, n, s in (("medium", half, seed), ("expert", size - half, seed + 1)):
            actor, _ = load_shipped_policy(family, level)
            parts.append(rollout(env_id, actor, n, s, progress=progress, desc=f"{name}/{level}"))
        ds = concat(parts, name)
        meta["policy"] = f"first {half} rows: {family}-medium.pt, then {family}-expert.pt"
    else:  # medium-replay
        ds = _medium_replay(family, size, seed, progress)
        meta["policy"] = f"chain of snapshots in {family}-replay.pt up to the medium snapshot"
    ds.info.source = f"bearl:{name}"
    ds.info.metadata.update(meta)
    return ds


def _medium_replay(family: str, size: int, seed: int, progress: bool) -> Dataset:
    """Roll out the shipped snapshot chain, each snapshot for its share of ``size``: the share
    of the run's env steps it collected (from its step to the next snapshot's)."""
    path = policy_file(family, "replay")
    if not path.exists():
        raise DatasetError(
            f"{family}-medium-replay", f"no shipped snapshot chain for {family} ({path.name})"
        )
    chain = torch.load(path, map_location="cpu", weights_only=True)
    snaps = chain["snapshots"]  # list of state dicts, oldest first; None = random warm-up
    env_id = ENV_IDS[family]
    bounds = [*chain["steps"], _replay_env_steps(chain)]
    cuts = [size * (b - bounds[0]) // (bounds[-1] - bounds[0]) for b in bounds]
    share = [hi - lo for lo, hi in zip(cuts, cuts[1:])]
    parts = []
    for i, (sd, n) in enumerate(zip(snaps, share)):
        if n == 0:  # a --size smaller than the chain leaves some snapshots no rows
            continue
        actor = None
        if sd is not None:
            actor = TanhGaussianActor(
                chain["obs_dim"], chain["act_dim"], chain["hidden"], tuple(chain["log_std_bounds"])
            )
            actor.load_state_dict({k: v.float() for k, v in sd.items()})
        parts.append(
            rollout(
                env_id,
                actor,
                n,
                seed * 1000 + i,
                progress=progress,
                desc=f"{family}-medium-replay {i + 1}/{len(snaps)}",
            )
        )
    return concat(parts, f"{family}-medium-replay")


def make(
    name: str,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    root: str | None = None,
) -> Dataset:
    """Make suite dataset ``name`` and write it as the Minari dataset :func:`dataset_id`.

    Raises:
        DatasetExists: the dataset exists already and ``overwrite`` is False (checked before
            anything is rolled out).
    """
    from bearl.data.minari_io import datasets_path, minari_root, write_minari

    with datasets_path(root):
        folder = minari_root() / dataset_id(name)
    if folder.exists() and not overwrite:
        raise DatasetExists(name, folder)
    ds = generate(name, size, seed, progress)
    meta = ds.info.metadata
    desc = (
        f"bearl suite dataset {name}: {len(ds)} transitions, seed {seed}, "
        f"{meta['policy']}; stochastic tanh-Gaussian actions, 1000-step limit."
    )
    ds.info.metadata["algorithm_name"] = (
        "SAC (stable-baselines3)" if "random" not in name else "random"
    )
    digest = {"policy_digest": meta["policy_digest"], "recipe_version": RECIPE_VERSION}
    folder = write_minari(
        ds, dataset_id(name), desc, root=root, overwrite=overwrite, extra_metadata=digest
    )
    _write_cache(ds, folder / CACHE_NAME)
    return ds


# Minari keeps one HDF5 group per episode; random datasets have ~50k short episodes and read
# slowly (over a minute). A flat D4RL-layout copy next to the Minari files loads in seconds.
CACHE_NAME = "bearl_flat_cache.hdf5"


def cache_path(name: str) -> Path:
    from bearl.data.minari_io import minari_root

    return minari_root() / dataset_id(name) / CACHE_NAME


def _write_cache(ds: Dataset, path: Path) -> None:
    from bearl.data.d4rl import write_d4rl

    tmp = path.with_name(path.name + ".tmp")
    write_d4rl(ds, tmp)
    tmp.replace(path)


def load_or_make(name: str, size: int | None = None, seed: int = 0) -> Dataset:
    """Read suite dataset ``name`` from the Minari root, making it first if it is missing.

    Processes that need the same dataset at once (two sweeps starting on a new machine) take
    turns: the first makes it, the others wait for it and read what it wrote."""
    from bearl.data.minari_io import minari_root

    folder = minari_root() / dataset_id(name)
    lock = folder.with_name(f".{folder.name}.lock")
    with waiting_lock(lock, f"bearl: another process is making or reading {name}; waiting"):
        return _load_or_make(name, size, seed)


def _load_or_make(name: str, size: int | None, seed: int) -> Dataset:
    from bearl.data.minari_io import minari_local_exists

    if not minari_local_exists(dataset_id(name)):
        print(
            f"bearl: {name} is not made yet; making it now ({size or default_size(name)} "
            "transitions)",
            flush=True,
        )
        make(name, size, seed)
        return read_local(name)
    ds = read_local(name)
    if is_stale(ds):
        size = size or int(ds.info.metadata.get("size") or 0) or None
        seed = seed or int(ds.info.metadata.get("seed") or 0)
        print(
            f"bearl: {name} on disk was made by an earlier bearl (other policy files or "
            f"rollout recipe than this one ships); making it again "
            f"({size or default_size(name)} transitions, seed {seed})",
            flush=True,
        )
        make(name, size, seed, overwrite=True)
        ds = read_local(name)
    return ds


def is_stale(ds: Dataset) -> bool:
    """Whether suite dataset ``ds`` (read from disk) was made from other shipped files than the
    current ones (one without a digest, made before bearl recorded digests, was), or by another
    rollout recipe (:data:`RECIPE_VERSION`; random datasets too)."""
    meta = ds.info.metadata
    if int(meta.get("recipe_version", 1)) != RECIPE_VERSION:
        return True
    current = policy_digest(meta.get("suite_name") or ds.info.source)
    return current != "none" and meta.get("policy_digest") != current


def read_local(name: str) -> Dataset:
    """Read suite dataset ``name`` that exists locally (from its flat cache when present)."""
    from bearl.data.d4rl import read_d4rl
    from bearl.data.minari_io import read_minari

    did = dataset_id(name)
    cache = cache_path(name)
    if cache.exists():
        ds = read_d4rl(cache)
    else:
        ds = read_minari(did)
        _write_cache(ds, cache)
    ds.info.source = name
    return ds
