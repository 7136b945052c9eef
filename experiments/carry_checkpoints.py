"""Carry the checkpoints of unfinished runs over to the next session.

The project's machines hand a new session the work tree without its git-ignored files, and
checkpoints (``results/**/*.pt``) are ignored so that they are never committed: a 200k-step
run interrupted by the end of a session would start again from step 0. This script keeps a
copy of each unfinished run's ``checkpoint.pt`` and ``best.pt`` under ``in_flight/`` (not
ignored, never added: ``tests/test_repo.py`` fails on any tracked file there) and puts them
back where ``bearl sweep`` and ``bearl train --resume`` look for them.

    python experiments/carry_checkpoints.py restore   # first, before restarting the sweeps
    python experiments/carry_checkpoints.py watch &   # then: save every 10 minutes
    python experiments/carry_checkpoints.py save      # once more before the session stops

A run is unfinished while its folder has a ``checkpoint.pt`` and no ``result.json``, or a
checkpoint past the steps its ``result.json`` reports (a finished run being extended to more
steps: its old result.json stays until the longer run ends); the copies of finished runs are
removed by ``save``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
CARRY = REPO / "in_flight"
FILES = ("checkpoint.pt", "best.pt")  # checkpoint first: the loop writes best.pt before it


def _copy(src: Path, dst: Path) -> bool:
    """Copy when ``dst`` is missing or differs in size or time; atomic (a copy, then rename)."""
    if dst.exists():
        a, b = src.stat(), dst.stat()
        if a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime):
            return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True


_steps: dict[tuple[str, int, int], int] = {}  # a checkpoint's step by (path, size, mtime)


def _step(ckpt: Path) -> int:
    """The step a checkpoint was saved at (read once per version of the file)."""
    st = ckpt.stat()
    key = (str(ckpt), st.st_size, st.st_mtime_ns)
    if key not in _steps:
        _steps[key] = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
    return _steps[key]


def _finished(run: Path, ckpt: Path) -> bool:
    """``run`` has a result.json of at least the step of ``ckpt`` (its own or a carried copy)."""
    result = run / "result.json"
    if not result.exists():
        return False
    steps = json.loads(result.read_text() or "{}").get("steps")
    return steps is None or int(steps) >= _step(ckpt)


def save(results: Path = RESULTS, carry: Path = CARRY) -> list[str]:
    """Copy the checkpoints of unfinished runs into ``carry``; drop those of finished runs."""
    done = []
    for ckpt in sorted(results.rglob("checkpoint.pt")):
        run = ckpt.parent
        if _finished(run, ckpt):
            continue
        rel = run.relative_to(results)
        for name in FILES:
            if (run / name).exists() and _copy(run / name, carry / rel / name):
                done.append(f"{rel}/{name}")
    for kept in sorted(carry.rglob("checkpoint.pt")) if carry.exists() else []:
        run = results / kept.parent.relative_to(carry)
        if not run.exists() or _finished(run, kept):
            shutil.rmtree(kept.parent)
            done.append(f"{kept.parent.relative_to(carry)}: dropped (finished or gone)")
    return done


def restore(results: Path = RESULTS, carry: Path = CARRY) -> list[str]:
    """Put carried checkpoints back into run folders that lost theirs."""
    done = []
    for kept in sorted(carry.rglob("checkpoint.pt")) if carry.exists() else []:
        rel = kept.parent.relative_to(carry)
        run = results / rel
        if not run.exists() or (run / "checkpoint.pt").exists() or _finished(run, kept):
            continue  # a vanished or finished run, or one that kept its own checkpoint
        for name in FILES:
            if (kept.parent / name).exists():
                _copy(kept.parent / name, run / name)
                done.append(f"{rel}/{name}")
    return done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["save", "restore", "watch"])
    p.add_argument("--every", type=float, default=600.0, help="seconds between saves (watch)")
    a = p.parse_args()
    if a.action == "restore":
        done = restore()
        print("\n".join(done) or "nothing to restore")
        return
    while True:
        done = save()
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp} " + (", ".join(done) if done else "nothing new"), flush=True)
        if a.action == "save":
            return
        time.sleep(a.every)


if __name__ == "__main__":
    main()
