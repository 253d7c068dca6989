"""Where the slices sit in the square that is projected, and which circle of it the projector sees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AIR_CONTENT_HU = -500.0
"""Pixels above this HU must lie inside the projected circle; pixels at or below it may be left out as air."""


@dataclass(frozen=True)
class _Placement:
    """Where Y × X slices sit in the size × size square that is projected."""

    size: int
    offset: tuple[int, int]
    shape: tuple[int, int]

    def embed(self, image: np.ndarray) -> np.ndarray:
        """``image`` (Y × X) centred in the size × size square, zero outside the projected circle."""
        square = np.zeros((self.size, self.size), dtype=np.float64)
        (oy, ox), (rows, columns) = self.offset, self.shape
        square[oy : oy + rows, ox : ox + columns] = image
        square[~self.circle()] = 0.0
        return square

    def crop(self, square: np.ndarray) -> np.ndarray:
        """The Y × X slice(s) back out of the square(s) (last two axes)."""
        (oy, ox), (rows, columns) = self.offset, self.shape
        return square[..., oy : oy + rows, ox : ox + columns]

    def circle(self) -> np.ndarray:
        """Mask of the projected circle in the square (scikit-image's reconstruction circle)."""
        centre = self.size // 2
        y, x = np.ogrid[: self.size, : self.size]
        return (y - centre) ** 2 + (x - centre) ** 2 <= centre**2

    def field_of_view(self) -> np.ndarray:
        """Slice pixels inside both the disc inscribed in the slice and the projected circle."""
        rows, columns = self.shape
        y, x = np.ogrid[:rows, :columns]
        inscribed = (y - (rows - 1) / 2) ** 2 + (x - (columns - 1) / 2) ** 2 <= (min(rows, columns) / 2) ** 2
        return inscribed & self.crop(self.circle())


def _placement(hu: np.ndarray) -> _Placement:
    """Smallest projected square whose circle holds every non-air pixel of every slice of ``hu`` (Z×Y×X)."""
    _, rows, columns = hu.shape
    size = max(rows, columns)
    y, x = np.nonzero((hu > AIR_CONTENT_HU).any(axis=0))

    def offset(side: int) -> tuple[int, int]:
        return (side - rows) // 2, (side - columns) // 2

    def outside(side: int, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        oy, ox = offset(side)
        centre = side // 2
        return (y + oy - centre) ** 2 + (x + ox - centre) ** 2 > centre**2

    beyond = outside(size, y, x)
    y, x = y[beyond], x[beyond]
    while y.size and outside(size, y, x).any():
        size += 1
    return _Placement(size, offset(size), (rows, columns))
