"""Optional dependencies: name the ``pip install`` that fixes a missing runtime, and quiet their imports.

Every table whose rows may need an uninstalled extra (export formats, bench backends, int8 targets)
builds on :class:`NeedsExtras`, so ``--help`` tables, ``best`` selections and the error a user sees all
come from the same check.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator

import torch

__all__ = ["MissingExtraError", "NeedsExtras", "quiet_imports", "quiet_loggers", "require", "silence_native_stderr"]


class MissingExtraError(ImportError, ValueError):
    """An optional dependency is missing; the message says which ``pip install`` fixes it.

    Also a ``ValueError`` so the command line prints it as one line instead of a traceback.
    """


def require(module: str, extra: str, what: str) -> None:
    """Fail early, naming the extra to install, when ``module`` cannot be imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtraError(
            f"{what} needs the Python package providing {module!r}, which is not installed: "
            f"pip install 'mobilenets[{extra}]' torch=={torch.__version__.split('+')[0]}"
        )


class NeedsExtras:
    """Mixin for a row of a format / backend / target table whose runtime may be an uninstalled extra.

    A row defines ``check_installed`` (raising :class:`MissingExtraError` via :func:`require`);
    ``available`` is the non-raising form that ``--help`` tables and ``best`` selections use.
    """

    def check_installed(self) -> None:
        raise NotImplementedError

    def available(self) -> bool:
        try:
            self.check_installed()
        except ImportError:
            return False
        return True


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Raise the named loggers to ERROR for the duration of the block, then restore their levels."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quiet_imports() -> contextlib.AbstractContextManager[None]:
    """Importing torchao (ExecuTorch imports it too) logs a warning per CUDA-only kernel library that a
    CPU build cannot load, and a pytree deprecation; neither matters here."""
    return quiet_loggers("torchao", "torch.utils._pytree")


@contextlib.contextmanager
def silence_native_stderr() -> Iterator[None]:
    """Mute C++ chatter written straight to file descriptor 2 (ExecuTorch's cpuinfo probes log every
    ``/sys`` file they cannot open). Python exceptions still carry their messages."""
    try:
        fd = os.dup(2)
    except OSError:  # pragma: no cover - no stderr at all
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)

