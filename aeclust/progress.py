"""Progress over a sweep's runs and a run's epochs: a tqdm bar on a terminal, log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger(__name__)

_SETTINGS = {"enabled": True}


def configure(*, enabled: bool) -> None:
    """Turn all progress output on or off (``--quiet`` turns it off)."""
    _SETTINGS["enabled"] = enabled


class Progress:
    """Count steps of a task and show done/total, elapsed time and ETA.

    On a terminal the count is a tqdm bar on stderr. Otherwise (CI, a log
    file) each step logs one line, so the output stays readable.

    Parameters
    ----------
    total : int
        Number of steps.
    description : str
        What is counted, e.g. ``"sweep"`` or ``"epochs"``.
    leave : bool, default=True
        Whether the finished bar stays on screen.
    """

    def __init__(self, total: int, description: str, *, leave: bool = True):
        self.total = total
        self.description = description
        self.done = 0
        self.start = time.perf_counter()
        self.bar = None
        self.enabled = _SETTINGS["enabled"]
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, leave=leave, file=sys.stderr)

    def update(self, note: str = "") -> None:
        """Count one finished step; ``note`` is shown beside the count."""
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(1)
            return
        elapsed = time.perf_counter() - self.start
        remaining = elapsed / self.done * (self.total - self.done)
        logger.info(
            "%s %d/%d %s (elapsed %.0f s, ETA %.0f s)",
            self.description, self.done, self.total, note, elapsed, remaining,
        )

    def close(self) -> None:
        """Close the bar, if one is shown."""
        if self.bar is not None:
            self.bar.close()
