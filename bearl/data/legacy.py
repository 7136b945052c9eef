"""The buffers of the original BEAR/BCQ code: a dict of numpy arrays in a pickle, gzip-compressed
pickle, ``.npy`` (``np.save`` of a dict) or ``.npz`` file.

Keys: ``observations, next_observations, actions, rewards, terminals`` and optionally
``timeouts`` (all False when absent); ``bootstrap_mask`` and other keys are ignored. Rewards and
terminals may be ``[N, 1]``.

Pickles are read with a restricted unpickler that can only rebuild numpy arrays, numpy
dtypes/scalars and plain containers: a pickle that names any other callable (``os.system``,
``builtins.eval``, a class of some module, ...) is refused before anything is called.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from bearl.data.dataset import Dataset, DatasetInfo, check_data_file
from bearl.envs import reference_scores
from bearl.errors import DatasetError, one_line

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

GZIP_MAGIC = b"\x1f\x8b"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
REQUIRED_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol 0-2 pickles use to rebuild bytes."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin1 text can be turned into bytes")
    return obj.encode("latin1", errors)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = _multiarray.scalar
    if hasattr(_numeric, "_frombuffer"):
        _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _numeric._frombuffer
for _builtins in ("builtins", "__builtin__"):
    for _type in (set, frozenset, bytearray, complex):
        _ALLOWED[(_builtins, _type.__name__)] = _type


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in ``_ALLOWED``."""

    def __init__(self, file: IO[bytes], src: str) -> None:
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
        self.src = src

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DatasetError(
                self.src,
                f"refusing to unpickle '{module}.{name}': only numpy arrays and plain "
                "containers are allowed",
            ) from None


def read_legacy(path: str | os.PathLike) -> Dataset:
    """Read an original-style buffer file; the format is detected from its first bytes.

    Raises:
        DatasetError: naming the file (and the field) when it is empty, unreadable, tries to
            unpickle anything but arrays, or lacks a field.
    """
    path, src = check_data_file(path)
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(ZIP_MAGIC):
        return _to_dataset(_read_npz(path, src), src)
    opener = gzip.open if magic.startswith(GZIP_MAGIC) else open
    try:
        with opener(path, "rb") as f:
            inner = f.read(8)
        with opener(path, "rb") as f:
            obj = _load_npy(f, src) if inner.startswith(NPY_MAGIC) else _safe_load(f, src)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DatasetError(src, f"not a readable file (truncated or corrupt?): {e}") from None
    return _to_dataset(obj, src)


def _safe_load(f: IO[bytes], src: str) -> Any:
    """Unpickle ``f`` allowing only numpy arrays, dtypes, scalars and plain containers."""
    try:
        return _SafeUnpickler(f, src).load()
    except DatasetError:
        raise
    except (OSError, EOFError, zlib.error):
        raise
    except Exception as e:  # a corrupt pickle can raise almost anything
        raise DatasetError(src, f"not a readable pickle ({one_line(e)})") from None


def _to_dataset(obj: Any, src: str) -> Dataset:
    """A Dataset from a dict of arrays with the original buffer's keys."""
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.size == 1:
        obj = obj.item()  # np.save of a dict
    if not isinstance(obj, dict):
        raise DatasetError(
            src, f"expected a dict of arrays ({', '.join(REQUIRED_KEYS)}), got {_kind(obj)}"
        )
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    for key in REQUIRED_KEYS:
        if key not in d:
            keys = ", ".join(sorted(str(k) for k in d))
            raise DatasetError(src, f"missing (the file has: {keys})", key)
    env_name = d.get("env_name")
    env_name = str(env_name) if isinstance(env_name, (str, np.str_)) else None
    ref = reference_scores(env_name)
    info = DatasetInfo(
        source=src,
        env_name=env_name,
        ref_min_score=ref[0] if ref else None,
        ref_max_score=ref[1] if ref else None,
    )
    return Dataset(
        d["observations"],
        d["actions"],
        d["rewards"],
        d["next_observations"],
        d["terminals"],
        d.get("timeouts"),
        info,
    )


def _load_npy(f: IO[bytes], src: str) -> Any:
    """The object stored in a ``.npy`` stream; object arrays go through the safe unpickler."""
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(f)
        else:
            shape, _, dtype = npy_format.read_array_header_2_0(f)
    except ValueError as e:
        raise DatasetError(src, f"not a readable .npy file ({one_line(e)})") from None
    if not dtype.hasobject:
        raise DatasetError(
            src, f"holds one {dtype} array of shape {shape}; expected a dict of arrays"
        )
    return _safe_load(f, src)


def _read_npz(path: Path, src: str) -> dict[str, np.ndarray]:
    """The members of an ``.npz`` file; members holding Python objects are refused."""
    out = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                try:
                    out[key] = z[key]
                except ValueError as e:
                    if "allow_pickle" not in str(e):
                        raise
                    raise DatasetError(
                        src, "holds pickled Python objects; refusing to load them", key
                    ) from None
    except DatasetError:
        raise
    except Exception as e:  # BadZipFile, truncated members, bad headers
        raise DatasetError(src, f"not a readable .npz file ({one_line(e)})") from None
    return out


def _kind(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"a {obj.dtype} array of shape {obj.shape}"
    return f"a {type(obj).__name__}"
