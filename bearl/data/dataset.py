"""The one in-memory representation of a dataset of transitions, and minibatch sampling.

A :class:`Dataset` holds ``observations, actions, rewards, next_observations, terminals,
timeouts`` with one row per transition. ``terminals[i]`` means the environment terminated after
transition i (no bootstrapping from ``next_observations[i]``); ``timeouts[i]`` means the episode
was cut there by a time limit or by the end of the data (bootstrapping continues). A row is
never both: termination wins.

Memory: the float fields are column views of ONE float32 matrix
``[observations | actions | rewards | next_observations]``. On CPU the sampler wraps that
matrix with ``torch.from_numpy`` (no copy) and a minibatch is one row gather.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from bearl.errors import DatasetError, one_line


class Batch(NamedTuple):
    """A minibatch of transitions as tensors on the sampler's device."""

    observations: torch.Tensor  # [B, obs_dim]
    actions: torch.Tensor  # [B, act_dim]
    rewards: torch.Tensor  # [B]
    next_observations: torch.Tensor  # [B, obs_dim]
    terminals: torch.Tensor  # [B] float, 1.0 where the env terminated (no bootstrap)


@dataclass
class DatasetInfo:
    """Where a dataset came from and what it is about."""

    source: str = "<memory>"
    """Path or id it was loaded from."""
    env_name: str | None = None
    """Environment the data was collected in (gymnasium id), when known."""
    ref_min_score: float | None = None
    """Return of a random policy, for normalized scores (dataset's own or D4RL's)."""
    ref_max_score: float | None = None
    """Return of an expert policy, for normalized scores."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Anything else the source said (generation settings, versions, description, ...)."""


class Dataset:
    """Transitions of a fixed dataset, validated at construction.

    Args:
        observations: ``[N, obs_dim]``.
        actions: ``[N, act_dim]``.
        rewards: ``[N]``.
        next_observations: ``[N, obs_dim]``.
        terminals: ``[N]`` bool: the env terminated after this transition.
        timeouts: ``[N]`` bool: the episode was cut after this transition. The last row always
            ends an episode (it is marked as a timeout if it is not terminal).
        info: provenance and reference scores.

    Raises:
        DatasetError: on missing fields, mismatched lengths, NaN/Inf, or an empty dataset.
    """

    FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")

    def __init__(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminals: np.ndarray,
        timeouts: np.ndarray | None = None,
        info: DatasetInfo | None = None,
    ) -> None:
        self.info = info or DatasetInfo()
        src = self.info.source
        arrays = {
            "observations": observations,
            "actions": actions,
            "rewards": rewards,
            "next_observations": next_observations,
            "terminals": terminals,
            "timeouts": np.zeros(len(rewards), bool) if timeouts is None else timeouts,
        }
        arrays = {k: _as_array(src, k, v) for k, v in arrays.items()}
        n = len(arrays["rewards"])
        if n == 0:
            raise DatasetError(src, "the dataset is empty (0 transitions)")
        for k, want in (("observations", 2), ("actions", 2), ("next_observations", 2)):
            a = arrays[k]
            if a.ndim == 1:
                arrays[k] = a = a[:, None]
            if a.ndim != want:
                raise DatasetError(src, f"expected a 2-D array [N, dim], got shape {a.shape}", k)
        for k in ("rewards", "terminals", "timeouts"):
            a = arrays[k]
            if a.ndim == 2 and a.shape[1] == 1:
                arrays[k] = a = a[:, 0]
            if a.ndim != 1:
                raise DatasetError(src, f"expected a 1-D array [N], got shape {a.shape}", k)
        for k, a in arrays.items():
            if len(a) != n:
                raise DatasetError(src, f"has {len(a)} rows but 'rewards' has {n}", k)
        if arrays["observations"].shape[1] != arrays["next_observations"].shape[1]:
            raise DatasetError(
                src,
                f"width {arrays['next_observations'].shape[1]} differs from observations' "
                f"{arrays['observations'].shape[1]}",
                "next_observations",
            )
        for k in ("observations", "actions", "rewards", "next_observations"):
            _check_finite(src, k, arrays[k])

        obs_dim = arrays["observations"].shape[1]
        act_dim = arrays["actions"].shape[1]
        # one float32 matrix, fields are views of it (see module docstring)
        packed = np.empty((n, 2 * obs_dim + act_dim + 1), dtype=np.float32)
        packed[:, :obs_dim] = arrays["observations"]
        packed[:, obs_dim : obs_dim + act_dim] = arrays["actions"]
        packed[:, obs_dim + act_dim] = arrays["rewards"]
        packed[:, obs_dim + act_dim + 1 :] = arrays["next_observations"]
        self._packed = packed
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self._set_flags(src, arrays["terminals"], arrays["timeouts"])

    def _set_flags(self, src: str, terminals: np.ndarray, timeouts: np.ndarray) -> None:
        """Episode flags as bool; a terminal row is never also a timeout."""
        self.terminals = _as_bool(src, "terminals", terminals)
        self.timeouts = _as_bool(src, "timeouts", timeouts) & ~self.terminals
        if not (self.terminals[-1] or self.timeouts[-1]):
            self.timeouts[-1] = True  # the end of the data cuts the last episode

    @classmethod
    def from_packed(
        cls,
        packed: np.ndarray,
        obs_dim: int,
        act_dim: int,
        terminals: np.ndarray,
        timeouts: np.ndarray,
        info: DatasetInfo | None = None,
    ) -> Dataset:
        """A Dataset that takes ownership of an already packed float32 matrix
        ``[observations | actions | rewards | next_observations]`` without copying it (loaders
        read files straight into it). Validated like the constructor."""
        self = cls.__new__(cls)
        self.info = info or DatasetInfo()
        src = self.info.source
        n = len(packed)
        if packed.dtype != np.float32 or packed.shape[1:] != (2 * obs_dim + act_dim + 1,):
            raise ValueError(f"packed matrix has dtype {packed.dtype}, shape {packed.shape}")
        if n == 0:
            raise DatasetError(src, "the dataset is empty (0 transitions)")
        self._packed, self.obs_dim, self.act_dim = packed, obs_dim, act_dim
        for name in ("observations", "actions", "rewards", "next_observations"):
            _check_finite(src, name, getattr(self, name))
        for name, flags in (("terminals", terminals), ("timeouts", timeouts)):
            if np.shape(flags) != (n,):
                raise DatasetError(src, f"has shape {np.shape(flags)}, expected ({n},)", name)
        self._set_flags(src, np.asarray(terminals), np.asarray(timeouts))
        return self

    # -- fields (views of the packed matrix) --------------------------------------------------
    @property
    def observations(self) -> np.ndarray:
        return self._packed[:, : self.obs_dim]

    @property
    def actions(self) -> np.ndarray:
        return self._packed[:, self.obs_dim : self.obs_dim + self.act_dim]

    @property
    def rewards(self) -> np.ndarray:
        return self._packed[:, self.obs_dim + self.act_dim]

    @property
    def next_observations(self) -> np.ndarray:
        return self._packed[:, self.obs_dim + self.act_dim + 1 :]

    def __len__(self) -> int:
        return len(self._packed)

    def __repr__(self) -> str:
        return (
            f"Dataset({len(self)} transitions, {self.num_episodes} episodes, "
            f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, env={self.info.env_name!r}, "
            f"source={self.info.source!r})"
        )

    # -- episodes ----------------------------------------------------------------------------
    @property
    def episode_ends(self) -> np.ndarray:
        """Index of the last transition of each episode (rows where terminal or timeout)."""
        return np.flatnonzero(self.terminals | self.timeouts)

    @property
    def episode_starts(self) -> np.ndarray:
        """Index of the first transition of each episode."""
        return np.concatenate([[0], self.episode_ends[:-1] + 1])

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts + 1

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode."""
        sums = np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)
        return sums

    def digest(self, names: tuple[str, ...] = FIELDS) -> str:
        """SHA-1 of the named arrays (default: all of them), their shapes and dtypes: equal for
        the same data wherever and however it was made or stored, so a run's ``params.json``
        shows whether two runs learned from the same transitions."""
        h = hashlib.sha1()
        for name in names:
            a = np.ascontiguousarray(getattr(self, name))
            h.update(f"{name}{a.shape}{a.dtype}".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def normalized(self, returns: np.ndarray | float) -> np.ndarray | None:
        """D4RL normalized score of ``returns`` with this dataset's reference scores, or None."""
        lo, hi = self.info.ref_min_score, self.info.ref_max_score
        if lo is None or hi is None:
            return None
        return 100.0 * (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)

    def subset(self, rows: np.ndarray | slice, source_suffix: str = "") -> Dataset:
        """A new Dataset of the given rows (copied)."""
        info = DatasetInfo(
            self.info.source + source_suffix,
            self.info.env_name,
            self.info.ref_min_score,
            self.info.ref_max_score,
            dict(self.info.metadata),
        )
        return Dataset(
            self.observations[rows],
            self.actions[rows],
            self.rewards[rows],
            self.next_observations[rows],
            self.terminals[rows],
            self.timeouts[rows],
            info,
        )

    def check_spaces(self, observation_space, action_space, env_name: str = "the env") -> None:
        """Raise DatasetError if the widths disagree with an environment's spaces, or actions
        lie outside its action bounds."""
        src = self.info.source
        obs_shape = getattr(observation_space, "shape", None)
        act_shape = getattr(action_space, "shape", None)
        if obs_shape is not None and int(np.prod(obs_shape)) != self.obs_dim:
            raise DatasetError(
                src, f"width {self.obs_dim} but {env_name} observes {obs_shape}", "observations"
            )
        if act_shape is not None and int(np.prod(act_shape)) != self.act_dim:
            raise DatasetError(
                src, f"width {self.act_dim} but {env_name} acts with {act_shape}", "actions"
            )
        low, high = getattr(action_space, "low", None), getattr(action_space, "high", None)
        if low is not None and high is not None:
            low, high = np.asarray(low).reshape(-1), np.asarray(high).reshape(-1)
            slack = 1e-4 * (high - low)  # float32 rounding of values written at the bound
            outside = ((self.actions < low - slack) | (self.actions > high + slack)).any(axis=1)
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise DatasetError(
                    src,
                    f"{int(outside.sum())} rows outside {env_name}'s action bounds "
                    f"[{low.min():g}, {high.max():g}] (first at row {i}: {self.actions[i]})",
                    "actions",
                )

    # -- sampling ----------------------------------------------------------------------------
    def sampler(
        self, batch_size: int, device: str | torch.device = "cpu", seed: int = 0
    ) -> Sampler:
        """A uniform minibatch sampler with the whole dataset as tensors on ``device``."""
        return Sampler(self, batch_size, device, seed)


class Sampler:
    """Uniform sampling with replacement: indices from a seeded torch generator, one gather.

    ``state_dict`` / ``load_state_dict`` save and restore the generator, so a resumed run
    draws the same minibatches as an uninterrupted one, on the same kind of device. A CPU
    generator (Mersenne Twister) and a CUDA one (Philox) hold different states and draw
    different streams, so a run moved between them cannot go on drawing the same minibatches:
    ``load_state_dict`` then reseeds the generator from the saved state (the same checkpoint
    always gives the same continuation) and says so.
    """

    def __init__(self, dataset: Dataset, batch_size: int, device: str | torch.device, seed: int):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.obs_dim, self.act_dim = dataset.obs_dim, dataset.act_dim
        data = torch.from_numpy(dataset._packed)  # shares memory with the dataset
        done = torch.from_numpy(dataset.terminals.astype(np.float32))
        self.data = data.to(self.device)
        self.done = done.to(self.device)
        self.n = len(dataset)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def sample(self) -> Batch:
        idx = torch.randint(
            self.n, (self.batch_size,), device=self.device, generator=self.generator
        )
        return self.rows(idx)

    def rows(self, idx: torch.Tensor) -> Batch:
        """The transitions at ``idx`` as a Batch."""
        rows = self.data.index_select(0, idx)
        s, a = self.obs_dim, self.act_dim
        return Batch(
            rows[:, :s],
            rows[:, s : s + a],
            rows[:, s + a],
            rows[:, s + a + 1 :],
            self.done.index_select(0, idx),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "device": self.device.type}

    def load_state_dict(self, state: dict[str, Any]) -> str | None:
        """Restore the generator. Returns None, or one line saying that the state came from
        another kind of device and the generator was reseeded from it instead."""
        saved = state["generator"]
        kind = state.get("device") or _generator_kind(saved)  # older checkpoints: by its size
        if kind == self.device.type:
            self.generator.set_state(saved)
            return None
        digest = hashlib.sha256(saved.cpu().numpy().tobytes()).digest()
        self.generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        return (
            f"the minibatch sampler was saved on {kind} and resumes on {self.device.type}, "
            "whose generator draws another stream: reseeded from the saved state, so the "
            "minibatches from here on differ from those of an uninterrupted run"
        )


def _generator_kind(state: torch.Tensor) -> str:
    """The kind of device a generator state of a checkpoint without ``device`` came from."""
    return "cpu" if state.numel() == torch.Generator().get_state().numel() else "cuda"


def _as_array(src: str, name: str, value: Any) -> np.ndarray:
    try:
        a = np.asarray(value)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(src, f"cannot be read as an array ({one_line(e)})", name) from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise DatasetError(src, f"has dtype {a.dtype}; expected numbers", name)
    return a


def _as_bool(src: str, name: str, a: np.ndarray) -> np.ndarray:
    if a.dtype != bool:
        bad = ~np.isin(a, (0, 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(src, f"must be 0/1 or bool; row {i} is {a[i]!r}", name)
    return a.astype(bool)


def _check_finite(src: str, name: str, a: np.ndarray) -> None:
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))
            raise DatasetError(
                src,
                f"{int(bad.sum())} NaN/Inf values in {len(rows)} rows (first at row {rows[0]})",
                name,
            )


def check_data_file(path: str | Path) -> tuple[Path, str]:
    """``(path, its name for errors)`` of a dataset file that exists and is not empty; else
    DatasetError naming it."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise DatasetError(src, "no such file")
    if path.stat().st_size == 0:
        raise DatasetError(src, "empty file")
    return path, src


def available_memory() -> int | None:
    """Bytes of memory a new allocation can have now: ``MemAvailable`` of ``/proc/meminfo`` on
    Linux, else free physical pages times the page size; None where neither is known."""
    # hand-written rather than psutil: no dependency for one number
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, page_size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not on this system (macOS, Windows)
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def held_nbytes(n: int, obs_dim: int, act_dim: int) -> int:
    """Bytes a :class:`Dataset` of ``n`` transitions holds: its float32 matrix
    ``[observations | actions | rewards | next_observations]`` and two bool flags per row."""
    return n * (4 * (2 * obs_dim + act_dim + 1) + 2)


def check_memory(src: object, transitions: int, nbytes: int, held_as: str = "float32") -> None:
    """DatasetError, one line naming ``src``, when ``nbytes`` (for ``transitions`` rows held as
    ``held_as``) exceed the memory available now; nothing where that is not known. Loaders call
    it with the sizes a file declares before reading its data, so that a file declaring more
    than fits says so instead of failing in numpy (or being killed) halfway through."""
    available = available_memory()
    if available is None or nbytes <= available:
        return
    raise DatasetError(
        src,
        f"declares {transitions:,} transitions ({_gib(nbytes)} GiB as {held_as}) but "
        f"{_gib(available)} GiB of memory is available; load it where more memory is free, or "
        "check the file (a damaged or hand-made file can declare more rows than it holds)",
    )


def check_declared_size(src: object, shapes: dict[str, tuple[int, ...]]) -> None:
    """:func:`check_memory` for the Dataset that fields of these declared shapes make, shapes
    given by field name (any of :attr:`Dataset.FIELDS`, other names count toward the rows only;
    missing or odd ones are left to the validation after reading). Rows: the most any field
    declares (each is read whole before lengths are compared); widths: those of observations
    (or next_observations) and actions. The need counted is what the Dataset will hold (floats
    as float32, flags as bool), not a loader's read buffers: a lower bound of the peak, so that
    no file that would fit is refused."""
    shapes = {k: tuple(int(d) for d in s) for k, s in shapes.items() if s}
    if not shapes:
        return
    n = max(s[0] for s in shapes.values())
    obs = shapes.get("observations") or shapes.get("next_observations") or (n,)
    act = shapes.get("actions") or (n,)
    check_memory(src, n, held_nbytes(n, math.prod(obs[1:]), math.prod(act[1:])))


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f}"
