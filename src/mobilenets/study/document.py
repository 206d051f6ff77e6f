"""A report as a document: titled tables and PNG figures, written as one self-contained HTML file and a
Markdown twin.

Why one self-contained file: a report is shared by mail or opened on an air-gapped machine, so every image
is embedded as a base64 PNG and there is no external CSS or JavaScript (no script at all). The Markdown
twin carries the same tables and links the same figures, written as PNG files beside it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Figure", "Report", "Table"]


@dataclass
class Table:
    """A titled table; cells are already formatted strings."""

    id: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    """A titled PNG figure."""

    id: str
    title: str
    png: bytes
    note: str = ""


@dataclass
class Report:
    """Everything a report shows; rendered by :meth:`html` and :meth:`markdown`."""

    title: str
    intro: list[str]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def html(self) -> str:
        """A self-contained HTML document: inline CSS, images as data URIs, no script."""
        parts = [
            "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(self.title)}</title>", f"<style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        parts += [f"<p>{html.escape(p)}</p>" for p in self.intro]
        for t in self.tables:
            parts.append(f'<section><h2>{html.escape(t.title)}</h2><table id="{t.id}"><thead><tr>')
            parts += [f"<th>{html.escape(h)}</th>" for h in t.headers]
            parts.append("</tr></thead><tbody>")
            for row in t.rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            parts.append("</tbody></table>")
            if t.note:
                parts.append(f'<p class="note">{html.escape(t.note)}</p>')
            parts.append("</section>")
        for f in self.figures:
            data = base64.b64encode(f.png).decode("ascii")
            parts.append(f"<section><h2>{html.escape(f.title)}</h2><figure>"
                         f'<img id="{f.id}" alt="{html.escape(f.title)}" src="data:image/png;base64,{data}">')
            if f.note:
                parts.append(f"<figcaption>{html.escape(f.note)}</figcaption>")
            parts.append("</figure></section>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def markdown(self, image_dir: Path, rel_to: Path) -> str:
        """Markdown with the same tables; figures are written as PNGs into ``image_dir`` and linked."""
        image_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"# {self.title}", "", *[f"{p}\n" for p in self.intro]]
        for t in self.tables:
            lines += [f"## {t.title}", "", "| " + " | ".join(_md(h) for h in t.headers) + " |",
                      "|" + "|".join("---" for _ in t.headers) + "|"]
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in t.rows]
            lines += ["", t.note, ""] if t.note else [""]
        for f in self.figures:
            path = image_dir / f"{f.id}.png"
            path.write_bytes(f.png)
            rel = Path(_relpath(path, rel_to)).as_posix()
            lines += [f"## {f.title}", "", f"![{f.title}]({rel})", ""]
            if f.note:
                lines += [f.note, ""]
        return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #ccc;"
    "padding:.25em .6em;text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}"
    "tr:nth-child(even){background:#fafafa}img{max-width:100%;height:auto;border:1px solid #eee}"
    ".note,figcaption{color:#555;font-size:.85em;max-width:60em}h2{margin-top:1.6em}"
)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)
