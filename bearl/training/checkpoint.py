"""Checkpoints: written atomically (temporary file + rename), read without executing code."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bearl.errors import CheckpointError, DiskFull, one_line
from bearl.files import write_atomic

FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop touches (torch CPU/CUDA, numpy, python)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": list(_np_state()),
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _np_state() -> tuple:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)


SNAPSHOTS = "snapshots"  # the run folder's subfolder of policy snapshots


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    """``RUN/snapshots/step_NNNNNNN.pt``: zero-padded, so that names sort by step."""
    return Path(run_dir) / SNAPSHOTS / f"step_{int(step):07d}.pt"


def snapshot_steps(run_dir: str | Path) -> list[int]:
    """The steps of the run's snapshots, in order."""
    folder = Path(run_dir) / SNAPSHOTS
    steps = []
    for p in folder.glob("step_*.pt") if folder.is_dir() else ():
        tail = p.stem.removeprefix("step_")
        if tail.isdigit():
            steps.append(int(tail))
    return sorted(steps)


def save_snapshot(run_dir: Path, algo: Any, step: int, config: dict[str, Any]) -> Path:
    """The policy at ``step``: what its action rule and its critic need (every network and the
    algorithm's extra state), without the optimizers, sampler or RNG of a checkpoint."""
    state = algo.state_dict()
    state.pop("optims", None)
    path = snapshot_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "algo": state,
        "step": int(step),
        "snapshot": True,
        "config": config,
        "spaces": {"obs_dim": algo.obs_dim, "act_dim": algo.act_dim},
    }
    save_checkpoint(path, payload)
    return path


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the previous file intact. A
    failed write removes its partial file and raises DiskFull (disk full) or CheckpointError.

    The checkpoint is serialised in memory and written by :func:`bearl.files.write_atomic`, so
    a full disk is reported as such (torch's own file writer turns it into a RuntimeError that
    does not say why)."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buf)
    try:
        write_atomic(path, buf.getbuffer())
    except DiskFull as e:
        raise DiskFull(path, e.reason, "; the previous one is kept") from None
    except OSError as e:
        raise CheckpointError(
            f"{path}: could not write the checkpoint ({e.strerror or one_line(e)}); the "
            "previous one is kept"
        ) from None


def check_free_space(
    run_dir: Path, modules: dict[str, torch.nn.Module], snapshots: int = 0
) -> None:
    """Fail before training if the disk holding ``run_dir`` cannot take the run's files: a
    checkpoint (parameters and Adam's two moments), ``best.pt`` and the temporary copy written
    while one is replaced, ``snapshots`` snapshots (parameters only), plus 16 MiB of logs."""
    params = sum(p.numel() * p.element_size() for m in modules.values() for p in m.parameters())
    need = 3 * 3 * params + snapshots * params + (16 << 20)
    where = Path(run_dir)
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < need:
        raise CheckpointError(
            f"{run_dir}: {free / 2**20:.0f} MiB free on its disk; this run needs about "
            f"{need / 2**20:.0f} MiB (checkpoint.pt, best.pt, a temporary copy, {snapshots} "
            "snapshots (--snapshot_every 0: none), logs)"
        )


def load_checkpoint(path: Path, algo: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no code execution)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means an unusable file
        raise CheckpointError(
            f"{path}: unreadable checkpoint, corrupt or holding more than tensors and plain "
            f"containers ({one_line(e)})"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a bearl checkpoint")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this bearl "
            f"reads ({FORMAT_VERSION}); upgrade bearl"
        )
    saved = payload.get("algo", {}).get("algo")
    if algo is not None and saved is not None and saved.lower() != algo.lower():
        raise CheckpointError(f"{path}: checkpoint is for {saved}, not {algo}")
    return payload
