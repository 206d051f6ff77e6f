"""The one table renderer: fixed-width plain text or Markdown, for profiles, benchmarks and ``--help``.

Tables are printed to terminals and pasted into logs, issues and docs, so they are rendered as plain text
with no dependency beyond the standard library (no ``rich``/``tabulate``), and every number formatter here
is deterministic so two reports of the same model diff cleanly. This module imports nothing from the
project: any layer may use it.
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
    rule: bool = True,
    markdown: bool = False,
) -> str:
    """Render ``rows`` under ``headers`` as a fixed-width text table (or, with ``markdown``, a pipe table).

    ``align`` has one character per column, ``"l"`` or ``"r"``; by default the first column is left-aligned
    and the rest right-aligned (names left, numbers right). Cells are converted with ``str``. In text form
    the header is underlined by a dashed ``rule`` (``rule=False``: none), trailing spaces are stripped, and
    rows equal to ``None`` or empty render as a rule too, which lets callers set off a totals row. In
    Markdown form every line is ``| cell | ... |``, padded so the source reads as a table, and the line
    under the header is ``---`` (``---:`` for a right-aligned column).
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
    body = [row for row in materialised if row is not None] if markdown else materialised
    marks = ["---" if a == "l" else "---:" for a in align]
    widths = [max(len(h), len(m)) if markdown else len(h) for h, m in zip(headers, marks)]
    for row in body:
        if row is not None:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    pad = " " * indent

    def cells(row: Sequence[str]) -> list[str]:
        return [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]

    if markdown:
        return "\n".join(pad + "| " + " | ".join(cells(row)) + " |" for row in [list(headers), marks, *body])

    def line(row: Sequence[str]) -> str:
        return (pad + "  ".join(cells(row))).rstrip()

    dashes = pad + "  ".join("-" * w for w in widths)
    out = [line(list(headers)), *([dashes] if rule else [])]
    out.extend(dashes if row is None else line(row) for row in body)
    return "\n".join(out)
