"""Minari datasets: read them into a :class:`Dataset`, write a Dataset as one, through minari.

A Minari episode of T steps has T+1 observations (the reset observation and every next one).
Reading maps ``obs[:-1]`` to observations, ``obs[1:]`` to next observations, terminations to
terminals and ``truncations & ~terminations`` to timeouts; the last step of an episode that
neither terminated nor was truncated is marked as a timeout too, so that episodes never merge.

Datasets live under ``$MINARI_DATASETS_PATH`` (minari's default: ``~/.minari/datasets``), one
folder per id, e.g. ``mujoco/hopper/medium-v0/data/{main_data.hdf5, metadata.json}``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bearl.data.dataset import Dataset, DatasetInfo, check_declared_size
from bearl.envs import make_env, reference_scores
from bearl.errors import DatasetError, DatasetExists, one_line

ROOT_VAR = "MINARI_DATASETS_PATH"

# metadata.json keys kept in DatasetInfo.metadata
_KEPT_METADATA = (
    "policy_digest",
    "recipe_version",
    "dataset_id",
    "description",
    "algorithm_name",
    "author",
    "author_email",
    "code_permalink",
    "minari_version",
    "total_episodes",
    "total_steps",
)


def minari_root() -> Path:
    """Where minari keeps datasets: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    root = os.environ.get(ROOT_VAR)
    return Path(root) if root else Path.home() / ".minari" / "datasets"


def minari_local_exists(dataset_id: str) -> bool:
    """True if a dataset with this id is stored under :func:`minari_root` (no side effects)."""
    rel = Path(dataset_id)
    if rel.is_absolute() or ".." in rel.parts:
        return False
    return (minari_root() / rel / "data" / "metadata.json").is_file()


@contextmanager
def datasets_path(root: str | os.PathLike | None) -> Iterator[None]:
    """Temporarily point ``MINARI_DATASETS_PATH`` at ``root`` (no-op when None)."""
    if root is None:
        yield
        return
    old = os.environ.get(ROOT_VAR)
    os.environ[ROOT_VAR] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ROOT_VAR, None)
        else:
            os.environ[ROOT_VAR] = old


def read_minari(
    id_or_folder: str | os.PathLike,
    download: bool = False,
    root: str | os.PathLike | None = None,
) -> Dataset:
    """Read a Minari dataset given its id or its folder.

    Args:
        id_or_folder: a dataset id (``mujoco/hopper/medium-v0``), the dataset's folder (the one
            holding ``data/metadata.json``) or its ``data`` folder.
        download: let minari download an id that is not stored locally.
        root: datasets root to use instead of ``$MINARI_DATASETS_PATH`` for an id.

    Raises:
        DatasetError: naming the id or folder (and the episode) when the dataset is missing,
            unreadable or inconsistent.
    """
    import minari

    folder = Path(id_or_folder).expanduser()
    if folder.is_dir():
        src = str(folder)
        data_dir = folder / "data" if (folder / "data" / "metadata.json").is_file() else folder
        if not (data_dir / "metadata.json").is_file():
            raise DatasetError(src, "not a Minari dataset folder (no data/metadata.json)")
        _check_files(data_dir)
        try:
            mds = minari.MinariDataset(str(data_dir))
        except Exception as e:  # minari raises many kinds on a bad folder
            raise DatasetError(src, f"not a readable Minari dataset ({one_line(e)})") from None
        return _read_episodes(mds, src, data_dir)

    dataset_id = str(id_or_folder)
    src = f"minari:{dataset_id}"
    with datasets_path(root):
        where = _describe_root()
        if not download and not minari_local_exists(dataset_id):
            raise DatasetError(
                src,
                f"Minari dataset not found locally; looked in {where}. Download it with "
                f"`minari download {dataset_id}` (minari's command line; from Python: "
                "download=True), or set MINARI_DATASETS_PATH to where it is stored",
            )
        data_dir = minari_root() / dataset_id / "data"
        if minari_local_exists(dataset_id):
            _check_files(data_dir)
        try:
            mds = minari.load_dataset(dataset_id, download=download)
        except Exception as e:  # download or read errors
            raise DatasetError(
                src, f"could not load the Minari dataset from {where} ({one_line(e)})"
            ) from None
    return _read_episodes(mds, src, data_dir)


def _check_files(data_dir: Path) -> None:
    """Name the broken file of a Minari dataset before minari reads it (minari's own errors
    name none): ``metadata.json`` must be a JSON object with a ``data_format``, and an hdf5
    dataset's ``main_data.hdf5`` a readable HDF5 file."""
    import h5py

    meta_path = data_dir / "metadata.json"
    try:
        meta = json.loads(meta_path.read_bytes())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise DatasetError(meta_path, f"not valid JSON ({one_line(e)})") from None
    if not isinstance(meta, dict):
        raise DatasetError(meta_path, f"not a JSON object of metadata (a {type(meta).__name__})")
    if "data_format" not in meta:
        raise DatasetError(meta_path, "missing (every Minari dataset records it)", "data_format")
    if meta["data_format"] == "hdf5":
        main = data_dir / "main_data.hdf5"
        if not main.is_file():
            raise DatasetError(main, "missing (metadata.json says the data is in it)")
        try:
            with h5py.File(main, "r"):
                pass
        except OSError:
            raise DatasetError(main, "not a readable HDF5 file (truncated or corrupt?)") from None


def _read_episodes(mds: Any, src: str, data_dir: Path) -> Dataset:
    """:func:`_to_dataset`, naming the data file when an episode cannot be read from it."""
    try:
        _check_size(mds, data_dir)
        return _to_dataset(mds, src)
    except OSError as e:  # h5py: a damaged episode group
        main = data_dir / "main_data.hdf5"
        where = main if main.is_file() else data_dir
        raise DatasetError(where, f"an episode could not be read ({one_line(e)})") from None


def _check_size(mds: Any, data_dir: Path) -> None:
    """Refuse a dataset that declares more steps than fit in memory, before any episode is read:
    first the steps ``metadata.json`` counts (:func:`_to_dataset` allocates that many rows) with
    the widths of the recorded spaces, then, for an hdf5 dataset, the steps its episodes declare
    in ``main_data.hdf5`` (minari reads every field of an episode whole, infos included, and a
    few KB of chunked, compressed, never written fields can declare billions of rows). The
    arrow and parquet backends keep each episode in files of its own that minari reads through
    pyarrow; for them the metadata's count is what is checked."""
    total = int(mds.total_steps or 0)
    obs_w, act_w = _space_width(mds.observation_space), _space_width(mds.action_space)
    sizes = {"observations": (total, obs_w), "actions": (total, act_w)}
    check_declared_size(data_dir / "metadata.json", sizes)
    main = data_dir / "main_data.hdf5"
    if getattr(mds.storage, "FORMAT", None) == "hdf5" and main.is_file():
        declared = _declared_steps(main)
        if declared is not None:
            steps, obs_w, act_w = declared
            check_declared_size(main, {"observations": (steps, obs_w), "actions": (steps, act_w)})


def _space_width(space: Any) -> int:
    shape = getattr(space, "shape", None)
    return math.prod(shape) if isinstance(shape, tuple) else 1


def _declared_steps(main: Path) -> tuple[int, int, int] | None:
    """``(steps, widest observation, widest action)`` that the episodes of a Minari
    ``main_data.hdf5`` declare, from the headers of every field of every episode (an episode's
    steps: the most rows any of its fields has, less one for observations and infos, which hold
    T+1). Nothing is read. HDF5's low-level API: several times faster than h5py's objects over
    thousands of episodes. None where an object cannot be opened (reading it names that)."""
    import h5py

    def children(group: Any) -> Iterator[tuple[bytes, Any]]:
        names: list[bytes] = []
        group.links.iterate(names.append)
        for name in names:
            yield name, h5py.h5o.open(group, name)

    def shapes(group: Any, prefix: bytes = b"") -> Iterator[tuple[bytes, tuple[int, ...]]]:
        for name, obj in children(group):
            if isinstance(obj, h5py.h5d.DatasetID) and obj.shape:
                yield prefix + name, obj.shape
            elif isinstance(obj, h5py.h5g.GroupID):
                yield from shapes(obj, prefix + name + b"/")

    steps = obs_w = act_w = 0
    try:
        with h5py.File(main, "r") as f:
            for _, episode in children(f.id):
                if not isinstance(episode, h5py.h5g.GroupID):
                    continue
                rows = 0
                for name, shape in shapes(episode):
                    t_plus_1 = name == b"observations" or name.startswith(b"infos/")
                    rows = max(rows, shape[0] - 1 if t_plus_1 else shape[0])
                    if name == b"observations":
                        obs_w = max(obs_w, math.prod(shape[1:]))
                    elif name == b"actions":
                        act_w = max(act_w, math.prod(shape[1:]))
                steps += rows
    except (OSError, KeyError, RuntimeError, ValueError):
        return None
    return steps, obs_w, act_w


def write_minari(
    ds: Dataset,
    dataset_id: str,
    description: str | None = None,
    *,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
    algorithm_name: str | None = None,
    author: str = "bearl",
    code_permalink: str = "bearl",
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``ds`` as the Minari dataset ``dataset_id`` with minari's own API; return its folder.

    Episodes split at terminals and timeouts, and wherever ``next_observations[t]`` differs from
    ``observations[t+1]`` (written as a truncation). The env id is recorded when
    ``ds.info.env_name`` is set (its spaces must fit the data); otherwise unbounded float32 Box
    spaces of the data's widths are recorded.

    Args:
        root: datasets root to write under instead of ``$MINARI_DATASETS_PATH``.
        overwrite: replace an existing dataset with the same id.
        extra_metadata: more ``metadata.json`` entries (bearl's suite records the digest of
            the policies that made the data, ``policy_digest``, and its rollout recipe,
            ``recipe_version``).

    Raises:
        DatasetError: if the id is malformed; DatasetExists if it exists already (without
            ``overwrite``).
    """
    import gymnasium as gym
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id

    src = f"minari:{dataset_id}"
    try:
        parse_dataset_id(dataset_id)
    except ValueError as e:
        raise DatasetError(src, str(e)) from None

    with datasets_path(root):
        folder = minari_root() / dataset_id
        if folder.exists():
            if not overwrite:
                raise DatasetExists(src, folder)
            shutil.rmtree(folder)

        env = None
        spaces: dict[str, Any] = {
            "observation_space": gym.spaces.Box(-np.inf, np.inf, (ds.obs_dim,), np.float32),
            "action_space": gym.spaces.Box(-np.inf, np.inf, (ds.act_dim,), np.float32),
        }
        if ds.info.env_name:
            env = make_env(ds.info.env_name)
            ds.check_spaces(env.observation_space, env.action_space, env.spec.id)
            spaces = {}
        lo, hi = ds.info.ref_min_score, ds.info.ref_max_score
        refs = {"ref_min_score": lo, "ref_max_score": hi} if None not in (lo, hi) else {}
        if algorithm_name is None:
            algorithm_name = str(ds.info.metadata.get("algorithm_name", "unknown"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # minari's missing-field nags
                mds = minari.create_dataset_from_buffers(
                    dataset_id,
                    _episode_buffers(ds),
                    env=env,
                    algorithm_name=algorithm_name,
                    author=author,
                    code_permalink=code_permalink,
                    description=description or f"written by bearl from {ds.info.source}",
                    data_format="hdf5",
                    **spaces,
                    **refs,
                )
        finally:
            if env is not None:
                env.close()
        if env is None and refs:  # minari records reference scores only with an env
            mds.storage.update_metadata(refs)
        if extra_metadata:
            mds.storage.update_metadata(extra_metadata)
    return folder


def _episode_buffers(ds: Dataset) -> list[Any]:
    """One minari EpisodeBuffer per episode (T+1 observations, T of everything else)."""
    from minari.data_collector import EpisodeBuffer

    obs, next_obs = ds.observations, ds.next_observations
    ends = ds.terminals | ds.timeouts
    ends[:-1] |= np.any(next_obs[:-1] != obs[1:], axis=1)
    ends[-1] = True
    truncations = ends & ~ds.terminals
    last = np.flatnonzero(ends)
    first = np.concatenate([[0], last[:-1] + 1])
    buffers = []
    for i, (s, e) in enumerate(zip(first, last + 1, strict=True)):
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=np.concatenate([obs[s:e], next_obs[e - 1 : e]]),
                actions=ds.actions[s:e].copy(),
                rewards=ds.rewards[s:e].copy(),
                terminations=ds.terminals[s:e].copy(),
                truncations=truncations[s:e].copy(),
                infos={},
            )
        )
    return buffers


def _to_dataset(mds: Any, src: str) -> Dataset:
    """Read the episodes of a MinariDataset straight into one packed float32 matrix (the data
    is held once, plus one episode at a time), checking every episode's lengths and widths."""
    total = int(mds.total_steps or 0)
    packed: np.ndarray | None = None
    terminals, timeouts = np.zeros(total, bool), np.zeros(total, bool)
    row = obs_dim = act_dim = 0
    for ep in mds.iterate_episodes():
        obs, actions = ep.observations, ep.actions
        if not isinstance(obs, np.ndarray) or not isinstance(actions, np.ndarray):
            raise DatasetError(src, f"episode {ep.id}: dict/tuple spaces are not supported")
        t = len(actions)
        if len(obs) != t + 1:
            raise DatasetError(
                src,
                f"episode {ep.id} has {len(obs)} observations for {t} actions (expected {t + 1})",
                "observations",
            )
        rewards = np.asarray(ep.rewards)
        for key, values in (
            ("rewards", rewards),
            ("terminations", ep.terminations),
            ("truncations", ep.truncations),
        ):
            if np.size(values) != t:
                raise DatasetError(
                    src, f"episode {ep.id} has {np.size(values)} {key} for {t} steps", key
                )
        if t == 0:
            continue
        if obs.ndim > 2 or actions.ndim > 2:
            raise DatasetError(src, f"episode {ep.id}: only flat (vector) spaces are supported")
        for key, values in (("observations", obs), ("actions", actions), ("rewards", rewards)):
            if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
                raise DatasetError(src, f"episode {ep.id} has dtype {values.dtype}", key)
        obs, actions = obs.reshape(t + 1, -1), actions.reshape(t, -1)
        if packed is None:
            obs_dim, act_dim = obs.shape[1], actions.shape[1]
            packed = np.empty((total, 2 * obs_dim + act_dim + 1), np.float32)
        if (obs.shape[1], actions.shape[1]) != (obs_dim, act_dim):
            raise DatasetError(
                src,
                f"episode {ep.id} has observation/action widths {obs.shape[1]}/"
                f"{actions.shape[1]}, earlier episodes {obs_dim}/{act_dim}",
            )
        if row + t > total:
            raise DatasetError(src, f"the episodes hold more steps than total_steps ({total})")
        rows = slice(row, row + t)
        packed[rows, :obs_dim] = obs[:-1]
        packed[rows, obs_dim : obs_dim + act_dim] = actions
        packed[rows, obs_dim + act_dim] = rewards.reshape(t)
        packed[rows, obs_dim + act_dim + 1 :] = obs[1:]
        terminals[rows] = np.asarray(ep.terminations, dtype=bool).reshape(t)
        timeouts[rows] = np.asarray(ep.truncations, dtype=bool).reshape(t) & ~terminals[rows]
        timeouts[row + t - 1] = not terminals[row + t - 1]  # the episode ends here in any case
        row += t
    if packed is None:
        raise DatasetError(src, "the dataset is empty (0 transitions)")
    if row < total:  # metadata counted more steps than the episodes hold
        packed, terminals, timeouts = packed[:row], terminals[:row], timeouts[:row]

    meta = dict(mds.storage.metadata)
    env_name = mds.env_spec.id if mds.env_spec is not None else None
    lo, hi = meta.get("ref_min_score"), meta.get("ref_max_score")
    ref = reference_scores(env_name) if (lo is None or hi is None) else None
    if ref is not None:
        lo, hi = ref
    info = DatasetInfo(
        source=src,
        env_name=env_name,
        ref_min_score=float(lo) if lo is not None else None,
        ref_max_score=float(hi) if hi is not None else None,
        metadata={k: _plain(meta[k]) for k in _KEPT_METADATA if k in meta},
    )
    return Dataset.from_packed(packed, obs_dim, act_dim, terminals, timeouts, info=info)


def _describe_root() -> str:
    if os.environ.get(ROOT_VAR):
        return f"{minari_root()} (from MINARI_DATASETS_PATH)"
    return f"{minari_root()} (minari's default; set MINARI_DATASETS_PATH to change it)"


def _plain(value: Any) -> Any:
    """JSON-like plain values (sets become sorted lists)."""
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value
