"""CIFAR-10/100 in the official python format, from the tarball or its extracted folder.

No code here unpickles untrusted data with the default unpickler: the CIFAR files are pickles, and
they are read with :class:`RestrictedUnpickler`, which only allows numpy's array reconstruction.
Downloads go through :func:`mobilenets.fileio.download` with an md5 check.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import DownloadError, download, file_digest
from .tensor import TensorImageDataset


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not on the allow-list (possible code execution)."""


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Python 3 writes ``bytes`` in protocol-2 pickles as ``_codecs.encode(text, 'latin1')``; allow
    exactly that and nothing else of the codecs module."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return obj.encode("latin1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dicts, lists, strings and numbers — nothing else.

    Why: ``pickle.load`` on a file from the internet executes whatever callable the file names
    (``os.system`` and friends).  The CIFAR python files only need numpy's array reconstruction
    (``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
    ``numpy.ndarray``, ``numpy.dtype``); pickles written by Python 3 with protocol 2 additionally encode
    bytes via ``_codecs.encode(..., 'latin1')``, which is allowed for the latin-1 codec only.  Any other
    global raises :class:`UnsafePickleError` naming the file and the refused global, before anything is
    called.
    """

    def __init__(self, file: io.BufferedIOBase | io.BytesIO, source: str, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        ):
            return _numpy_reconstruct()
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise UnsafePickleError(
            f"{self.source}: refusing to unpickle global '{module}.{name}' — only numpy array "
            "reconstruction is allowed in CIFAR files (the file may be corrupt or malicious)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in CIFAR files")


def restricted_loads(data: bytes, source: str) -> Any:
    """Unpickle ``data`` (a Python-2 era CIFAR pickle) with :class:`RestrictedUnpickler`;
    ``encoding='bytes'`` keeps the official bytes keys (``b"data"``)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source, encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated / not a pickle at all
        raise ValueError(f"{source}: not a valid CIFAR pickle ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class _CifarSpec:
    folder: str
    archive: str
    url: str
    md5: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int


_CIFAR: dict[str, _CifarSpec] = {
    "cifar10": _CifarSpec(
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
    "cifar100": _CifarSpec(
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train=("train",),
        test=("test",),
        meta="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
}


def _cifar_spec(name: str) -> _CifarSpec:
    if name not in _CIFAR:
        raise ValueError(f"unknown CIFAR variant {name!r}; allowed: {', '.join(_CIFAR)}")
    return _CIFAR[name]


def _missing_message(spec: _CifarSpec, root: Path) -> str:
    where = root if root.suffix != ".gz" else root.parent
    return (
        f"CIFAR data not found under {root}. Put the official archive '{spec.archive}' (from {spec.url}, "
        f"md5 {spec.md5}) at {where / spec.archive}, or its extracted folder at {where / spec.folder}/, "
        "or pass download=True on a machine with internet access."
    )


def download_cifar(root: str | Path, name: str, timeout: float = 60.0) -> Path:
    """Download the official CIFAR archive into directory ``root`` and verify its md5.

    An existing archive with the right checksum is reused.  The download is streamed into a temporary
    file next to the destination and moved into place with ``os.replace`` only after the checksum
    matched, so an interrupted or corrupted download never leaves a file that looks complete.  When the
    machine is offline, raises :class:`FileNotFoundError` telling exactly which file to put where.
    """
    spec = _cifar_spec(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dest = root / spec.archive
    if dest.is_file() and file_digest(dest, "md5") == spec.md5:
        return dest

    def verify(tmp: Path) -> None:  # raising here discards the partial file; dest stays untouched
        got = file_digest(tmp, "md5")
        if got != spec.md5:
            raise RuntimeError(
                f"checksum mismatch for {spec.url}: got md5 {got}, expected {spec.md5}; nothing was written to {dest}"
            )

    try:
        download(spec.url, dest, verify=verify, timeout=timeout)
    except DownloadError as exc:
        raise FileNotFoundError(f"could not download {spec.url} ({exc.reason}). " + _missing_message(spec, root)) from exc
    return dest


def _locate_cifar(root: Path, spec: _CifarSpec) -> tuple[str, Path] | None:
    """Find the data: ``("dir", folder)`` for extracted files, ``("tar", archive)`` for the tarball."""
    if root.is_file():
        return ("tar", root)
    if not root.is_dir():
        return None
    if (root / spec.meta).is_file() and all((root / m).is_file() for m in spec.test):
        return ("dir", root)  # the extracted folder itself
    if (root / spec.folder / spec.meta).is_file():
        return ("dir", root / spec.folder)
    if (root / spec.archive).is_file():
        return ("tar", root / spec.archive)
    return None


def _read_members(kind: str, path: Path, spec: _CifarSpec, names: Sequence[str]) -> dict[str, Any]:
    """Unpickle the named members, from the folder or in one pass over the tarball (no extraction)."""
    out: dict[str, Any] = {}
    if kind == "dir":
        for name in names:
            file = path / name
            if not file.is_file():
                raise FileNotFoundError(f"{file} is missing (expected the official '{spec.folder}' layout)")
            out[name] = restricted_loads(file.read_bytes(), str(file))
        return out
    wanted = {f"{spec.folder}/{n}": n for n in names}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                key = member.name[2:] if member.name.startswith("./") else member.name
                if key in wanted and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    out[wanted[key]] = restricted_loads(f.read(), f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: cannot read the CIFAR archive ({exc})") from None
    missing = [f"{spec.folder}/{n}" for n in names if n not in out]
    if missing:
        raise FileNotFoundError(
            f"{path} lacks the member(s) {', '.join(missing)}; is it the official archive?"
        )
    return out


def _get(d: Any, key: str, source: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a dict, got {type(d).__name__}")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise ValueError(f"{source}: missing key {key!r} (has {sorted(map(str, d))[:8]})")


def load_cifar(
    root: str | Path, name: str = "cifar10", split: str = "train", download: bool = False
) -> TensorImageDataset:
    """Load CIFAR-10 or CIFAR-100 (fine labels) in the official python format.

    ``root`` may be the tarball (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``), a directory
    containing it, a directory containing the extracted folder (``cifar-10-batches-py/`` /
    ``cifar-100-python/``), or the extracted folder itself.  Tarballs are read in memory, never
    extracted.  Every pickle goes through :class:`RestrictedUnpickler`.  ``split`` is ``"train"``
    (50000 images) or ``"test"`` (10000); images are uint8 ``N×3×32×32``.  With ``download=True`` a
    missing archive is fetched with :func:`download_cifar`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown CIFAR split {split!r}; allowed: 'train', 'test'")
    return load_cifar_splits(root, name, (split,), download)[split]


def load_cifar_splits(
    root: str | Path, name: str = "cifar10", splits: Sequence[str] = ("train", "test"), download: bool = False
) -> dict[str, TensorImageDataset]:
    """Like :func:`load_cifar` for several splits, reading a tarball only once (it is gzip: every read
    decompresses the whole stream)."""
    spec = _cifar_spec(name)
    for split in splits:
        if split not in ("train", "test"):
            raise ValueError(f"unknown CIFAR split {split!r}; allowed: 'train', 'test'")
    root = Path(root).expanduser()
    found = _locate_cifar(root, spec)
    if found is None and download:
        download_cifar(root.parent if root.suffix == ".gz" else root, name)
        found = _locate_cifar(root, spec)
    if found is None:
        raise FileNotFoundError(_missing_message(spec, root))
    kind, path = found
    wanted = {split: spec.train if split == "train" else spec.test for split in splits}
    loaded = _read_members(kind, path, spec, (*[m for ms in wanted.values() for m in ms], spec.meta))
    names = [
        n.decode() if isinstance(n, bytes) else str(n)
        for n in _get(loaded[spec.meta], spec.names_key, f"{path}:{spec.meta}")
    ]
    if len(names) != spec.num_classes:
        raise ValueError(f"{path}: {spec.meta} lists {len(names)} classes, expected {spec.num_classes}")
    out = {}
    for split, members in wanted.items():
        images, labels = [], []
        for m in members:
            src = f"{path}:{m}"
            data = np.asarray(_get(loaded[m], "data", src))
            lab = np.asarray(_get(loaded[m], spec.label_key, src), dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise ValueError(f"{src}: 'data' must be uint8 N×3072, got {data.dtype} {data.shape}")
            if lab.shape != (data.shape[0],):
                raise ValueError(f"{src}: {data.shape[0]} images but {lab.shape} labels")
            if lab.size and (lab.min() < 0 or lab.max() >= spec.num_classes):
                raise ValueError(f"{src}: labels outside [0, {spec.num_classes})")
            images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
            labels.append(torch.from_numpy(lab))
        out[split] = TensorImageDataset(torch.cat(images), torch.cat(labels), names)
    return out


#: CIFAR "val" = this many training images, carved stratified with :data:`CIFAR_VAL_SEED`.
CIFAR_VAL_SIZE = 5000
CIFAR_VAL_SEED = 0
