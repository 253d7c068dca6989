"""Build the interactive before/after viewer: an HTML fragment to embed in a report, or a standalone page.

The fragment is one ``<style>``, one ``<div class="ldctv">`` holding the data (a JSON description and one
``<script type="application/octet-stream">`` per pane with one packed slice per line, see
:mod:`ldct_clip.viewer.data`) and one ``<script>`` that runs ``viewer.js`` on that div. It uses no element
ids and no global names besides the function ``ldctvStart``, and every class starts with ``ldctv-``, so
several viewers can sit on one page. Nothing is loaded from the network: the page works from ``file://``.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ldct_clip.atomic import partial_path
from ldct_clip.data.hu import WINDOWS
from ldct_clip.viewer.data import ENCODING, pack_slice

__all__ = ["DIFF_RANGE_HU", "METRIC_DECIMALS", "VIEWER_WINDOWS", "Pane", "SliceLabel", "viewer_html", "write_viewer"]

VIEWER_WINDOWS: tuple[str, ...] = ("abdomen", "lung", "bone", "full")
"""Window presets offered by the viewer (names of :data:`ldct_clip.data.hu.WINDOWS`); the first is the default."""
DIFF_RANGE_HU = 100
"""Default colour range of the difference pane: ±100 HU spans blue to red."""
METRIC_DECIMALS: Mapping[str, int] = MappingProxyType({"psnr": 2, "ssim": 4})
"""Decimals shown in the page per metric (formatted here, by Python, so they match the report's tables)."""


@dataclass(frozen=True)
class Pane:
    """One column of the viewer: a short unique ``key`` (used in ``metrics``), a ``label`` and Z×Y×X HU.

    >>> Pane("low", "Low dose", np.zeros((2, 8, 8), np.float32)).hu.shape
    (2, 8, 8)
    """

    key: str
    label: str
    hu: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"pane key must be a non-empty string, got {self.key!r}")
        hu = np.asarray(self.hu)
        if hu.ndim != 3 or min(hu.shape) < 1:
            raise ValueError(f"pane {self.key!r}: hu must be a non-empty Z×Y×X array, got shape {hu.shape}")
        if not np.isfinite(hu).all():
            raise ValueError(f"pane {self.key!r}: hu holds NaN or infinite values")
        object.__setattr__(self, "hu", hu)


@dataclass(frozen=True)
class SliceLabel:
    """What the viewer says about one slice: its index in the series, its position in mm and its patient."""

    index: int
    z_mm: float
    patient: str


def viewer_html(
    panes: Sequence[Pane],
    slices: Sequence[SliceLabel],
    metrics: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]] | None = None,
    title: str = "",
    *,
    reference: str | None = None,
) -> str:
    """A self-contained HTML fragment (``<style>``, ``<div>``, ``<script>``) showing ``panes`` side by side.

    Args:
        panes: the images, all of one Z×Y×X shape, in display order (e.g. low dose, methods, full dose).
        slices: one label per slice (Z of them).
        metrics: ``metrics[preset][pane_key] = {"psnr": [Z values], "ssim": [Z values]}``; the page shows the
            values of the preset chosen in it, rounded to :data:`METRIC_DECIMALS`. Panes without an entry show
            none; NaN shows as "–".
        title: shown above the panes.
        reference: key of the full-dose pane: it is labelled "reference" and the page offers a difference
            pane (any other pane minus it, in HU); None offers no difference pane.

    HU are rounded to 1 HU (:data:`ldct_clip.viewer.data.HU_PRECISION`) and clipped to the int16 range.

    >>> hu = np.zeros((1, 4, 4), np.float32)
    >>> fragment = viewer_html([Pane("low", "Low dose", hu)], [SliceLabel(0, 0.0, "P1")], title="demo")
    >>> fragment.startswith("<style>"), fragment.count('type="application/octet-stream"'), " id=" in fragment
    (True, 1, False)
    """
    return _build(panes, slices, metrics, title, reference, standalone=False)


def _build(panes: Sequence[Pane], slices: Sequence[SliceLabel], metrics: Mapping | None, title: str,
           reference: str | None, standalone: bool) -> str:
    """The fragment of :func:`viewer_html`; ``standalone`` pages take the keyboard without a click."""
    shape = _check(panes, slices, metrics, reference)
    description = {
        "title": str(title),
        "shape": list(shape),
        "encoding": ENCODING,
        "panes": [{"key": pane.key, "label": pane.label} for pane in panes],
        "slices": [{"index": int(s.index), "z_mm": float(s.z_mm), "patient": str(s.patient)} for s in slices],
        "metrics": _metrics_json(metrics),
        "reference": reference,
        "windows": {name: list(WINDOWS[name]) for name in VIEWER_WINDOWS},
        "default_window": VIEWER_WINDOWS[0],
        "diff_range": DIFF_RANGE_HU,
        "pane_px": int(min(384, max(256, shape[1], shape[2]))),
        "standalone": standalone,
    }
    return _fragment(description, panes)


def write_viewer(
    path: str | os.PathLike[str],
    panes: Sequence[Pane],
    slices: Sequence[SliceLabel],
    metrics: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]] | None = None,
    title: str = "",
    *,
    reference: str | None = None,
) -> Path:
    """Write a standalone HTML page holding one :func:`viewer_html` viewer (atomically); return its path.

    The standalone page takes the keyboard as soon as it opens (no click needed first).
    """
    target = Path(path)
    body = _build(panes, slices, metrics, title, reference, standalone=True)
    name = html.escape(title or "ldct_clip viewer")
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{name}</title>\n'
            '<style>body { margin: 0; padding: 8px; background: #0d0e10; }</style>\n</head>\n<body>\n'
            f"{body}\n</body>\n</html>\n")
    temp = partial_path(target)
    try:
        temp.write_text(page, encoding="utf-8")
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def _fragment(description: dict, panes: Sequence[Pane]) -> str:
    """Assemble style, data and script; slices are packed on all cores (zlib releases the GIL)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        packed = [list(pool.map(pack_slice, pane.hu)) for pane in panes]
    meta = json.dumps(description, ensure_ascii=False).replace("<", "\\u003c")  # no "</script>" inside
    css, script = _asset("viewer.css"), _asset("viewer.js")
    data = "".join('<script type="application/octet-stream" class="ldctv-data">\n' + "\n".join(texts) + "\n</script>\n"
                   for texts in packed)
    return (f"<style>\n{css}</style>\n"
            f'<div class="ldctv">\n<script type="application/json" class="ldctv-meta">{meta}</script>\n{data}</div>\n'
            f"<script>\n{script}\nldctvStart(document.currentScript.previousElementSibling);\n</script>\n")


@cache
def _asset(name: str) -> str:
    """A file shipped beside this module (package data); it must not close its own element early."""
    text = resources.files("ldct_clip.viewer").joinpath(name).read_text(encoding="utf-8")
    assert "</script" not in text.lower() and "</style" not in text.lower(), name
    return text


def _check(panes: Sequence[Pane], slices: Sequence[SliceLabel], metrics: Mapping | None,
           reference: str | None) -> tuple[int, int, int]:
    """Validate the arguments of :func:`viewer_html`; return the common Z×Y×X shape."""
    if not panes:
        raise ValueError("viewer needs at least one pane")
    keys = [pane.key for pane in panes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"pane keys must be unique, got {keys}")
    shape = panes[0].hu.shape
    for pane in panes:
        if pane.hu.shape != shape:
            raise ValueError(f"pane {pane.key!r} has shape {pane.hu.shape} but pane {keys[0]!r} has {shape}")
    if len(slices) != shape[0]:
        raise ValueError(f"{len(slices)} slice labels for {shape[0]} slices")
    if reference is not None and reference not in keys:
        raise ValueError(f"reference {reference!r} is not a pane key; keys: {', '.join(keys)}")
    for preset, by_pane in (metrics or {}).items():
        for key, values in by_pane.items():
            if key not in keys:
                raise ValueError(f"metrics[{preset!r}] names pane {key!r}, not a pane; keys: {', '.join(keys)}")
            for metric in METRIC_DECIMALS:
                if len(values[metric]) != shape[0]:
                    raise ValueError(f"metrics[{preset!r}][{key!r}][{metric!r}] holds {len(values[metric])} values "
                                     f"for {shape[0]} slices")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _metrics_json(metrics: Mapping | None) -> dict:
    """Values as the text shown (:data:`METRIC_DECIMALS`); NaN and infinities become null, shown as "–"."""
    return {str(preset): {str(key): {metric: [f"{v:.{digits}f}" if math.isfinite(v) else None
                                              for v in values[metric]]
                                     for metric, digits in METRIC_DECIMALS.items()}
                          for key, values in by_pane.items()}
            for preset, by_pane in (metrics or {}).items()}
