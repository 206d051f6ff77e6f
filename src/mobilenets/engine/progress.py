"""A dependency-free progress bar with rate and ETA, and a quiet mode that prints one line per epoch.

On a terminal the bar redraws in place at most ~8 times a second (drawing costs time on a 2-core
machine); when stderr is not a terminal (CI logs, files) nothing is drawn until the epoch's summary.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of one epoch: ``update(n_images, **metrics)`` per step, ``close(summary)`` at the end."""

    def __init__(
        self,
        total_steps: int,
        desc: str,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        remaining_after: float = 0.0,
    ) -> None:
        self.total = max(1, total_steps)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.live = not quiet and self.stream.isatty()
        self.step = 0
        self.images = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        # Seconds of work expected after this epoch (later epochs) so the ETA covers the whole run.
        self.remaining_after = remaining_after

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        return self.images / self.elapsed if self.elapsed > 0 else 0.0

    def update(self, n_images: int, **metrics: float) -> None:
        self.step += 1
        self.images += n_images
        now = time.perf_counter()
        if self.live and (now - self._last_draw > 0.125 or self.step == self.total):
            self._last_draw = now
            self._draw(metrics)

    def _draw(self, metrics: dict[str, float]) -> None:
        frac = self.step / self.total
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        eta = self.elapsed / frac - self.elapsed + self.remaining_after if frac > 0 else 0.0
        extras = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        line = f"\r{self.desc} [{bar}] {self.step}/{self.total} {self.rate:,.0f} img/s ETA {format_duration(eta)} {extras}"
        self.stream.write(line[:160].ljust(100))
        self.stream.flush()

    def close(self, summary: str) -> None:
        if self.live:
            self.stream.write("\r" + " " * 160 + "\r")
        self.stream.write(summary + "\n")
        self.stream.flush()
