"""A one-line progress bar for the long commands (``deoss put|get|recover|scrub``).

It draws on stderr only when stderr is a terminal, unless told (``--progress`` /
``--no-progress``): redirected output and logs get no carriage returns. The answer a
command prints (a fid, a report) goes to stdout either way.
"""

import sys
import time
from typing import TextIO

__all__ = ["BAR_WIDTH", "Progress", "human_bytes"]

BAR_WIDTH = 24
REDRAW_INTERVAL = 0.1  # seconds: a terminal needs no more, a slow one no less


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Counts bytes (``unit="bytes"``) or things (``unit="files"``, ``"fragments"``) done
    out of ``total`` (None: not known ahead, so a count without a bar). ``start`` is
    what was done before this run (a resumed upload): it shows in the bar, not the rate."""

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        unit: str = "bytes",
        start: int = 0,
        enabled: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = self.done = start
        self.started = time.monotonic()
        self.shown, self.width = 0.0, 0

    def advance(self, count: int) -> None:
        self.update(self.done + count)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.enabled and (now - self.shown >= REDRAW_INTERVAL or done == self.total):
            self.shown = now
            line = self.line(now)
            # Padded over the last line rather than erased with an escape, which a forced
            # bar would leave in a log file.
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = (self.done - self.start) / elapsed
        if self.unit == "bytes":
            amount = human_bytes(self.done)
            amount += f" / {human_bytes(self.total)}" if self.total else ""
            speed = f"{human_bytes(rate)}/s"
        else:
            amount = str(self.done) + (f" / {self.total}" if self.total else "")
            amount += f" {self.unit}"
            speed = f"{rate:.1f}/s"
        if not self.total:
            return f"{self.label} {amount}  {speed}"
        share = min(self.done / self.total, 1.0)
        filled = round(share * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return f"{self.label} [{bar}] {share:4.0%}  {amount}  {speed}"

    def finish(self) -> None:
        """Draws the final state and ends the line."""
        if not self.enabled:
            return
        self.shown = 0.0
        self.update(self.done)
        self.stream.write("\n")
        self.stream.flush()
