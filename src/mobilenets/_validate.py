"""The one set of argument checks and "did you mean" suggestions every layer uses.

Bad input must fail with one line that names the bad value and what was expected, and an unknown name
should point at the closest known one. Keeping the checks here (below every other module) means one
wording and one similarity cutoff across models, data, config, weights and the command line.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "SUGGEST_CUTOFF",
    "check_choice",
    "check_number",
    "check_prob",
    "closest",
    "did_you_mean",
]

SUGGEST_CUTOFF = 0.6
"""Similarity (difflib ratio, 0..1) an option needs before it is offered as "did you mean"."""


def closest(value: object, options: Iterable[object], *, key: Callable[[str], str] | None = None) -> str | None:
    """The option most similar to ``value`` (case-insensitive), or None when none is similar enough.

    ``key`` maps an option to the text compared (e.g. the last part of a dotted config key); among
    equally similar options the first in ``options`` wins, so callers order them by preference.
    """
    text = str(value).lower()
    best: tuple[float, str] | None = None
    for option in options:
        candidate = str(option)
        compared = (key(candidate) if key else candidate).lower()
        score = difflib.SequenceMatcher(None, text, compared).ratio()
        if score >= SUGGEST_CUTOFF and (best is None or score > best[0]):
            best = (score, candidate)
    return None if best is None else best[1]


def did_you_mean(value: object, options: Iterable[object], *, what: str = "") -> str:
    """``"; did you mean 'x'?"`` for the closest option (``what`` names it: "the tag"), else ``""``."""
    match = closest(value, options)
    if match is None:
        return ""
    return f"; did you mean {what + ' ' if what else ''}{match!r}?"


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Refuse ``value`` unless it is one of ``choices``, listing them and the closest one."""
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise ValueError(f"{name}={value!r} invalid; expected one of {shown}{hint}")


def check_number(name: str, value: object, ok: Callable[[float], bool], allowed: str) -> float:
    """``value`` as a float if it is a real number (not a bool or a string) with ``ok(value)``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name}={value!r} invalid; expected {allowed}")
    return float(value)


def check_prob(name: str, value: object, *, inclusive: bool = True) -> float:
    """``value`` as a probability: ``0 <= value <= 1`` (``inclusive=False``: ``< 1``, e.g. dropout)."""
    if inclusive:
        return check_number(name, value, lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]")
    return check_number(name, value, lambda v: 0.0 <= v < 1.0, f"a number with 0 <= {name} < 1")
