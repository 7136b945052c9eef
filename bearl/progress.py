"""Progress bars: live on a terminal, a line every 30 s in logs (no flood of carriage returns)."""

from __future__ import annotations

import sys
import time
from typing import Any

SETTLE_STEPS = 100
"""The training bar measures its rate (and so its ETA) from the end of the first update of
this many steps on: the first updates of a process are slower (allocations, lazy set-up)."""


def progress_bar(total: int | None = None, disable: bool = False, **kwargs: Any):
    """A tqdm bar on stderr; refreshes at most every 30 s when stderr is not a terminal."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.5 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", interactive)
    return tqdm(total=total, disable=disable, file=sys.stderr, **kwargs)


class StepBar:
    """The training loop's bar. Its label names the phase (``training BEAR``, then
    ``evaluating 10 episodes`` while an evaluation runs, on a terminal); its rate is the
    average since the first update of :data:`SETTLE_STEPS` steps (evaluations included, as
    they will be in the rest of the run, so the ETA counts them; the start-up does not); and
    its final state is printed once, when the run ends."""

    def __init__(self, total: int, initial: int, label: str, disable: bool = False) -> None:
        self.label = label
        self.interactive = sys.stderr.isatty()
        self.bar = progress_bar(
            total, disable=disable, initial=initial, unit="step", desc=label, smoothing=0
        )
        self._settled = False

    def advance(self, step: int) -> None:
        """Steps done so far. The last step is shown only by :meth:`finish`."""
        if step >= (self.bar.total or 0):
            self.bar.n = step
            return
        self.bar.update(step - self.bar.n)
        if not self._settled:
            self._settled = True
            self._measure_from_here()

    def _measure_from_here(self) -> None:
        bar = self.bar
        if bar.disable:
            return
        bar.start_t = bar.last_print_t = time.time()  # tqdm's clock
        bar.initial = bar.last_print_n = bar.n

    def phase(self, text: str) -> None:
        """A phase other than training (``evaluating 10 episodes``), shown on a terminal."""
        self.bar.set_description_str(text, refresh=self.interactive)

    def training(self) -> None:
        self.bar.set_description_str(self.label, refresh=False)

    def write(self, message: str) -> None:
        """A line above the bar."""
        self.bar.write(message, file=sys.stderr)

    def finish(self, message: str | None = None) -> None:
        """The bar's final state (once), then ``message`` below it."""
        self.training()
        self.bar.close()
        if message is not None:
            print(message, file=sys.stderr, flush=True)
