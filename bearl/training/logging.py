"""Run logs that viskit reads: progress.csv, variant.json, params.json, debug.log.

Optional TensorBoard and Weights & Biases mirrors receive the same rows.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from bearl.errors import BearlError


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
        handler = logging.FileHandler(self.run_dir / "debug.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.log.addHandler(handler)
        self._handler = handler
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise BearlError("--tensorboard needs: pip install 'bearl[tensorboard]'") from None
            self.tb = SummaryWriter(str(self.run_dir / "tb"))
        self.wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise BearlError("--wandb needs: pip install 'bearl[wandb]'") from None
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
            (self.run_dir / name).write_text(text)

    def row(self, values: dict[str, Any], step: int) -> None:
        """Append a progress row (and mirror it)."""
        if self.columns is None:
            self.columns = list(values)
            with open(self.progress_path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        with open(self.progress_path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(values.get(c)) for c in self.columns])
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
    """Drop progress rows logged after ``last_step`` (a resumed run logs them again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    i = rows[0].index(step_column)
    keep = [rows[0]] + [r for r in rows[1:] if int(float(r[i])) <= last_step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(keep)


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(round(v, 6)) if math.isfinite(v) else str(v)
    return v
