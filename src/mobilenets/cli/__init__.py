"""The ``mobilenets`` command line: a thin layer over the importable API.

Each sub-command parses its arguments and calls one library function; nothing here is needed to use
the library from Python. Errors that come from bad input (``ValueError``, ``FileNotFoundError``) are
printed as one line and exit with status 2 instead of a traceback; hints in library messages that name
a Python function (``see mobilenets.list_models()``) are reworded to the command that does the same.

The sub-commands live in one module per group: :mod:`.train` (list, train, eval, predict),
:mod:`.convert` (weight conversion), :mod:`.deploy` (export, quantize, bench) and :mod:`.analysis`
(profile, experiment, report); :mod:`.common` holds what they share (the ``KEY=VALUE`` overrides and
the help text helpers). Nothing below this package imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import adapt, analysis, convert, deploy, train
from .common import (
    RAW,
    Parser,
    add_overrides_argument,
    examples,
    override_items,
    parse_set,
    version,
    wrap_description,
)

__all__ = [
    "add_overrides_argument",
    "build_parser",
    "cli_message",
    "examples",
    "main",
    "override_items",
    "parse_set",
    "version",
    "wrap_description",
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mobilenets", description="The MobileNet family: models, training, deployment.",
        formatter_class=RAW,
        epilog=examples("mobilenets train                      # the digits main job (about 90 s on 2 cores)",
                        "mobilenets eval runs/digits --json",
                        "mobilenets COMMAND --help             # options and examples of one command"),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order of `mobilenets --help`: profile; list, train, eval, predict; convert; export, quantize,
    # bench; adapt; experiment, report.
    analysis.register_profile(sub)
    train.register(sub)
    convert.register(sub)
    deploy.register(sub)
    adapt.register(sub)
    analysis.register(sub)
    return parser


#: Hints in library messages that name a Python call, and the command that does the same from a shell.
_CLI_HINTS = {
    "mobilenets.list_models()": "`mobilenets list`",
    "mobilenets.list_pretrained()": "`mobilenets list --pretrained`",
}


def cli_message(message: str) -> str:
    """A library error message as the command line shows it: Python-call hints become commands."""
    for python, command in _CLI_HINTS.items():
        message = message.replace(python, command)
    return message


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting ``KEY=VALUE`` overrides also follow options (``profile m --input-size 32 k=v``).

    argparse fills a ``nargs="*"`` positional only once, from the first run of positionals, so later
    ``KEY=VALUE`` items would be "unrecognized arguments"; they are appended to the command's overrides.
    """
    args, extra = parser.parse_known_args(argv)
    if extra:
        field = next((f for f in ("overrides", "items") if isinstance(getattr(args, f, None), list)), None)
        stray = [e for e in extra if e.startswith("-") or "=" not in e]
        if field is None or stray:
            _subparser(parser, getattr(args, "command", "") or "").error(
                f"unrecognized arguments: {' '.join(stray or extra)}")
        getattr(args, field).extend(extra)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input: one clear line, no traceback (the message names the value and what was expected).
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mobilenets {args.command}: error: {cli_message(str(msg))}", file=sys.stderr)
        return 2
