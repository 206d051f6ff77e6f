"""The ``mobilenets`` command line: a thin layer over the importable API.

Each sub-command parses its arguments and calls one library function; nothing here is needed to use
the library from Python. Errors that come from bad input (``ValueError``, ``FileNotFoundError``) are
printed as one line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

__all__ = ["main"]


def _parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values parsed as YAML scalars (``true``, ``0.5``, ``[1, 2]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r} invalid; expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


# ------------------------------------------------------------------------------------------ profile
def _cmd_profile(args: argparse.Namespace) -> int:
    from .analysis.profile import profile
    from .models import create_model

    kwargs = _parse_set(args.set)
    if args.width_mult is not None:
        kwargs["width_mult"] = args.width_mult
    model = create_model(args.model, **kwargs)
    size = args.input_size or model.pretrained_cfg["input_size"][-1]
    result = profile(model, size)
    if args.json:
        data = result.to_dict()
        data["model"] = args.model
        data["kwargs"] = kwargs
        print(json.dumps(data))
    else:
        print(f"{args.model} {kwargs or ''} @ {size}x{size}")
        print(result.format_table(max_rows=None if args.all_rows else 400))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .models import get_model_kwargs, list_models

    for name in list_models(args.pattern):
        if args.verbose:
            opts = ", ".join(f"{k}={v!r}" for k, v in get_model_kwargs(name).items())
            print(f"{name}: {opts}")
        else:
            print(name)
    return 0


# ---------------------------------------------------------------------------------------- plumbing
Command = Callable[[argparse.Namespace], int]


def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    try:
        from .engine.cli_commands import register
    except ImportError:  # the training engine is optional during development of the foundation
        return
    register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilenets", description="The MobileNet family: models, training, deployment.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("profile", help="parameters, MACs and per-layer cost of a model")
    p.add_argument("model", help="model name (see `mobilenets list`)")
    p.add_argument("--input-size", type=int, default=None, help="square input size (default: the model's)")
    p.add_argument("--width-mult", type=float, default=None, help="width multiplier α")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any create_model keyword, repeatable")
    p.add_argument("--json", action="store_true", help="print one JSON object (params, macs, rows, ...)")
    p.add_argument("--all-rows", action="store_true", help="do not truncate the per-layer table")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("list", help="registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'mobilenet_v3*'")
    p.add_argument("-v", "--verbose", action="store_true", help="show each model's keywords and defaults")
    p.set_defaults(func=_cmd_list)

    _add_train_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input: one clear line, no traceback (the message names the value and what was expected).
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mobilenets {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
