"""Plain-text, fixed-width table rendering for analysis reports.

Reports are printed to terminals and pasted into logs and issues, so they are rendered as plain text with
no dependency beyond the standard library (no ``rich``/``tabulate``), and every number formatter here is
deterministic so two reports of the same model diff cleanly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["format_count", "format_macs", "format_percent", "format_shape", "render_table"]


def format_count(value: int) -> str:
    """An exact integer with thousands separators (``4231976`` -> ``"4,231,976"``)."""
    return f"{int(value):,}"


def format_macs(macs: int, *, digits: int = 2) -> str:
    """MACs in millions, the unit the MobileNet papers report (``568748832`` -> ``"568.75 M"``)."""
    return f"{macs / 1e6:,.{digits}f} M"


def format_percent(fraction: float, *, digits: int = 2) -> str:
    """A fraction in [0, 1] as a percentage string (``0.9486`` -> ``"94.86%"``)."""
    return f"{100.0 * fraction:.{digits}f}%"


def format_shape(shape: Sequence[int]) -> str:
    """A tensor shape as ``CxHxW`` (``"-"`` for a shapeless value), compact enough for a table cell."""
    return "x".join(str(int(d)) for d in shape) if len(shape) else "-"


def render_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    align: str | None = None,
    indent: int = 0,
) -> str:
    """Render ``rows`` under ``headers`` as a fixed-width text table.

    ``align`` has one character per column, ``"l"`` or ``"r"``; by default the first column is left-aligned
    and the rest right-aligned (names left, numbers right, which is what every table here needs). Cells are
    converted with ``str``. Rows equal to ``None`` or empty render as a separator line, which lets callers
    set off a totals row.
    """
    materialised: list[list[str] | None] = [None if not row else [str(cell) for cell in row] for row in rows]
    ncols = len(headers)
    if align is None:
        align = "l" + "r" * (ncols - 1)
    if len(align) != ncols or set(align) - {"l", "r"}:
        raise ValueError(f"align={align!r}: expected {ncols} characters, each 'l' or 'r'")
    for row in materialised:
        if row is not None and len(row) != ncols:
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {ncols} (one per header)")
    widths = [len(h) for h in headers]
    for row in materialised:
        if row is not None:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    pad = " " * indent

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)]
        return (pad + "  ".join(parts)).rstrip()

    rule = pad + "  ".join("-" * w for w in widths)
    out = [line(list(headers)), rule]
    out.extend(rule if row is None else line(row) for row in materialised)
    return "\n".join(out)
