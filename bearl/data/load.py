"""One entry point for every dataset source: :func:`load_dataset`, and :func:`describe`.

Accepted sources, tried in this order:

* a :class:`Dataset` (returned as is);
* ``"minari:<id>"``: a Minari dataset id;
* an existing path: a folder is a Minari dataset folder; a file is recognised by its first
  bytes: HDF5 (D4RL layout, or a Minari ``main_data.hdf5``), gzip or plain pickle and ``.npy``
  (original BEAR/BCQ buffers), zip (``.npz``);
* a D4RL name such as ``hopper-medium-replay-v2``: the file ``hopper_medium_replay-v2.hdf5`` in
  ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``;
* a Minari id stored locally, without the prefix (``mujoco/hopper/medium-v0``);
* a bearl suite name ``<env>-<kind>`` (``hopper-medium-replay``), made by ``bearl.data.suite``.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from bearl.data.d4rl import d4rl_dir, d4rl_file_name, read_d4rl
from bearl.data.dataset import Dataset
from bearl.data.legacy import GZIP_MAGIC, NPY_MAGIC, ZIP_MAGIC, read_legacy
from bearl.data.minari_io import minari_local_exists, read_minari
from bearl.data.suite import SUITE_NAMES
from bearl.envs import make_env, reference_scores, resolve_env_id
from bearl.errors import DatasetError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PICKLE_MAGIC = b"\x80"


SUPPORTED_FORMATS = (
    "D4RL HDF5 (.hdf5), Minari dataset folder or main_data.hdf5, gzip/plain pickle of a dict "
    "of arrays (.pkl, .gz), .npy holding such a dict, .npz"
)
_D4RL_NAME = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)+-v\d+$")
_PICKLE_EXTENSIONS = (".pkl", ".pickle", ".p")
_HDF5_EXTENSIONS = (".hdf5", ".h5", ".hdf")
_PATH_EXTENSIONS = (*_HDF5_EXTENSIONS, *_PICKLE_EXTENSIONS, ".gz", ".npy", ".npz")


def load_dataset(
    source: str | os.PathLike | Dataset, env: str | None = None, download: bool = False
) -> Dataset:
    """Load a dataset from any supported source (see the module docstring).

    Args:
        source: a Dataset, a path, ``minari:<id>``, a D4RL name, a Minari id or a suite name.
        env: an environment name (anything :mod:`bearl.envs` accepts). When given, the
            dataset's widths are checked against the env's spaces, and the env name and
            reference scores are filled in where the dataset does not know them.
        download: let minari download a Minari id that is not stored locally.

    Raises:
        DatasetError: naming the source (and the field) when it cannot be found, read or
            validated, or does not fit ``env``.
    """
    ds = source if isinstance(source, Dataset) else _load(source, download)
    if env is not None:
        _apply_env(ds, env)
    return ds


def describe(ds: Dataset) -> dict[str, Any]:
    """Summary numbers of a dataset; std is the population std (ddof=0) over episodes."""
    returns = ds.episode_returns
    out: dict[str, Any] = {
        "source": ds.info.source,
        "env": ds.info.env_name,
        "transitions": len(ds),
        "episodes": ds.num_episodes,
        "obs_dim": ds.obs_dim,
        "act_dim": ds.act_dim,
        "terminals": int(ds.terminals.sum()),
        "timeouts": int(ds.timeouts.sum()),
    }
    out.update(_stats("return", returns))
    normalized = ds.normalized(returns)
    if normalized is not None:
        out.update(_stats("normalized_return", normalized))
    return out


def _stats(prefix: str, values: np.ndarray) -> dict[str, float]:
    return {
        f"{prefix}_mean": float(np.mean(values)),
        f"{prefix}_std": float(np.std(values)),
        f"{prefix}_min": float(np.min(values)),
        f"{prefix}_max": float(np.max(values)),
    }


def _load(source: str | os.PathLike, download: bool) -> Dataset:
    name = str(source)
    if name.startswith("minari:"):
        return read_minari(name[len("minari:") :], download=download)
    path = Path(name).expanduser()
    if path.is_dir():
        return read_minari(path)
    if path.is_file():
        return _load_file(path)
    if _D4RL_NAME.match(name):
        return _load_d4rl_name(name)
    if minari_local_exists(name):
        return read_minari(name)
    if name in SUITE_NAMES:
        return _load_suite(name)
    if name.startswith(("/", "./", "../", "~")) or name.endswith(_PATH_EXTENSIONS):
        raise DatasetError(name, "no such file or folder")
    close = difflib.get_close_matches(name, SUITE_NAMES, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise DatasetError(
        name,
        f"unknown dataset{hint} (expected a file or folder, minari:<id>, a D4RL name such as "
        f"hopper-medium-v2, or one of {', '.join(SUITE_NAMES)})",
    )


def _load_file(path: Path) -> Dataset:
    """Dispatch a file on its first bytes (extensions only as a fallback)."""
    if path.stat().st_size == 0:
        raise DatasetError(path, "empty file")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(HDF5_MAGIC) or path.suffix.lower() in _HDF5_EXTENSIONS:
        if path.name == "main_data.hdf5" and (path.parent / "metadata.json").is_file():
            return read_minari(path.parent)
        return read_d4rl(path)
    if magic.startswith((GZIP_MAGIC, PICKLE_MAGIC, NPY_MAGIC, ZIP_MAGIC)):
        return read_legacy(path)
    if path.suffix.lower() in (*_PICKLE_EXTENSIONS, ".npy", ".npz", ".gz"):
        return read_legacy(path)  # protocol 0/1 pickles have no magic bytes
    raise DatasetError(path, f"unrecognised file format (supported: {SUPPORTED_FORMATS})")


def _load_d4rl_name(name: str) -> Dataset:
    folder = d4rl_dir()
    path = folder / d4rl_file_name(name)
    if path.is_file():
        return read_d4rl(path)
    if minari_local_exists(name):
        return read_minari(name)
    bearl_name = name.rpartition("-v")[0].replace("_", "-")
    hint = ""
    if bearl_name in SUITE_NAMES:
        hint = (
            f". The bearl-generated equivalent is named '{bearl_name}' "
            f"(`bearl data make {bearl_name}`)"
        )
    raise DatasetError(
        name,
        f"D4RL file {path.name} not found in {folder}: put the file there (or set "
        f"D4RL_DATASET_DIR to its folder); bearl does not download D4RL files{hint}",
    )


def _load_suite(name: str) -> Dataset:
    try:
        suite = importlib.import_module("bearl.data.suite")
    except ModuleNotFoundError as e:
        if e.name != "bearl.data.suite":
            raise
        suite = None
    load_or_make = getattr(suite, "load_or_make", None)
    if load_or_make is None:
        raise DatasetError(name, "bearl suite datasets are not available yet")
    return load_or_make(name)


def _apply_env(ds: Dataset, env: str) -> None:
    """Check the widths against ``env``'s spaces; fill in the env name and reference scores."""
    env_id = resolve_env_id(env)
    gym_env = make_env(env)
    try:
        ds.check_spaces(gym_env.observation_space, gym_env.action_space, env_id)
    finally:
        gym_env.close()
    if ds.info.env_name is None:
        ds.info.env_name = env_id
    if ds.info.ref_min_score is None or ds.info.ref_max_score is None:
        ref = reference_scores(env_id)
        if ref is not None:
            ds.info.ref_min_score, ds.info.ref_max_score = ref
