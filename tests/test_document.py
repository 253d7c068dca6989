"""ldct_clip.document: each block kind in Markdown and HTML, escaping, embedded figures, strict JSON."""

from __future__ import annotations

import base64
import json
import math

import pytest
from matplotlib.figure import Figure

from ldct_clip.document import FIGURE_FOLDER, Block, Link, finite_json, png_bytes, to_html, to_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figure() -> bytes:
    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1], [1, 0])
    return png_bytes(fig)


def _document() -> list[Block]:
    return [
        Block("heading", "Report <1> & co", level=1),
        Block("warning", "random <encoder> & weights"),
        Block("paragraph", "a < b & c"),
        Block("heading", "Details", level=3),
        Block("list", items=("first & <item>", Link("the <other> report", "conditions/a&b/report"))),
        Block("table", header=("Condition", "PSNR | dB"),
              rows=((Link("dose 10%", "conditions/dose10/report"), "31.2 <best>"), ("a|b", "&"))),
        Block("figure", "psnr.png", caption="PSNR <along> z & more"),
        Block("embed", '<div id="viewer"><script>let x = 1 < 2;</script></div>', caption="viewer <of> slices",
              fallback="viewer of slices. Open report.html to use it."),
    ]


def test_markdown_of_every_block_kind() -> None:
    markdown = to_markdown(_document())
    assert markdown == (
        "# Report <1> & co\n"
        "\n"
        "> **Warning:** random <encoder> & weights\n"
        "\n"
        "a < b & c\n"
        "\n"
        "### Details\n"
        "\n"
        "- first & <item>\n"
        "- [the <other> report](conditions/a&b/report.md)\n"
        "\n"
        "| Condition | PSNR \\| dB |\n"
        "|---|---|\n"
        "| [dose 10%](conditions/dose10/report.md) | 31.2 <best> |\n"
        "| a\\|b | & |\n"
        "\n"
        f"![psnr.png]({FIGURE_FOLDER}/psnr.png)\n"
        "\n"
        "*PSNR <along> z & more*\n"
        "\n"
        "viewer of slices. Open report.html to use it.\n"
    )
    assert "<script>" not in markdown  # an embed is HTML only


def test_html_escapes_all_text_and_links_to_html() -> None:
    figure = _figure()
    page = to_html(_document(), {"psnr.png": figure})
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</body></html>")
    assert "<title>Report &lt;1&gt; &amp; co</title>" in page
    assert "<h1>Report &lt;1&gt; &amp; co</h1>" in page and "<h3>Details</h3>" in page
    assert '<p class="warning">Warning: random &lt;encoder&gt; &amp; weights</p>' in page
    assert "<p>a &lt; b &amp; c</p>" in page
    assert ('<ul><li>first &amp; &lt;item&gt;</li>'
            '<li><a href="conditions/a&amp;b/report.html">the &lt;other&gt; report</a></li></ul>') in page
    assert ("<table><thead><tr><th>Condition</th><th>PSNR | dB</th></tr></thead><tbody>"
            '<tr><td><a href="conditions/dose10/report.html">dose 10%</a></td><td>31.2 &lt;best&gt;</td></tr>'
            "<tr><td>a|b</td><td>&amp;</td></tr></tbody></table>") in page
    assert "report.md" not in page
    # the embed is inserted as is, after its escaped caption
    assert '<p>viewer &lt;of&gt; slices</p>\n<div id="viewer"><script>let x = 1 < 2;</script></div>' in page
    assert "<style>" in page and ".warning{" in page


def test_html_embeds_figures_as_data_uris() -> None:
    figure = _figure()
    assert figure.startswith(PNG_SIGNATURE)
    page = to_html(_document(), {"psnr.png": figure})
    uri = "data:image/png;base64," + base64.b64encode(figure).decode("ascii")
    assert (f'<figure><img alt="PSNR &lt;along&gt; z &amp; more" src="{uri}">'
            "<figcaption>PSNR &lt;along&gt; z &amp; more</figcaption></figure>") in page
    assert f"{FIGURE_FOLDER}/psnr.png" not in page  # self-contained: no reference to the figure file
    with pytest.raises(KeyError):
        to_html(_document(), {})


def test_html_title_and_style_can_be_given() -> None:
    page = to_html([Block("heading", "Long title", level=1)], {}, title="Short & sweet", style="p{color:red}")
    assert "<title>Short &amp; sweet</title>" in page and "<style>p{color:red}</style>" in page
    assert "<title></title>" in to_html([Block("paragraph", "no heading")], {})


def test_unknown_block_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown block kind 'text'"):
        Block("text", "x")  # type: ignore[arg-type]


def test_finite_json_replaces_nested_non_finite_floats() -> None:
    value = {"a": math.inf, "b": [1.0, -math.inf, {"c": math.nan, "d": (2, math.nan)}], "e": "nan", "f": None,
             "g": 3}
    cleaned = finite_json(value)
    assert cleaned == {"a": None, "b": [1.0, None, {"c": None, "d": [2, None]}], "e": "nan", "f": None, "g": 3}
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == cleaned
    assert value["a"] == math.inf  # the input is left alone
