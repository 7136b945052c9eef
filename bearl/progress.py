"""Progress bars: live on a terminal, a line every 30 s in logs (no flood of carriage returns)."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int | None = None, disable: bool = False, **kwargs: Any):
    """A tqdm bar on stderr; refreshes at most every 30 s when stderr is not a terminal."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.5 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", interactive)
    return tqdm(total=total, disable=disable, file=sys.stderr, **kwargs)
