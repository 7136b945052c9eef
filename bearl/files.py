"""Writing run files so that a full disk never leaves a broken one: a whole file is written
atomically (temporary file + rename), an append that fails is undone, and a full disk is one
:class:`~bearl.errors.DiskFull` error naming the file."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import BinaryIO

from bearl.errors import DiskFull

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
