"""Reading weights files safely: the container format from the bytes, state dicts without running code.

Nothing is ever unpickled with code execution: safetensors and HDF5 hold plain arrays, and any other
file goes through ``torch.load(..., weights_only=True)``, which refuses (and says why) a file that needs
more than tensors and plain containers.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..models.native import WEIGHTS_NAME, WeightsError
from .sources import torchvision_detection, torchvision_segmentation

__all__ = ["load_state_dict_file", "sniff_format"]


def sniff_format(path: str | Path) -> str:
    """The container format from the file's first bytes, never from its name alone.

    Returns ``"safetensors"``, ``"torch"`` (zip, ``torch.save``), ``"pickle"`` (legacy torch.save or a
    bare pickle), ``"hdf5"`` (Keras) or ``"unknown"``. Names lie (``.bin`` is pickle or safetensors,
    ``.pt`` is zip or pickle); the magic bytes decide which reader is safe to use.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "torch"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size:
        return "safetensors"
    return "unknown"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _refusal_reason(exc: BaseException) -> str | None:
    """The line of a ``weights_only`` refusal that names the offending global, if it is one."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return None
    for line in text.splitlines():
        if "Unsupported" in line or "GLOBAL" in line or "not an allowed global" in line:
            # torch goes on to explain how to allowlist the global: not advice to give about a payload.
            return line.split(" Please use")[0].strip().rstrip(".")
    return _first_line(exc)


def _unwrap(obj: Any) -> Any:
    """Training checkpoints nest the weights (``{"state_dict": ...}``, ``{"model": ...}``); EMA first."""
    if isinstance(obj, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model", "model_state_dict", "module"):
            if isinstance(obj.get(key), dict) and obj[key] and all(isinstance(v, torch.Tensor) for v in obj[key].values()):
                return obj[key]
    return obj


def _strip_wrappers(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the prefixes DistributedDataParallel (``module.``) and torch.compile (``_orig_mod.``) add."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict without executing pickled code: safetensors, or ``torch.load(weights_only=True)``.

    A directory means its ``model.safetensors``. Errors name the file and say what is wrong with it:
    empty, truncated, not a weights file, or refused because unpickling it would run code.
    """
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    fmt = sniff_format(path)
    if fmt == "hdf5":
        raise WeightsError(f"{path} is an HDF5 (Keras) file, not a PyTorch state dict: use load_weights()")
    if fmt == "unknown":
        with open(path, "rb") as fh:
            head = fh.read(12)
        raise WeightsError(
            f"{path} is not a weights file this loader reads (safetensors, a torch.save checkpoint or Keras "
            f"HDF5); it starts with {head!r}"
        )
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file (truncated?): {_first_line(exc)}") from None
        return _strip_wrappers(state)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling fails in many exception types; each means refused or corrupt
        reason = _refusal_reason(exc)
        if reason is not None:
            raise WeightsError(
                f"{path} was refused: loading it would execute code ({reason}). A weights file holds only "
                "tensors and plain containers; nothing in this one was run. Re-save it as safetensors or a "
                "plain state dict if you trust where it came from."
            ) from None
        raise WeightsError(f"{path} is truncated or corrupt: {type(exc).__name__}: {_first_line(exc)}") from None
    obj = _unwrap(obj)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors (found {type(obj).__name__})")
    return _strip_wrappers({str(k): v for k, v in obj.items()})


def _state_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a state-dict file, reading as little of it as possible.

    safetensors headers and zip checkpoints (memory-mapped) give them without reading the tensors; any
    other file, or one these fast paths cannot read, goes through :func:`load_state_dict_file`, whose
    errors say what is wrong with it (and which never runs pickled code either).
    """
    fmt = sniff_format(path)
    if fmt == "safetensors":
        from safetensors import safe_open

        with contextlib.suppress(Exception), safe_open(str(path), framework="pt") as fh:
            names = fh.keys()
            return _strip_wrappers({k: tuple(fh.get_slice(k).get_shape()) for k in names})
    elif fmt == "torch":
        with contextlib.suppress(Exception):
            obj = _unwrap(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
            if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
                return _strip_wrappers({str(k): tuple(v.shape) for k, v in obj.items()})
    return {k: tuple(v.shape) for k, v in load_state_dict_file(path).items()}


def _classifier_classes(shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    """The class count of a state dict's classifier: the last ``classifier[.N].weight`` Linear."""
    found: list[tuple[int, int]] = []
    for key, shape in shapes.items():
        m = re.fullmatch(r"classifier(?:\.(\d+))?\.weight", key)
        if m and len(shape) == 2:
            found.append((int(m.group(1) or 0), shape[0]))
    if not found:  # a torchvision detector (classes per anchor of its class head) or segmenter
        return torchvision_detection.num_classes(shapes) or torchvision_segmentation.num_classes(shapes)
    return max(found)[1]


def _resolve_weights_path(path: Path) -> Path:
    if path.is_dir():
        for name in (WEIGHTS_NAME, "pytorch_model.bin", "model.pth", "model.pt"):
            if (path / name).is_file():
                return path / name
        candidates = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".pt", ".bin", ".h5"))
        if len(candidates) == 1:
            return candidates[0]
        raise FileNotFoundError(f"no single weights file in directory {path} (found {[p.name for p in candidates]})")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    return path
