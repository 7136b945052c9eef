"""Names of things on disk and values read back from them, shared by every layer: dataset
labels, folder-name slugs, a JSON file that may be missing or half-written, an integer that
may be a CSV float."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

DATA_SUFFIXES = {".hdf5", ".h5", ".pkl", ".pickle", ".npz", ".npy", ".gz"}


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
