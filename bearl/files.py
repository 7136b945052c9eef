"""Run files on disk, for every layer.

Writing them so that a full disk never leaves a broken one: a whole file is written atomically
(temporary file + rename), an append that fails is undone, and a full disk is one
:class:`~bearl.errors.DiskFull` error naming the file. Naming and reading them back: dataset
labels, folder-name slugs, a JSON file that may be missing or half-written, an integer that
may be a CSV float."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from bearl.errors import DiskFull

try:
    import fcntl
except ImportError:  # Windows: no locks
    fcntl = None

_FULL = {errno.ENOSPC, errno.EDQUOT}


def write_atomic(path: str | os.PathLike, data: bytes | memoryview, sync: bool = True) -> None:
    """Replace ``path`` by ``data``: a failed write (disk full, a crash) leaves the previous file
    as it was, and removes its temporary file. ``sync``: fsync before the rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb", buffering=0) as f:
            _write_all(f, data)
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _named(path, e) from None


def append(path: str | os.PathLike, data: bytes) -> None:
    """Add ``data`` at the end of ``path``, all or nothing: a failed write is cut off again, so
    the file never ends in half a line."""
    path = Path(path)
    try:
        with open(path, "ab", buffering=0) as f:
            start = os.fstat(f.fileno()).st_size
            try:
                _write_all(f, data)
            except OSError:
                with contextlib.suppress(OSError):
                    f.truncate(start)
                raise
    except OSError as e:
        raise _named(path, e) from None


def _write_all(f: BinaryIO, data: bytes | memoryview) -> None:
    """All of ``data`` to the unbuffered file ``f`` (a short write is continued)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[f.write(view) :]


def _named(path: Path, e: OSError) -> OSError | DiskFull:
    """DiskFull for a full disk (or quota); otherwise the OSError with the file's name."""
    reason = e.strerror or os.strerror(e.errno or 0)
    if e.errno in _FULL:
        return DiskFull(path, reason)
    return OSError(e.errno, reason, str(path))


# -- names and values read back ---------------------------------------------------------------
DATA_SUFFIXES = {".hdf5", ".h5", ".pkl", ".pickle", ".npz", ".npy", ".gz"}


@contextlib.contextmanager
def waiting_lock(path: str | os.PathLike, waiting: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (made if missing), waiting for it while
    another process holds it; ``waiting`` is printed once when it has to wait. For work that
    two processes must not do at once (two trainings making the same dataset). Without
    ``fcntl`` (Windows), where the lock file cannot be made (a read-only folder), or on a
    filesystem that refuses locks, it does not lock."""
    path = Path(path)
    fd = None
    if fcntl is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only place (datasets shared read-only): nothing to guard
            fd = None
    if fd is None:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem that cannot lock: go on without
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def home_relative(path: str | os.PathLike) -> str:
    """``path`` as ``~/...`` when it lies in the user's home (for logs that get committed: no
    machine's home folder in them), else as given."""
    p, home = Path(path), Path.home()
    return f"~/{p.relative_to(home)}" if p.is_absolute() and p.is_relative_to(home) else str(p)


def dataset_label(source: str) -> str:
    """A short name of a dataset source: ``hopper-medium`` stays, ``data/x.hdf5`` -> ``x.hdf5``,
    ``minari:mujoco/hopper/medium-v0`` -> ``mujoco/hopper/medium-v0``."""
    if source.startswith("minari:"):
        return source.split(":", 1)[1]
    if "/" in source or "\\" in source:
        return Path(source.replace("\\", "/")).name
    return source


def slug(text: Any) -> str:
    """``text`` as a piece of a folder name (lists/tuples joined with ``-``)."""
    if isinstance(text, list | tuple):
        text = "-".join(str(x) for x in text)
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-") or "_"


def dataset_slug(dataset: str) -> str:
    """A dataset source in a run folder's name: ``hopper-medium`` -> ``hopper-medium``;
    ``data/x.hdf5`` -> ``x``; ``minari:mujoco/hopper/medium-v0`` -> ``mujoco-hopper-medium-v0``."""
    label = dataset_label(dataset)
    return slug(Path(label).stem if Path(label).suffix.lower() in DATA_SUFFIXES else label)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, not (yet) valid JSON, or not an
    object (bearl's run files are objects)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def as_int(value: Any) -> int | None:
    """``value`` (an int, or a number as text such as ``"2000.0"`` from a CSV) as an int; None
    when it is no finite number."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None
