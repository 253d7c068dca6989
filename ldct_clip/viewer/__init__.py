"""Interactive before/after CT viewer: one self-contained HTML page (or fragment) with real HU per slice.

:func:`viewer_html` returns a fragment to embed in a report; :func:`write_viewer` writes a standalone page.
See ``docs/viewer.md`` for the controls, the data encoding and measured sizes.
"""

from ldct_clip.viewer.data import HU_PRECISION, pack_slice, unpack_slice
from ldct_clip.viewer.page import DIFF_RANGE_HU, VIEWER_WINDOWS, Pane, SliceLabel, viewer_html, write_viewer

__all__ = [
    "DIFF_RANGE_HU",
    "HU_PRECISION",
    "VIEWER_WINDOWS",
    "Pane",
    "SliceLabel",
    "pack_slice",
    "unpack_slice",
    "viewer_html",
    "write_viewer",
]
