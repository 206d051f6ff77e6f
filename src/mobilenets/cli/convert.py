"""``mobilenets convert``: a torchvision/timm/Keras checkpoint (or a registry tag) -> the native format.

::

    mobilenets convert mobilenet_v3_large-8738ca79.pth --arch mobilenet_v3_large --out mnv3l
    mobilenets convert tf_mobilenetv3_large_100-427764d5.pth --source timm_tf --arch mobilenet_v3_large \\
        width_convention=timm --out mnv3l_tf
    mobilenets convert weights_mobilenet_v3_small_224_1.0_float.h5 --arch mobilenet_v3_small \\
        width_convention=keras --out mnv3s_keras
    mobilenets convert mobilenet_v2.tv_in1k --out mnv2        # a registry tag brings its own --arch

The output directory holds ``model.safetensors`` + ``config.json`` and loads with
``mobilenets.from_pretrained(DIR)`` without the source library. ``num_classes`` is read from the file
unless ``num_classes=N`` (or ``--set num_classes=N``) says otherwise; the source's padding, BatchNorm eps and normalisation are
recorded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import RAW, add_overrides_argument, examples, override_items, parse_set

__all__ = ["convert", "register"]


def _file_num_classes(path: Path) -> int | None:
    """The class count a checkpoint's classifier has, without building a model (None if unknown)."""
    from ..weights import load_state_dict_file, sniff_format, sources

    if sniff_format(path) == "hdf5":
        kf = sources.keras.read_keras_file(path)
        if kf.layout == "legacy":
            for name in ("conv_preds", "predictions", "logits"):
                if name in kf.by_name:
                    return int(kf.by_name[name][0].shape[-1])
            return None
        # Keras 3: the classifier is the last Dense (V2) or the last Conv2D (V1, V3).
        group = kf.by_class.get("dense") or kf.by_class.get("conv2d") or []
        return int(group[-1][1][0].shape[-1]) if group else None
    state = load_state_dict_file(path)
    weights = [k for k in state if k.startswith("classifier") and k.endswith("weight") and state[k].ndim == 2]
    return int(state[sorted(weights, key=lambda k: (k.count("."), k))[-1]].shape[0]) if weights else None


def convert(
    src: str | Path,
    out: str | Path,
    *,
    arch: str | None = None,
    source: str = "auto",
    kwargs: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
    allow_unverified: bool = False,
) -> Path:
    """Convert ``src`` (a weights file, a registry tag or ``hf-hub:ORG/REPO``) for ``arch`` into the native format."""
    from ..weights import create_model, load_weights, pretrained_kwargs, registry, save_pretrained
    from ..weights.files import _resolve_weights_path
    from ..weights.hub import is_hub_reference, resolve_hub

    kwargs = dict(kwargs or {})
    src_str = str(src)
    checkpoint = None
    if not Path(src_str).exists() and registry.is_tag(src_str):
        entry = registry.get_pretrained(src_str)
        if arch not in (None, entry.arch):
            raise ValueError(f"tag {entry.tag!r} holds {entry.arch} weights, not {arch}")
        arch, source = entry.arch, entry.source
        path = registry.fetch(entry, allow_unverified=allow_unverified)
        kwargs = pretrained_kwargs(arch, src_str, kwargs)
    elif is_hub_reference(src_str):  # hf-hub:ORG/REPO brings its architecture like a tag
        entry = None
        checkpoint = resolve_hub(src_str)
        if arch not in (None, checkpoint.arch):
            raise ValueError(f"{src_str} holds {checkpoint.arch} weights, not {arch}")
        arch, source, path = checkpoint.arch, checkpoint.source, checkpoint.weights
        kwargs = pretrained_kwargs(arch, src_str, kwargs)
    else:
        entry = None
        path = Path(src_str)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found (neither a file nor a registry tag; see mobilenets.list_pretrained())")
        path = _resolve_weights_path(path)  # a directory holding one weights file
        if arch is None:
            raise ValueError("--arch is required for a weights file (e.g. --arch mobilenet_v3_large)")
        if "num_classes" not in kwargs:
            found = _file_num_classes(path)
            if found is not None:
                kwargs["num_classes"] = found
        kwargs = pretrained_kwargs(arch, path, kwargs, source=source)  # eps, padding, V1's ReLU6
    model = create_model(arch, **kwargs)
    load_weights(model, path, source=source)
    if entry is not None:
        entry.apply_preprocessing(model)
    elif checkpoint is not None:
        checkpoint.apply_preprocessing(model)
    names = class_names
    if names is not None and len(names) != model.num_classes:
        raise ValueError(f"{len(names)} class names given for a {model.num_classes}-class model")
    return save_pretrained(model, out, class_names=names)


def _cmd_convert(args: argparse.Namespace) -> int:
    names = None
    if args.class_names:
        text = Path(args.class_names).read_text()
        names = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        out = convert(args.src, args.out, arch=args.arch, source=args.source, kwargs=parse_set(override_items(args)),
                      class_names=names, allow_unverified=args.allow_unverified)
    except ImportError as exc:  # h5py missing for a Keras file: an install problem, said in one line
        raise ValueError(str(exc)) from None
    from ..weights import read_config

    config = read_config(out)
    print(
        f"wrote {out}/model.safetensors + config.json: {config['architecture']} {config['kwargs']} "
        f"from {config.get('source', args.source)} weights; "
        f"inputs normalised with mean {config['mean']} std {config['std']}"
    )
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``convert`` sub-command to ``mobilenets``' argument parser (``add_subparsers()`` result)."""
    from ..weights.sources import SOURCES

    p = subparsers.add_parser(
        "convert", help="convert torchvision/timm/Keras weights to the native format",
        formatter_class=RAW,
        description="Convert a torchvision or timm state dict (.pth/.pt/.bin/.safetensors), a Keras weights file\n"
        "(.h5/.weights.h5) or a registry tag into model.safetensors + config.json. Trailing KEY=VALUE\n"
        "arguments are create_model keywords.",
        epilog=examples(
            "mobilenets convert mobilenet_v2.tv_in1k --out weights/v2      # a tag brings its own --arch",
            "mobilenets convert mobilenet_v3_large-8738ca79.pth --arch mobilenet_v3_large --out weights/v3l",
            "mobilenets convert tf_mobilenetv3_large_100.pth --source timm_tf --arch mobilenet_v3_large "
            "width_convention=timm --out weights/v3l_tf",
            "mobilenets list --pretrained                                  # the registry tags",
        ),
    )
    p.add_argument("src", help="weights file, or a registry tag such as mobilenet_v3_large.tv_in1k "
                   "(see `mobilenets list --pretrained`)")
    add_overrides_argument(p, "create_model keyword (width_mult=0.75, width_convention=timm, num_classes=N, ...)")
    p.add_argument("--source", default="auto", choices=SOURCES,
                   help="who wrote the file (default: detected; timm_tf = timm's tf_ ports)")
    p.add_argument("--arch", default=None, help="model name, e.g. mobilenet_v3_large (implied by a tag)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--class-names", default=None, help="text file with one class name per line")
    p.add_argument("--allow-unverified", action="store_true",
                   help="accept a registry file published without a checksum")
    p.set_defaults(func=_cmd_convert)
    return p
