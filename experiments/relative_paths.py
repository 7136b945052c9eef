"""Rewrite committed run folders so that no absolute machine path is left in them.

    python experiments/relative_paths.py results/

bearl (since 2026-12-01) writes ``result.json``'s ``run_dir`` and the first line of
``debug.log`` relative to the run's parent; run folders written before, and ``log_dir`` in
``params.json`` / ``variant.json`` (a sweep makes it absolute), still hold the machine's paths.
For every run folder below the given folders this replaces the folder's own absolute path by its
name and any absolute path inside this repository by its path relative to the repository, in
result.json, params.json, variant.json and debug.log, and the home folder by ``~``. It prints
what it changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("result.json", "params.json", "variant.json", "debug.log")


def rewrite(run: Path) -> list[str]:
    run = run.resolve()
    changed = []
    # the absolute prefixes this folder may have been written under (this checkout, or another
    # checkout of the repository whose tail is the same, e.g. /work/main/results/...)
    tail = run.relative_to(REPO) if run.is_relative_to(REPO) else None
    for name in FILES:
        path = run / name
        if not path.exists():
            continue
        text = path.read_text()
        new = text
        if tail is not None:
            for root in {str(REPO), *_roots_in(text, str(tail.parent))}:
                new = new.replace(f"{root}/{tail}", run.name).replace(f"{root}/", "")
        new = new.replace(f"{Path.home()}/", "~/")  # e.g. the behaviour-VAE cache's path
        if new != text:
            path.write_text(new)
            changed.append(str(path.relative_to(REPO)))
    return changed


def _roots_in(text: str, tail: str) -> set[str]:
    """Absolute folders X such that 'X/<tail>' occurs in ``text`` (X begins with '/')."""
    roots, start = set(), 0
    while (i := text.find("/" + tail, start)) != -1:
        j = i
        while j > 0 and text[j - 1] not in "\"' \n":
            j -= 1
        if text[j] == "/" and j < i:
            roots.add(text[j:i])
        start = i + 1
    return roots


def main() -> None:
    folders = [Path(a) for a in sys.argv[1:]] or [REPO / "results"]
    runs = {p.parent for f in folders for p in f.rglob("progress.csv")}
    runs |= {p.parent for f in folders for p in f.rglob("result.json")}
    total = 0
    for run in sorted(runs):
        for path in rewrite(run):
            print(f"rewrote {path}")
            total += 1
    print(f"{total} files rewritten in {len(runs)} run folders")


if __name__ == "__main__":
    main()
