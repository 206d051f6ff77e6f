"""Weights on the Hugging Face Hub: ``pretrained="hf-hub:ORG/REPO"``.

timm publishes its weights there (``hf-hub:timm/mobilenetv3_large_100.ra_in1k``): a repository holds
``model.safetensors`` (older ones ``pytorch_model.bin``) and a ``config.json`` naming timm's architecture
and its ``pretrained_cfg`` (mean/std, input size, crop, interpolation, class count). A repository in our
own format (``model.safetensors`` + the ``config.json`` :func:`mobilenets.weights.save_pretrained`
writes) works too, so a converted or fine-tuned model can be shared the same way.

Files are fetched with ``huggingface_hub.hf_hub_download`` into its cache (``$HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``) and read from there afterwards, also offline (``HF_HUB_OFFLINE=1``). A file
that is neither cached nor downloadable is a :class:`~mobilenets.weights.registry.WeightsNotAvailable` naming
the repository, the file and the command that fetches it. ``huggingface_hub`` is optional
(``pip install 'mobilenets[hub]'``); nothing here imports it until a hub reference is used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..models.native import CONFIG_NAME, WEIGHTS_NAME, WeightsError, read_config
from . import sources
from .native import restore_preprocessing
from .registry import WeightsNotAvailable

__all__ = ["HubCheckpoint", "HubNotInstalled", "is_hub_reference", "parse_hub_reference", "read_hub_config",
           "resolve_hub"]

HUB_PREFIXES = ("hf-hub:", "hf_hub:")  # timm accepts both spellings
# Tried in this order: timm's current repositories hold safetensors, its older ones a torch.save file.
WEIGHTS_FILES = (WEIGHTS_NAME, "pytorch_model.bin")
# timm's model_args that do not change the architecture (anything else would, and is refused).
_HARMLESS_MODEL_ARGS = {"num_classes", "in_chans", "drop_rate", "drop_path_rate"}

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*")
_EXAMPLE = "hf-hub:timm/mobilenetv3_large_100.ra_in1k"


class HubNotInstalled(ImportError, ValueError):
    """``huggingface_hub`` is needed for an ``hf-hub:`` reference but not installed.

    Also a ValueError, so that the command line reports it in one line like any other bad input
    (``mobilenets train model.pretrained=hf-hub:...`` on a machine without the extra).
    """


def is_hub_reference(value: object) -> bool:
    """Whether ``value`` is an ``hf-hub:ORG/REPO`` reference (never a local path: the colon says so)."""
    return isinstance(value, str) and value.startswith(HUB_PREFIXES)


def parse_hub_reference(reference: str) -> tuple[str, str | None]:
    """``"hf-hub:ORG/REPO[@REVISION]"`` -> ``("ORG/REPO", REVISION or None)``; a malformed one is a ValueError."""
    body = reference.split(":", 1)[1] if is_hub_reference(reference) else reference
    repo_id, _, revision = body.partition("@")
    if not _REPO_ID.fullmatch(repo_id) or (revision == "" and "@" in body):
        raise ValueError(f"pretrained={reference!r} invalid: expected hf-hub:ORG/REPO or hf-hub:ORG/REPO@REVISION "
                         f"(e.g. {_EXAMPLE})")
    return repo_id, revision or None


def _import_hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # not among the package's lazily loaded attributes
    except ImportError:
        raise HubNotInstalled(
            "hf-hub: weights are fetched with huggingface_hub, which is not installed: pip install 'mobilenets[hub]'"
        ) from None
    return huggingface_hub


def _cache_location(hub: Any, repo_id: str) -> Path:
    return Path(hub.constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))


class _NotFound(Exception):
    """A file the repository does not have (``remote``), or one neither cached nor reachable."""

    def __init__(self, filename: str, *, remote: bool) -> None:
        super().__init__(filename)
        self.remote = remote


def _download(repo_id: str, revision: str | None, filename: str) -> Path:
    """``hf_hub_download`` (cache first when offline) with its failures turned into one-line errors."""
    hub = _import_hub()
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    ref = f"hf-hub:{repo_id}" + (f"@{revision}" if revision else "")
    try:
        return Path(hub.hf_hub_download(repo_id, filename, revision=revision))
    except LocalEntryNotFoundError:
        # Neither cached nor reachable: offline mode, no network, or the hub is down. Whether the repo
        # has this file at all cannot be known; the caller tries the next candidate before giving up.
        raise _NotFound(filename, remote=False) from None
    except GatedRepoError:
        raise WeightsError(f"{ref}: the repository is gated; accept its terms on huggingface.co and log in "
                           "(hf auth login) to download it") from None
    except RepositoryNotFoundError:
        raise WeightsError(f"{ref}: no such repository on the Hugging Face Hub (or it is private: log in with "
                           f"hf auth login); expected e.g. {_EXAMPLE}") from None
    except RevisionNotFoundError:
        raise WeightsError(f"{ref}: revision {revision!r} not found in {repo_id}") from None
    except EntryNotFoundError:
        raise _NotFound(filename, remote=True) from None
    except HfHubHTTPError as exc:
        raise WeightsNotAvailable(f"{ref}: {filename} could not be downloaded ({str(exc).splitlines()[0]}); "
                                  f"try again, or pass pretrained=PATH to a local copy") from None
    except OSError as exc:  # a cache directory that cannot be written, a full disk
        raise WeightsNotAvailable(f"{ref}: {filename} could not be stored in the Hugging Face cache "
                                  f"{_cache_location(hub, repo_id).parent} ({exc})") from None


def _not_available(repo_id: str, revision: str | None, files: tuple[str, ...], what: str,
                   note: str = "") -> WeightsNotAvailable:
    """The registry's offline error, for the hub: the repository, the file, the cache, and the command."""
    hub = _import_hub()
    offline = bool(getattr(hub.constants, "HF_HUB_OFFLINE", False))
    why = "offline mode: HF_HUB_OFFLINE=1" if offline else "huggingface.co could not be reached"
    ref = f"hf-hub:{repo_id}" + (f"@{revision}" if revision else "")
    rev = f" --revision {revision}" if revision else ""
    return WeightsNotAvailable(
        f"{ref}: {what} is not in the Hugging Face cache ({_cache_location(hub, repo_id)}) and could not be "
        f"downloaded ({why}). Download it while online: hf download {repo_id} {' '.join(files)}{rev}{note} "
        "(into the same cache), or pass pretrained=PATH to a local copy"
    )


@dataclass(frozen=True)
class HubCheckpoint:
    """An ``hf-hub:`` reference resolved to cached files and what they say about the model to build.

    ``kwargs`` are the ``create_model`` keywords the repository implies (widths, width convention,
    minimalistic, class count; a native repository's saved keywords); ``source`` is the loader source
    (``timm``, ``timm_tf`` or ``native``), which also fixes padding, BatchNorm eps and V1's activation
    (:func:`mobilenets.weights.sources.architecture_options`). ``weights`` is ``None`` until the weights file
    was fetched (:func:`resolve_hub`; :func:`read_hub_config` reads only ``config.json``).
    """

    reference: str
    repo_id: str
    revision: str | None
    layout: str  # "timm" or "mobilenets"
    arch: str
    source: str
    config: dict[str, Any]
    config_path: Path
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None

    def apply_preprocessing(self, model: nn.Module) -> None:
        """Record the repository's preprocessing in ``model.pretrained_cfg`` (saved by save_pretrained)."""
        cfg = getattr(model, "pretrained_cfg", None)
        if not isinstance(cfg, dict):
            return
        if self.layout == "mobilenets":
            restore_preprocessing(model, self.config)
        else:
            timm_cfg = self.config.get("pretrained_cfg") or {}
            restored = {k: timm_cfg[k] for k in ("mean", "std", "input_size", "interpolation", "crop_pct")
                        if timm_cfg.get(k) is not None}
            if getattr(getattr(model, "arch", None), "small_input", False):  # a 32x32 model keeps its size
                restored.pop("input_size", None)
                restored.pop("crop_pct", None)
            restore_preprocessing(model, restored)
        cfg.update(tag=self.reference, source=self.source)


def _read_json(path: Path, reference: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise WeightsError(f"{reference}: {path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{reference}: {path} holds {type(config).__name__}, expected a JSON object")
    return config


def read_hub_config(reference: str) -> HubCheckpoint:
    """Fetch (or find cached) the repository's ``config.json`` and read the architecture it describes."""
    repo_id, revision = parse_hub_reference(reference)
    try:
        config_path = _download(repo_id, revision, CONFIG_NAME)
    except _NotFound as missing:
        if not missing.remote:
            raise _not_available(repo_id, revision, (CONFIG_NAME, WEIGHTS_NAME), CONFIG_NAME) from None
        raise WeightsError(f"{reference}: the repository has no {CONFIG_NAME}; expected a timm repository "
                           "or one written by mobilenets' save_pretrained") from None
    config = _read_json(config_path, reference)
    if config.get("format") == "mobilenets":
        config = read_config(config_path.parent)  # validates format and architecture
        return HubCheckpoint(reference, repo_id, revision, "mobilenets", config["architecture"], "native", config,
                             config_path, kwargs=dict(config.get("kwargs", {})))
    timm_arch = config.get("architecture")
    if not isinstance(timm_arch, str):
        raise WeightsError(f"{reference}: {config_path.name} names no architecture; expected timm's config.json "
                           "(\"architecture\": \"mobilenetv3_large_100\", ...) or mobilenets' (\"format\": \"mobilenets\")")
    try:
        arch, kwargs, source = sources.timm.architecture(timm_arch)
    except ValueError as exc:
        raise WeightsError(f"{reference}: {exc}") from None
    model_args = config.get("model_args") or {}
    if not isinstance(model_args, dict) or set(model_args) - _HARMLESS_MODEL_ARGS:
        raise WeightsError(f"{reference}: config.json's model_args {model_args!r} change timm's {timm_arch}; only "
                           f"{sorted(_HARMLESS_MODEL_ARGS)} can be reproduced")
    pretrained_cfg = config.get("pretrained_cfg") or {}
    num_classes = model_args.get("num_classes", config.get("num_classes", pretrained_cfg.get("num_classes")))
    if isinstance(num_classes, int) and not isinstance(num_classes, bool):
        kwargs["num_classes"] = num_classes
    if isinstance(model_args.get("in_chans"), int):
        kwargs["in_chans"] = model_args["in_chans"]
    return HubCheckpoint(reference, repo_id, revision, "timm", arch, source, config, config_path, kwargs=kwargs)


def resolve_hub(reference: str) -> HubCheckpoint:
    """:func:`read_hub_config`, then fetch the weights file (``model.safetensors``, else ``pytorch_model.bin``)."""
    checkpoint = read_hub_config(reference)
    candidates = (WEIGHTS_NAME,) if checkpoint.layout == "mobilenets" else WEIGHTS_FILES
    absent = []
    for filename in candidates:
        try:
            path = _download(checkpoint.repo_id, checkpoint.revision, filename)
        except _NotFound as missing:
            absent.append(missing.remote)
            continue
        return HubCheckpoint(**{**checkpoint.__dict__, "weights": path})
    what = " or ".join(candidates)
    if all(absent):
        raise WeightsError(f"{reference}: the repository has no weights file (expected {what})")
    files = (CONFIG_NAME, *candidates[:1])
    note = f" (or {candidates[1]}, which older timm repositories hold instead)" if len(candidates) > 1 else ""
    raise _not_available(checkpoint.repo_id, checkpoint.revision, files, what, note)
