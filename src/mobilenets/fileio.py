"""One way to write a file so that a crash never leaves a half-written one: temp file, fsync, rename.

Every file the toolkit writes that a later run reads back (training checkpoints, native weights and their
``config.json``, resolved configs, experiment results, downloaded datasets) goes through
:func:`atomic_write`. The temp file lives beside the destination (same filesystem, so ``os.replace`` is
atomic), is flushed and fsynced before the rename, and is removed on any error, including
``KeyboardInterrupt`` and a full disk. A reader therefore sees either the old complete file or the new
complete file, never a truncated one; after a SIGKILL at most a stray ``.*.tmp`` file is left, which no
loader picks up.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes"]


@contextmanager
def atomic_write(path: str | Path, *, suffix: str = ".tmp", sync_dir: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file handle; on a clean exit its content replaces ``path`` atomically.

    Raising inside the ``with`` block (a failed checksum, a write error) discards the temp file and
    leaves ``path`` untouched. ``sync_dir`` also fsyncs the directory, so the rename itself survives a
    power loss (what a checkpoint needs).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        if sync_dir:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as fh:
        fh.write(data)
    return Path(path)
