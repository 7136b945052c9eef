"""``bearl select``: choose a run and a snapshot from data alone (or, for comparison, by the
rules that need a simulator or ignore the choice).

Rules, each a score per (run, snapshot); the largest wins:

- ``fqe``: the FQE estimate in ``ope.json`` (``bearl ope``), from data alone; a snapshot whose
  fit diverged (an estimate outside the values the data's rewards allow) ranks below all others;
- ``fqe-low``: the lower end of FQE's interval, the same way (pessimism: a snapshot whose
  bootstrap critics disagree ranks low);
- ``fqe-near``: ``fqe`` among the snapshots whose action gap (how far their actions are from
  the data's) is at most ``NEAR`` times the smallest among the candidates, then the others:
  FQE extrapolates, mostly upwards, for policies that act far from the data;
- ``critic``: the run's own critic at the dataset's episode starts (in ``ope.json``), from data
  alone, the naive rule every OPE paper compares against;
- ``final``: every run's last snapshot, ranked by FQE when several runs compete (data alone);
- ``best-online``: the evaluation score in progress.csv (needs the simulator; a reference).

Over a sweep (runs that differ in settings) the chosen run names the chosen settings. Estimates
on different data do not compare: ``select_each`` chooses once per dataset, ``select`` refuses
runs scored on several.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bearl.errors import BearlError
from bearl.files import read_json
from bearl.ope.estimate import OPE_FILE
from bearl.runs.folders import differing_settings, find_runs, run_info

RULES = ("fqe", "fqe-low", "fqe-near", "critic", "final", "best-online")
NEAR = 2.0  # fqe-near: an action gap up to twice the smallest (studies/offline_selection)


@dataclass
class Candidate:
    """One snapshot of one run with what each rule scores it."""

    run: Path
    step: int
    fqe: float | None
    critic: float | None
    online: float | None
    final: bool
    fqe_low: float | None = None
    diverged: bool = False
    action_gap: float | None = None  # how far its actions are from the data's (ope.json)
    gap_ratio: float | None = None  # its gap over the smallest among the candidates
    dataset: str = "?"  # the data FQE was fitted on (ope.json), or the run's own
    data_key: str = "?"  # its content hash where ope.json has one, else the same name


def candidates(runs: list[str | Path]) -> list[Candidate]:
    """Every snapshot that ``bearl ope`` scored in the given run folders (or folders of runs)."""
    out = []
    for run in find_runs([str(r) for r in runs]):
        ope = read_json(run / OPE_FILE) or {}
        entries = ope.get("snapshots") or []
        if not entries:
            continue
        data = ope.get("dataset") or {}
        name = str(data.get("source") or run_info(run).dataset)
        online = _online_scores(run)
        last = max(e["step"] for e in entries)
        for e in entries:
            out.append(
                Candidate(
                    run,
                    int(e["step"]),
                    _num(e.get("fqe")),
                    _num(e.get("critic")),
                    online.get(int(e["step"])),
                    int(e["step"]) == last,
                    _num(e.get("fqe_low")),
                    bool(e.get("diverged", False)),
                    _num(e.get("action_gap")),
                    dataset=name,
                    data_key=str(data.get("sha1") or name),
                )  # fmt: skip
            )
    if not out:
        raise BearlError(
            f"no {OPE_FILE} in {', '.join(map(str, runs))}: run `bearl ope RUN...` first"
        )
    return out


Choice = tuple[Candidate, dict[str, Any]]


def select(runs: list[str | Path], by: str = "fqe-near") -> Choice:
    """The candidate that rule ``by`` chooses, with its algorithm, dataset and the settings in
    which the candidate runs differ (a sweep's choice). The runs must be scored on one dataset
    (:func:`select_each` chooses per dataset)."""
    choices = select_each(runs, by)
    if len(choices) > 1:
        names = ", ".join(c.dataset for c, _ in choices)
        raise BearlError(
            f"{', '.join(map(str, runs))}: scored on {len(choices)} datasets ({names}); "
            "estimates on different data do not compare: select among one dataset's runs "
            "(`bearl select` chooses once per dataset)"
        )
    return choices[0]


def select_each(runs: list[str | Path], by: str = "fqe-near") -> list[Choice]:
    """:func:`select`'s choice among the runs scored on each dataset, by dataset name."""
    if by not in RULES:
        raise BearlError(f"--by {by}: expected one of {', '.join(RULES)}")
    pool = candidates(runs)
    groups: dict[str, list[Candidate]] = {}
    for c in pool:
        groups.setdefault(c.data_key, []).append(c)
    return [
        _choose(g, by) for g in sorted(groups.values(), key=lambda g: (g[0].dataset, g[0].data_key))
    ]


def _choose(pool: list[Candidate], by: str) -> Choice:
    """Rule ``by``'s choice among ``pool``, the snapshots of runs on one dataset."""
    if by == "final":
        pool = [c for c in pool if c.final]
    key = {"fqe": "fqe", "fqe-low": "fqe_low", "fqe-near": "fqe", "critic": "critic",
           "final": "fqe"}.get(by, "online")  # fmt: skip
    scored = [c for c in pool if getattr(c, key) is not None]
    if not scored:
        raise BearlError(f"--by {by}: no snapshot has a {key} value in these runs")
    gaps = [c.action_gap for c in pool if c.action_gap is not None]
    smallest = min(gaps, default=0.0)
    for c in pool:
        if c.action_gap is None:
            continue
        if smallest > 0:
            c.gap_ratio = c.action_gap / smallest
        else:  # a snapshot acting exactly as the data: the others are infinitely farther
            c.gap_ratio = 1.0 if c.action_gap == 0 else math.inf
    if by == "fqe-near":
        if any(c.gap_ratio is None for c in scored):
            raise BearlError(
                f"--by fqe-near: an {OPE_FILE} here has no action_gap (written by an older "
                "bearl); run `bearl ope` on these runs again (it adds them without fitting "
                "again) or choose --by fqe"
            )
        chosen = max(scored, key=lambda c: (not c.diverged, c.gap_ratio <= NEAR, c.fqe))
    elif key.startswith("fqe"):  # a diverged fit ranks below every other
        chosen = max(scored, key=lambda c: (not c.diverged, getattr(c, key)))
    else:
        chosen = max(scored, key=lambda c: getattr(c, key))
    infos = {c.run: run_info(c.run) for c in pool}
    info = infos[chosen.run]
    # the settings the sweep chose among: among the runs of the chosen algorithm (the others
    # have other settings altogether, and the algorithm is named already)
    same = [i for i in infos.values() if i.algorithm == info.algorithm]
    varied = [k for k in differing_settings(same) if k != "algo"]
    shown = {k: info.settings.get(k) for k in varied}
    return chosen, {"algorithm": info.algorithm, "dataset": info.dataset, **shown}


def _online_scores(run: Path) -> dict[int, float]:
    """Step -> the evaluation's normalized score (or return) in progress.csv."""
    path = run / "progress.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for r in rows:
        v = _num(r.get("NormalizedScore") or r.get("AverageReturn"))
        if v is not None and r.get("Step"):
            out[int(float(r["Step"]))] = v
    return out


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
