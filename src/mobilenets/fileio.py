"""Files the toolkit writes or fetches: atomically, hashed one way, downloaded and verified one way.

One way to write a file so that a crash never leaves a half-written one: temp file, fsync, rename.

Every file the toolkit writes that a later run reads back (training checkpoints, native weights and their
``config.json``, resolved configs, experiment results, downloaded datasets) goes through
:func:`atomic_write`. The temp file lives beside the destination (same filesystem, so ``os.replace`` is
atomic), is flushed and fsynced before the rename, and is removed on any error, including
``KeyboardInterrupt`` and a full disk. A reader therefore sees either the old complete file or the new
complete file, never a truncated one; after a SIGKILL at most a stray ``.*.tmp`` file is left, which no
loader picks up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["DownloadError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "download", "file_digest", "open_url"]


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
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:  # reopened by name so that ``fh.name`` is the temp file's path
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


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write` (logs a reader may tail, such as
    ``metrics.csv``, are replaced whole; the directory is not fsynced since they are rewritten often)."""
    with atomic_write(path, sync_dir=False) as fh:
        fh.write(text.encode("utf-8"))
    return Path(path)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks (``algorithm``: any hashlib name, e.g. md5).

    A directory (a Core ML ``.mlpackage``) digests its files' relative paths and bytes in sorted order.
    """
    h = hashlib.new(algorithm, usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class DownloadError(OSError):
    """The transfer itself failed (offline, DNS, HTTP error, timeout); ``reason`` says why in a few words."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"could not download {url} ({reason})")
        self.url = url
        self.reason = reason


def open_url(url: str, timeout: float = 60.0) -> BinaryIO:
    """The one network call: a GET with the toolkit's User-Agent and a timeout, so a dead link fails."""
    request = urllib.request.Request(url, headers={"User-Agent": "mobilenets"})
    return urllib.request.urlopen(request, timeout=timeout)


def download(
    url: str,
    dest: str | Path,
    *,
    verify: Callable[[Path], None] | None = None,
    opener: Callable[[str], BinaryIO] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Stream ``url`` into ``dest``; ``verify(temp_path)`` runs before the file is moved into place.

    The bytes go to a temp file beside ``dest``; a failed transfer raises :class:`DownloadError`, and
    whatever ``verify`` raises (a checksum mismatch) propagates unchanged. Either way ``dest`` is left as
    it was, so an interrupted or corrupted transfer never leaves a file that looks valid.
    ``opener`` replaces the network call (tests, or an authenticated opener).
    """
    dest = Path(dest)
    with atomic_write(dest, suffix=".part") as out:
        try:
            with (opener(url) if opener else open_url(url, timeout)) as response:
                shutil.copyfileobj(response, out, 1 << 20)
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
            raise DownloadError(url, getattr(exc, "reason", None) or exc) from None
        if verify is not None:
            out.flush()
            verify(Path(out.name))
    return dest
