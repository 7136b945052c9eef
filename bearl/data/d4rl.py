"""D4RL's flat HDF5 layout: read it into a :class:`Dataset`, write a Dataset in it.

A D4RL file holds ``observations, actions, rewards, terminals`` and usually ``timeouts`` and
``next_observations`` (v1/v2 files), plus ``infos/*`` (ignored) and ``metadata/*`` (scalars are
kept in ``DatasetInfo.metadata``).

Files without ``next_observations`` get the next state from the following row, as D4RL's
``qlearning_dataset`` does, with these rules:

* a row whose episode ended by timeout has no next state in the file: it is dropped, and the row
  before it becomes the episode's last row, marked as a timeout (bootstrapping continues from
  its next state, which is valid);
* the final row of the file, if not terminal, is dropped likewise;
* a terminal row is kept; its next observation is its own observation (it is never used, and it
  must not be the first state of the next episode).

Without a ``timeouts`` key every timeout is False, so episodes then split only at terminals.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from bearl.data.dataset import (
    Dataset,
    DatasetInfo,
    _as_array,
    _as_bool,
    _check_finite,
    check_data_file,
    check_declared_size,
)
from bearl.envs import env_family, reference_scores, resolve_env_id
from bearl.errors import DatasetError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
FLAG_KEYS = ("terminals", "timeouts")


def read_d4rl(path: str | os.PathLike) -> Dataset:
    """Read a D4RL-layout HDF5 file (see the module docstring for the next-state rules).

    Raises:
        DatasetError: naming the file (and the field) on a missing, empty, unreadable or
            invalid file.
    """
    path, src = check_data_file(path)
    try:
        with h5py.File(path, "r") as f:
            _check_size(f, src)
            packed = _read_packed(f)
            arrays = _read_arrays(f, src, skip_floats=packed is not None)
            meta = _read_metadata(f)
    except (OSError, RuntimeError) as e:
        raise DatasetError(src, f"not a readable HDF5 file (truncated or corrupt?): {e}") from None

    env_name = meta.pop("env_name", None)
    if env_name is None:
        family = env_family(path.name)
        env_name = resolve_env_id(family) if family else None
    lo, hi = meta.pop("ref_min_score", None), meta.pop("ref_max_score", None)
    ref = reference_scores(env_name) if (lo is None or hi is None) else None
    if ref is not None:
        lo = ref[0] if lo is None else lo
        hi = ref[1] if hi is None else hi
    info = DatasetInfo(
        source=src,
        env_name=str(env_name) if env_name is not None else None,
        ref_min_score=float(lo) if lo is not None else None,
        ref_max_score=float(hi) if hi is not None else None,
        metadata=meta,
    )

    if packed is not None:  # read straight into the packed matrix: no second copy
        obs_dim, act_dim = packed.obs_dim, packed.act_dim
        return Dataset.from_packed(
            packed.matrix, obs_dim, act_dim, arrays["terminals"], arrays["timeouts"], info
        )
    if "next_observations" in arrays:
        return Dataset(
            arrays["observations"],
            arrays["actions"],
            arrays["rewards"],
            arrays["next_observations"],
            arrays["terminals"],
            arrays["timeouts"],
            info,
        )
    return _from_following_rows(arrays, info)


def write_d4rl(ds: Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as a D4RL-layout HDF5 file (gzip, float32 arrays, bool flags).

    ``metadata/`` holds ``env_name``, ``ref_min_score``, ``ref_max_score``, ``source`` and every
    scalar (str, int, float, bool) of ``ds.info.metadata``. Reading it back gives the same arrays.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        k: v for k, v in ds.info.metadata.items() if isinstance(v, (str, int, float, np.generic))
    }
    meta["source"] = ds.info.source
    for key in ("env_name", "ref_min_score", "ref_max_score"):
        value = getattr(ds.info, key)
        if value is not None:
            meta[key] = value
    with h5py.File(path, "w") as f:
        for key in FLOAT_KEYS:
            f.create_dataset(key, data=getattr(ds, key).astype(np.float32), compression="gzip")
        for key in FLAG_KEYS:
            f.create_dataset(key, data=getattr(ds, key).astype(bool), compression="gzip")
        for key, value in meta.items():
            f.create_dataset(f"metadata/{key}", data=value)
    return path


def d4rl_file_name(name: str) -> str:
    """D4RL's cache file name of a dataset name: ``hopper-medium-replay-v2`` ->
    ``hopper_medium_replay-v2.hdf5``."""
    body, sep, version = name.rpartition("-v")
    if not sep or not version.isdigit():
        return name.replace("-", "_") + ".hdf5"
    return f"{body.replace('-', '_')}-v{version}.hdf5"


def d4rl_dir() -> Path:
    """D4RL's cache folder: ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``."""
    return Path(os.environ.get("D4RL_DATASET_DIR") or Path.home() / ".d4rl" / "datasets")


class _Packed(NamedTuple):
    matrix: np.ndarray
    obs_dim: int
    act_dim: int


def _check_size(f: h5py.File, src: str) -> None:
    """Refuse a file whose fields declare more rows than fit in memory, from their headers
    alone (a few KB of chunked, compressed, never written fields can declare billions)."""
    fields = (*REQUIRED_KEYS, "timeouts", "next_observations")
    shapes = {k: f[k].shape for k in fields if isinstance(f.get(k), h5py.Dataset)}
    check_declared_size(src, shapes)


def _read_packed(f: h5py.File) -> _Packed | None:
    """Fast path for files with ``next_observations``: the float fields are read in blocks of
    rows straight into their columns of one float32 matrix, so the file's data is never held
    twice. None when the file does not have the plain layout (the general path then reports
    what is wrong)."""
    keys = ("observations", "actions", "rewards", "next_observations")
    if not all(isinstance(f.get(k), h5py.Dataset) for k in (*keys, "terminals")):
        return None
    obs, act, rew, nxt = (f[k] for k in keys)
    n = obs.shape[0] if obs.ndim == 2 else -1
    if (
        n <= 0
        or act.ndim != 2
        or act.shape[0] != n
        or nxt.shape != obs.shape
        or rew.shape not in ((n,), (n, 1))
        or f["terminals"].shape[0] != n
        or any(d.dtype.kind != "f" for d in (obs, act, rew, nxt))
    ):
        return None
    s, a = obs.shape[1], act.shape[1]
    matrix = np.empty((n, 2 * s + a + 1), dtype=np.float32)
    rows = max(1, (1 << 22) // matrix.shape[1])  # ~16 MiB of rows at a time
    for i in range(0, n, rows):
        j = min(n, i + rows)
        matrix[i:j, :s] = obs[i:j]
        matrix[i:j, s : s + a] = act[i:j]
        matrix[i:j, s + a] = rew[i:j].reshape(-1)
        matrix[i:j, s + a + 1 :] = nxt[i:j]
    return _Packed(matrix, s, a)


def _read_arrays(f: h5py.File, src: str, skip_floats: bool = False) -> dict[str, np.ndarray]:
    """The validated arrays of the file, flags as 1-D bool, floats checked for NaN/Inf.
    ``skip_floats``: read only the flags (the floats were read by :func:`_read_packed`)."""
    if len(f.keys()) == 0:
        raise DatasetError(src, "the HDF5 file holds no datasets")
    for key in REQUIRED_KEYS:
        if key not in f:
            raise DatasetError(src, f"missing (the file has: {', '.join(sorted(f.keys()))})", key)
    arrays = {}
    for key in (*REQUIRED_KEYS, "timeouts", "next_observations"):
        if key not in f or (skip_floats and key in FLOAT_KEYS):
            continue
        if not isinstance(f[key], h5py.Dataset):
            raise DatasetError(src, "is a group, expected an array", key)
        a = _as_array(src, key, f[key][()])
        if a.ndim == 0:
            raise DatasetError(src, "is a scalar, expected an array", key)
        if key in ("rewards", *FLAG_KEYS) and a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        arrays[key] = a
    n = f["observations"].shape[0] if skip_floats else len(arrays["observations"])
    for key, a in arrays.items():
        if len(a) != n:
            raise DatasetError(src, f"has {len(a)} rows but 'observations' has {n}", key)
    if n == 0:
        raise DatasetError(src, "the dataset is empty (0 transitions)")
    if "timeouts" not in arrays:
        arrays["timeouts"] = np.zeros(n, bool)
    for key in FLOAT_KEYS:
        if key in arrays:
            _check_finite(src, key, arrays[key])
    for key in FLAG_KEYS:
        if arrays[key].ndim != 1:
            raise DatasetError(src, f"expected a 1-D array [N], got {arrays[key].shape}", key)
        arrays[key] = _as_bool(src, key, arrays[key])
    return arrays


def _from_following_rows(arrays: dict[str, np.ndarray], info: DatasetInfo) -> Dataset:
    """Next state = next row; drop rows without one (see the module docstring)."""
    obs = arrays["observations"]
    terminals = arrays["terminals"]
    timeouts = arrays["timeouts"] & ~terminals
    drop = timeouts.copy()
    drop[-1] |= not terminals[-1]
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[terminals] = obs[terminals]
    # the row before a dropped one ends its episode there, unless it already ended an episode
    cut = np.zeros_like(drop)
    cut[:-1] = drop[1:] & ~(terminals[:-1] | timeouts[:-1])
    keep = ~drop
    return Dataset(
        obs[keep],
        arrays["actions"][keep],
        arrays["rewards"][keep],
        next_obs[keep],
        terminals[keep],
        cut[keep],
        info,
    )


def _read_metadata(f: h5py.File) -> dict[str, Any]:
    """Scalar file attributes and scalar datasets under ``metadata/`` (the latter win)."""
    meta: dict[str, Any] = {}
    for key, value in f.attrs.items():
        plain = _plain(value)
        if plain is not None:
            meta[key] = plain
    group = f.get("metadata")
    if isinstance(group, h5py.Group):

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.shape == ():
                plain = _plain(obj[()])
                if plain is not None:
                    meta[name] = plain

        group.visititems(visit)
    return meta


def _plain(value: Any) -> str | int | float | bool | None:
    """A str/int/float/bool for a scalar HDF5 value, None for anything else."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
    if isinstance(value, (str, int, float, bool)):
        return value
    return None
