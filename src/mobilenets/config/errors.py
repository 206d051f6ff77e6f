"""The one error type of the config package: a problem with a value, named by its full dotted key."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration problem, reported with the full dotted key it concerns.

    Subclasses :class:`ValueError` so callers that only know "bad value" still catch it. ``key``
    is kept separately from ``message`` so that :func:`validate` can prefix the section name
    (``lr`` -> ``optim.lr``) to errors raised by a section's own ``validate()`` method, which does
    not know where in the tree it sits.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.message = message
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)

    def prefixed(self, prefix: str) -> ConfigError:
        """Return the same error with ``prefix.`` put in front of its key."""
        if not prefix or self.key is None:
            return self
        return ConfigError(self.message, key=f"{prefix}.{self.key}")
