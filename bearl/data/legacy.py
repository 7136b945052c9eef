"""The buffers of the original BEAR/BCQ code: a dict of numpy arrays in a pickle, gzip-compressed
pickle, ``.npy`` (``np.save`` of a dict) or ``.npz`` file.

Keys: ``observations, next_observations, actions, rewards, terminals`` and optionally
``timeouts`` (all False when absent); ``bootstrap_mask`` and other keys are ignored. Rewards and
terminals may be ``[N, 1]``.

Pickles are read with a restricted unpickler that can only rebuild numpy arrays, numpy
dtypes/scalars and plain containers: a pickle that names any other callable (``os.system``,
``builtins.eval``, a class of some module, ...) is refused before anything is called.

Size: a file declaring more than fits in memory is refused with one line
(:func:`bearl.data.dataset.check_memory`): an ``.npz`` before reading, by the headers of its
members. A pickle cannot be sized before it is unpickled (nor can a ``.npy``: it holds a pickled
dict, and its header says only "one object"), so it is checked where it asks numpy for an array
by shape (see :class:`_SafeUnpickler`), and once more, by the arrays it gave, before they are
packed.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from bearl.data.dataset import (
    Dataset,
    DatasetInfo,
    check_data_file,
    check_declared_size,
    check_memory,
)
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
    """An unpickler that resolves only the names in ``_ALLOWED``.

    Memory: a pickle holds the bytes of its arrays in its own stream, so those cannot be sized
    before they are read (and a gzip stream may inflate far beyond the file); what a pickle can
    do that a file's size does not bound is ask numpy for an array by shape alone
    (``_reconstruct(ndarray, shape, dtype)``, ``ndarray(shape, dtype)``; numpy's own pickles
    ask for shape ``(0,)`` and then fill it), and those requests are checked against the memory
    available before numpy allocates. A byte string whose opcode declares more bytes than the
    stream holds fails in pickle itself ("not a readable pickle")."""

    def __init__(self, file: IO[bytes], src: str) -> None:
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays pickled by Python 2
        self.src = src
        self._guarded = {np.ndarray: self._ndarray, _multiarray._reconstruct: self._reconstruct}

    def find_class(self, module: str, name: str) -> Any:
        try:
            found = _ALLOWED[(module, name)]
        except KeyError:
            raise DatasetError(
                self.src,
                f"refusing to unpickle '{module}.{name}': only numpy arrays and plain "
                "containers are allowed",
            ) from None
        return self._guarded.get(found, found)

    def _ndarray(self, shape: Any, dtype: Any = float, buffer: Any = None, *args: Any) -> Any:
        """``numpy.ndarray(...)``, checking an allocation by shape first."""
        if buffer is None:
            self._check(shape, dtype)
        return np.ndarray(shape, dtype, buffer, *args)

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        """numpy's ``_reconstruct`` (``subtype`` is our stand-in for ndarray), checked first."""
        self._check(shape, dtype)
        if subtype is self._guarded[np.ndarray]:
            subtype = np.ndarray
        return _multiarray._reconstruct(subtype, shape, dtype)

    def _check(self, shape: Any, dtype: Any) -> None:
        try:
            dims = (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)
            dtype = np.dtype(dtype)
        except (TypeError, ValueError):
            return  # not a shape and dtype: numpy refuses it itself
        nbytes = math.prod(dims) * dtype.itemsize
        check_memory(self.src, dims[0] if dims else 1, nbytes, held_as=str(dtype))


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
    # the arrays are in memory; packing them takes as much again (as float32)
    fields = {k: d[k].shape for k in Dataset.FIELDS if isinstance(d.get(k), np.ndarray)}
    check_declared_size(src, fields)
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
        shape, _, dtype = _npy_header(f)
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
            check_declared_size(src, {key: _npz_shape(z, key) for key in z.files})
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


def _npz_shape(z: Any, key: str) -> tuple[int, ...]:
    """The shape an ``.npz`` member declares in its header (() for a member that is not an
    array): every member is read whole, so each counts."""
    name = key if key in z.zip.namelist() else f"{key}.npy"
    with z.zip.open(name) as f:
        try:
            return _npy_header(f)[0]
        except ValueError:  # not an array (numpy gives its bytes), or a bad header (read says)
            return ()


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` stream ``f``, which is left at its
    data; ValueError if it is not one."""
    version = npy_format.read_magic(f)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(f)
    return npy_format.read_array_header_2_0(f)


def _kind(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"a {obj.dtype} array of shape {obj.shape}"
    return f"a {type(obj).__name__}"
