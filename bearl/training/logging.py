"""Run logs that viskit reads: progress.csv, variant.json, params.json, debug.log.

Optional TensorBoard and Weights & Biases mirrors receive the same rows.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from bearl.errors import BearlError
from bearl.files import append, write_atomic


class RunLogger:
    """Writes one ``progress.csv`` row per evaluation and a human-readable ``debug.log``.

    The csv columns are fixed by the first row (viskit needs one header); later keys that
    were not in it are added to ``debug.log`` only.
    """

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool = False,
        wandb_project: str | None = None,
        wandb_config: dict | None = None,
        resume: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.progress_path = self.run_dir / "progress.csv"
        self.columns: list[str] | None = None
        if resume and self.progress_path.exists():
            with open(self.progress_path, newline="") as f:
                header = next(csv.reader(f), None)
            self.columns = header or None
        self.log = logging.getLogger(f"bearl.run.{self.run_dir}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        for old in list(self.log.handlers):  # left by an earlier run of this folder that failed
            self.log.removeHandler(old)
        handler = _AppendHandler(self.run_dir / "debug.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.log.addHandler(handler)
        self._handler = handler
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise BearlError(
                    "--tensorboard needs: pip install 'bearl[tensorboard]' "
                    "(from a clone: pip install -e '.[tensorboard]')"
                ) from None
            self.tb = SummaryWriter(str(self.run_dir / "tb"))
        self.wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise BearlError(
                    "--wandb needs: pip install 'bearl[wandb]' "
                    "(from a clone: pip install -e '.[wandb]')"
                ) from None
            self.wandb = wandb.init(
                project=wandb_project,
                config=wandb_config,
                dir=str(self.run_dir),
                name=self.run_dir.name,
            )

    def write_variant(self, variant: dict[str, Any]) -> None:
        """``variant.json`` (viskit) and ``params.json`` (same content)."""
        text = json.dumps(variant, indent=2, sort_keys=True, default=str)
        for name in ("variant.json", "params.json"):
            write_atomic(self.run_dir / name, text.encode())

    def row(self, values: dict[str, Any], step: int) -> None:
        """Append a progress row (and mirror it). The row is written whole or not at all: a
        full disk (DiskFull) never leaves half a row in ``progress.csv``."""
        if self.columns is None:  # a new file: the header and the first row
            columns = list(values)
            write_atomic(self.progress_path, _csv_lines(columns, _cells(values, columns)))
            self.columns = columns
        else:
            append(self.progress_path, _csv_lines(_cells(values, self.columns)))
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, int | float) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(
                {k: v for k, v in values.items() if isinstance(v, int | float)}, step=step
            )

    def info(self, message: str) -> None:
        self.log.info(message)

    def close(self) -> None:
        self.log.removeHandler(self._handler)
        self._handler.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def truncate_progress(path: Path, last_step: int, step_column: str = "Step") -> None:
    """Drop progress rows logged after ``last_step`` (a resumed run logs them again), and a
    last line cut short (a crash while it was written), which could read as an earlier step:
    a row ``60,...`` cut to ``6``."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    rows = list(csv.reader(lines))
    keep = rows[:1]
    if rows:
        i = rows[0].index(step_column)
        keep += [r for r in rows[1:] if len(r) == len(rows[0]) and _step(r[i]) <= last_step]
    write_atomic(path, _csv_lines(*keep))


class _AppendHandler(logging.Handler):
    """``debug.log``: each record appended whole (:func:`bearl.files.append`); a failed write
    raises (DiskFull) instead of logging's traceback on stderr."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        append(self.path, (self.format(record) + "\n").encode())


def _cells(values: dict[str, Any], columns: list[str]) -> list[Any]:
    return [_fmt(values.get(c)) for c in columns]


def _csv_lines(*rows: list[Any]) -> bytes:
    """Rows as csv lines (the csv module's ``\\r\\n`` ends)."""
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


def _step(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf  # not a step: dropped


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(round(v, 6)) if math.isfinite(v) else str(v)
    return v
