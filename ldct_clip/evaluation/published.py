"""PSNR/SSIM rows quoted from the CLIPDenoising paper, shown beside measured rows and marked as quoted.

They hold for AAPM-Mayo L506 under the ``clipdenoising`` metric preset only, so :func:`published_rows`
returns nothing for any other preset.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PUBLISHED_ROWS", "PUBLISHED_SOURCE", "PublishedRow", "published_rows"]

PUBLISHED_SOURCE = (
    "quoted from CLIPDenoising (Cheng, Liang, Tan, CVPR 2024), Table 3: AAPM-Mayo patient L506, "
    "526 quarter-dose 1 mm slices, HU in [-1024, 3072], data_range 4096"
)
"""Where :data:`PUBLISHED_ROWS` come from."""


@dataclass(frozen=True)
class PublishedRow:
    """A PSNR/SSIM pair quoted from a paper, valid under one metric preset only."""

    method: str
    psnr: float
    ssim: float
    preset: str
    source: str


PUBLISHED_ROWS: tuple[PublishedRow, ...] = tuple(
    PublishedRow(method, psnr, ssim, "clipdenoising", PUBLISHED_SOURCE)
    for method, psnr, ssim in (
        ("TV", 44.81, 0.972),
        ("ScoreSDE", 45.36, 0.972),
        ("Noise2Sim", 45.98, 0.978),
        ("CLIPDenoising", 45.88, 0.976),
    )
)
"""Published L506 rows; they were measured with the ``clipdenoising`` preset and mean nothing under another."""


def published_rows(preset: str) -> tuple[PublishedRow, ...]:
    """The published rows measured under ``preset`` (none for presets the paper did not use).

    >>> [row.method for row in published_rows("clipdenoising")]
    ['TV', 'ScoreSDE', 'Noise2Sim', 'CLIPDenoising']
    >>> published_rows("redcnn")
    ()
    """
    return tuple(row for row in PUBLISHED_ROWS if row.preset == preset)
