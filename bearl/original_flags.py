"""The original BEAR code's command line (its ``main.py``, NeurIPS 2019), as bearl reads it.

Every flag of the original that names a setting bearl also has is accepted: under bearl's name
when the two differ (``--eval_freq`` is ``--eval_every``: ``ORIGINAL_FLAGS``), as ``--algo BC``
for ``--cloning``, with BEAR's ``--mode hardcoded`` as ``fixed``; the flags that did nothing
there are accepted and do nothing here either (``ORIGINAL_NO_OPS``), each with a line saying
so. ``bearl.config`` maps a run's settings through :func:`normalize_names` before anything else
reads them; ``bearl train`` reads the flags (:func:`add_original_flags`) without listing them in
its ``--help`` (its description names them: :data:`HELP_TEXT`). docs/bear.md, "The original
command line", has the whole table.
"""

from __future__ import annotations

import argparse
from typing import Any

# The original code's flag names that differ from ours.
ORIGINAL_FLAGS: dict[str, str] = {
    "algo_name": "algo",
    "env_name": "env",
    "buffer_name": "dataset",
    "eval_freq": "eval_every",
    "max_timesteps": "steps",
}

# Flags the original main.py parsed that did nothing there: accepted, each with one line
# saying so (docs/bear.md, "The original command line").
ORIGINAL_NO_OPS: dict[str, str] = {
    "threshold": "BEAR never read it (the MMD threshold was hard-coded at 0.05; here it is "
    "--target_mmd_thresh)",
    "use_bootstrap": "BEAR was built with use_bootstrap=False whatever it said (bearl has no "
    "bootstrap masks)",
    "use_behaviour_policy": "it was logged to variant.json and never used",
    "num_random": "it was logged to variant.json and never used",
}

# A flag of the original that bearl has under no name: --cloning true trains BC here
CLONING = "cloning"

# What ``bearl train --help`` says about them (its description)
HELP_TEXT = (
    "Every setting is also accepted in a YAML file (--config) and under the original BEAR "
    f"code's names ({', '.join(f'--{n}' for n in (*ORIGINAL_FLAGS, 'log_dir', CLONING))}); the "
    f"original's flags that did nothing there ({', '.join(f'--{n}' for n in ORIGINAL_NO_OPS)}) "
    "are accepted with a note saying so."
)


def original_names() -> set[str]:
    """The setting names only the original code has (a YAML file or a dict may use them)."""
    return {*ORIGINAL_FLAGS, *ORIGINAL_NO_OPS, CLONING}


def add_original_flags(parser: argparse.ArgumentParser) -> None:
    """The original's flags on ``parser``, left out of its ``--help``; ``bearl.config`` maps
    them to bearl's names (with notes). A bare ``--cloning`` (or no-op flag) means true."""
    for old in ORIGINAL_FLAGS:
        parser.add_argument(f"--{old}", dest=old, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for name in (CLONING, *ORIGINAL_NO_OPS):
        parser.add_argument(
            f"--{name}",
            dest=name,
            default=argparse.SUPPRESS,
            nargs="?",
            const="True",
            help=argparse.SUPPRESS,
        )


def original_flag_notes(values: dict[str, Any]) -> list[str]:
    """One line for each original-only flag in ``values`` whose effect here is not what its
    name suggests: the flags that did nothing there, ``--cloning`` and ``--eval_freq``."""
    notes = [
        f"--{name} does nothing here, nor did it in the original: {why}"
        for name, why in ORIGINAL_NO_OPS.items()
        if name in values
    ]
    if CLONING in values and _true(values[CLONING]):
        notes.append(
            "--cloning runs BC here (as --algo BC); in the original it did "
            "nothing (its behaviour cloning was --algo_name=BC)"
        )
    # the original's BEAR warmed up for 20 x eval_freq steps: its --eval_freq meant more
    algo = str(values.get("algo_name", values.get("algo", "BEAR")))
    if "eval_freq" in values and algo.lower() == "bear" and not _true(values.get(CLONING)):
        notes.append(
            f"--eval_freq {values['eval_freq']} is --eval_every here; BEAR's warm start is "
            "--warm_start_steps gradient steps, not 20 x eval_freq as in the original"
        )
    return notes


def normalize_names(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` under bearl's names: the original's flag names mapped (``eval_freq`` ->
    ``eval_every``), its flags that did nothing dropped, its ``mode: hardcoded`` as ``fixed``
    and ``cloning: true`` as ``algo: BC``."""
    values = {ORIGINAL_FLAGS.get(k, k): v for k, v in values.items() if k not in ORIGINAL_NO_OPS}
    if str(values.get("mode", "")).lower() == "hardcoded":  # the original's name for fixed
        values["mode"] = "fixed"
    if _true(values.pop(CLONING, False)):
        values["algo"] = "BC"
    return values


def _true(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")
