"""What every sub-command of the ``mobilenets`` command line shares: overrides, help text, the version.

One override syntax for every command that takes options for a model or a config: trailing
``KEY=VALUE`` arguments (``mobilenets profile mobilenet_v3_small small_input=true``), as ``train``
has; ``--set KEY=VALUE`` still works as an alias.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["RAW", "Parser", "add_overrides_argument", "examples", "override_items", "parse_set", "version", "wrap_description"]

#: The help formatter of every sub-command with an ``examples:`` epilog (keeps its line breaks).
RAW = argparse.RawDescriptionHelpFormatter


class Parser(argparse.ArgumentParser):
    """argparse's parser, with the closest name offered when a choice is mistyped (a command, a format, a
    target): argparse before Python 3.14 only lists the choices. Sub-command parsers inherit the class."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            from .._validate import did_you_mean

            names = [str(c) for c in action.choices]
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{did_you_mean(value, names)}; "
                                                 f"expected one of {', '.join(names)}")


def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """``key=value`` pairs (positional overrides or ``--set``); values parsed as YAML scalars
    (``true``, ``0.5``, ``[1, 2]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{item!r} is not a KEY=VALUE override (e.g. width_mult=0.5)")
        key, value = item.split("=", 1)
        if not key.strip():
            raise ValueError(f"{item!r} has no key before '='; expected KEY=VALUE (e.g. width_mult=0.5)")
        out[key.strip()] = yaml.safe_load(value)
    return out


def add_overrides_argument(p: argparse.ArgumentParser, what: str) -> None:
    """Trailing ``KEY=VALUE`` positionals plus the older ``--set KEY=VALUE`` alias, for ``what``."""
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", default=[],
                   help=f"{what}, e.g. width_mult=0.5 (values parsed as YAML: true, 0.5, [1, 2])")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="the same as a trailing KEY=VALUE (kept as an alias), repeatable")


def override_items(args: argparse.Namespace) -> list[str]:
    """``--set`` items then trailing ``KEY=VALUE`` items (a key given twice: the trailing one wins)."""
    return [*(getattr(args, "set", None) or []), *(getattr(args, "overrides", None) or [])]


def examples(*lines: str) -> str:
    """An ``examples:`` epilog for a sub-command's ``--help`` (used with RawDescriptionHelpFormatter)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def wrap_description(text: str) -> str:
    """A paragraph wrapped for a RawDescriptionHelpFormatter description (which keeps line breaks)."""
    return "\n".join(textwrap.wrap(" ".join(text.split()), 100))


def version() -> str:
    """The installed distribution's version (package metadata), else ``mobilenets.__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("mobilenets")
    except PackageNotFoundError:
        from .. import __version__

        return __version__
