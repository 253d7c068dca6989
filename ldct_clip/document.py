"""A report document: blocks rendered to Markdown and self-contained HTML.

The evaluation report (:mod:`ldct_clip.evaluation.report`) and the generalization benchmark's overview
(:mod:`ldct_clip.generalization.report`) are each written twice, as ``report.md`` and ``report.html``. Both
are rendered here from one list of :class:`Block`, so the two files of a report always say the same and the
two reports share one renderer. The HTML is self-contained: figures are embedded as base64 PNG data URIs,
every text is passed through :func:`html.escape`, and only an ``embed`` block (a fragment such as the
interactive viewer of :mod:`ldct_clip.viewer`) is inserted as is. Figures are also written as files under
:data:`FIGURE_FOLDER`, which the Markdown links to.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from matplotlib.figure import Figure

__all__ = ["DPI", "FIGURE_FOLDER", "STYLE", "Block", "Cell", "Kind", "Link", "finite_json", "png_bytes",
           "to_html", "to_markdown"]

DPI = 100
"""Resolution of the report figures, in dots per inch."""
FIGURE_FOLDER = "figures"
"""Folder, beside the report files, of the figure files a Markdown figure links to."""
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1em}th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:left}
th{background:#eee}td:nth-child(n+2){font-variant-numeric:tabular-nums}
.warning{background:#fff3cd;border:2px solid #d39e00;padding:0.8em;font-weight:bold}
figure{margin:1em 0}img{max-width:100%}figcaption{font-style:italic;color:#444}
"""
"""Default CSS of :func:`to_html` (it styles the ``warning`` blocks)."""

Kind = Literal["heading", "paragraph", "warning", "list", "table", "figure", "embed"]


@dataclass(frozen=True)
class Link:
    """A list item or table cell linking to another report document.

    ``path`` is that document's path without suffix (``conditions/a/report``): Markdown links to
    ``path + ".md"``, HTML to ``path + ".html"``, so each format links within its own format.
    """

    text: str
    path: str


Cell = str | Link
"""A list item or table cell: plain text or a :class:`Link`."""


@dataclass(frozen=True)
class Block:
    """One element of a report document.

    ``kind`` says which fields it uses:

    - ``heading``: ``text`` at ``level`` (1 for the title);
    - ``paragraph``, ``warning``: ``text``;
    - ``list``: ``items``;
    - ``table``: ``header`` (text) and ``rows`` (cells);
    - ``figure``: ``text`` the PNG's file name (under :data:`FIGURE_FOLDER`, and the key of its bytes for
      :func:`to_html`), ``caption``;
    - ``embed``: ``text`` a self-contained HTML fragment, inserted unescaped after its ``caption``; Markdown
      cannot hold it and shows ``fallback`` instead.
    """

    kind: Kind
    text: str = ""
    items: tuple[Cell, ...] = ()
    header: tuple[str, ...] = ()
    rows: tuple[tuple[Cell, ...], ...] = ()
    level: int = 2
    caption: str = ""
    fallback: str = ""

    def __post_init__(self) -> None:
        if self.kind not in get_args(Kind):
            raise ValueError(f"unknown block kind {self.kind!r}; one of {', '.join(get_args(Kind))}")


def _markdown_cell(cell: Cell) -> str:
    """A cell as Markdown, ``|`` escaped so that it stays in its table column."""
    return _markdown_item(cell).replace("|", "\\|")


def _markdown_item(cell: Cell) -> str:
    return f"[{cell.text}]({cell.path}.md)" if isinstance(cell, Link) else cell


def to_markdown(blocks: list[Block]) -> str:
    """The document as Markdown: blocks separated by a blank line, ending with a newline; ``|`` is escaped in
    table cells, a figure is its image link and its caption in italics.

    >>> print(to_markdown([Block("heading", "Benchmark", level=1), Block("warning", "a random encoder"),
    ...                    Block("table", header=("Condition", "PSNR (dB)"),
    ...                          rows=((Link("10% dose", "conditions/dose10/report"), "31.20"),))]))
    # Benchmark
    <BLANKLINE>
    > **Warning:** a random encoder
    <BLANKLINE>
    | Condition | PSNR (dB) |
    |---|---|
    | [10% dose](conditions/dose10/report.md) | 31.20 |
    <BLANKLINE>
    """
    lines: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            lines.append("#" * b.level + " " + b.text)
        elif b.kind == "warning":
            lines.append(f"> **Warning:** {b.text}")
        elif b.kind == "paragraph":
            lines.append(b.text)
        elif b.kind == "list":
            lines += [f"- {_markdown_item(item)}" for item in b.items]
        elif b.kind == "table":
            lines.append("| " + " | ".join(_markdown_cell(cell) for cell in b.header) + " |")
            lines.append("|" + "|".join("---" for _ in b.header) + "|")
            lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in b.rows]
        elif b.kind == "figure":
            lines.append(f"![{b.text}]({FIGURE_FOLDER}/{b.text})")
            if b.caption:
                lines += ["", f"*{b.caption}*"]
        elif b.kind == "embed":
            lines.append(b.fallback)
        lines.append("")
    return "\n".join(lines)


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{html.escape(cell.path + ".html")}">{html.escape(cell.text)}</a>'
    return html.escape(cell)


def to_html(blocks: list[Block], figures: dict[str, bytes], title: str | None = None, style: str = STYLE) -> str:
    """The document as one self-contained HTML page, one element per line.

    Args:
        blocks: the document.
        figures: PNG bytes by file name, for every ``figure`` block (embedded as data URIs).
        title: the page title; by default the text of the first heading.
        style: the page's CSS.
    """
    esc = html.escape
    if title is None:
        title = next((b.text for b in blocks if b.kind == "heading"), "")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
             f"<style>{style}</style></head><body>"]
    for b in blocks:
        if b.kind == "heading":
            parts.append(f"<h{b.level}>{esc(b.text)}</h{b.level}>")
        elif b.kind == "warning":
            parts.append(f'<p class="warning">Warning: {esc(b.text)}</p>')
        elif b.kind == "paragraph":
            parts.append(f"<p>{esc(b.text)}</p>")
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_html_cell(item)}</li>" for item in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{_html_cell(cell)}</th>" for cell in b.header)
            body = "".join("<tr>" + "".join(f"<td>{_html_cell(cell)}</td>" for cell in row) + "</tr>" for row in b.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b.kind == "figure":
            data = base64.b64encode(figures[b.text]).decode("ascii")
            parts.append(f'<figure><img alt="{esc(b.caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{esc(b.caption)}</figcaption></figure>")
        elif b.kind == "embed":
            parts.append(f"<p>{esc(b.caption)}</p>")
            parts.append(b.text)
    parts.append("</body></html>")
    return "\n".join(parts)


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """``fig`` as PNG bytes, for a figure file and the data URI of :func:`to_html`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth of dicts, lists and tuples, replaced by None, for
    ``json.dumps(..., allow_nan=False)`` (strict JSON has no inf or NaN); tuples become lists.

    >>> finite_json({"psnr": [float("inf"), 1.5], "ci": (float("nan"), None)})
    {'psnr': [None, 1.5], 'ci': [None, None]}
    """
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
