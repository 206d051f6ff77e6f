"""Stage reporting for long commands (``export``, ``quantize``): a line per stage, a bar for counted work.

Why: int8 quantization to XNNPACK takes a minute and a half and an ExecuTorch export half a minute, most
of it inside compilers that print nothing; a command that says nothing for that long looks hung. Lines
go to stderr so ``--json`` output on stdout stays one JSON document. Counted work (calibration and
evaluation batches) uses :class:`mobilenets.engine.progress.Progress`, which draws a bar only on a
terminal; elsewhere (CI logs, files) each counted stage is one line when it starts and one when it ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from .progress import Progress

__all__ = ["StageLog", "as_stage_log"]


class _NoProgress(Progress):
    """A :class:`Progress` that draws and prints nothing (for library calls without a log)."""

    def __init__(self, total_steps: int, desc: str) -> None:
        super().__init__(total_steps, desc, quiet=True)

    def update(self, n_images: int, **metrics: float) -> None:
        self.step += 1
        self.images += n_images

    def close(self, summary: str) -> None:
        pass


class StageLog:
    """Where a long job says what it is doing.

    ``log("exporting ...")`` writes one line; ``log.counted(total, desc)`` returns a :class:`Progress`
    over ``total`` steps whose ``close(summary)`` writes the stage's closing line. A plain callable
    (``print``-like) can be wrapped with :func:`as_stage_log`; ``StageLog(enabled=False)`` is silent.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True,
                 write: Callable[[str], None] | None = None) -> None:
        self._stream = stream
        self.enabled = enabled
        self._write = write

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up late so pytest's capture and redirections apply

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        if self._write is not None:
            self._write(message)
            return
        self.stream.write(message + "\n")
        self.stream.flush()

    def counted(self, total: int, desc: str) -> Progress:
        """A progress bar over ``total`` steps (batches); on a non-terminal the start is one line."""
        if not self.enabled:
            return _NoProgress(total, desc)
        if self._write is not None:  # a plain callable cannot redraw: a line at the start, one at close
            self._write(f"{desc}: {total} batches")
            return _CallbackProgress(total, desc, self._write)
        progress = Progress(total, desc, stream=self.stream)
        if not progress.live:
            self(f"{desc}: {total} batches")
        return progress


class _CallbackProgress(_NoProgress):
    """Counts silently and hands the closing summary to a callable."""

    def __init__(self, total_steps: int, desc: str, write: Callable[[str], None]) -> None:
        super().__init__(total_steps, desc)
        self._write_line = write

    def close(self, summary: str) -> None:
        self._write_line(summary)


def as_stage_log(log: StageLog | Callable[[str], None] | None) -> StageLog:
    """``None`` → a silent log; a callable → a log writing through it; a :class:`StageLog` unchanged."""
    if isinstance(log, StageLog):
        return log
    if log is None:
        return StageLog(enabled=False)
    return StageLog(write=log)
