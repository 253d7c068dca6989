"""A CT volume in Hounsfield units with the geometry needed to write it back.

Readers (:func:`ldct_clip.io.read_series`, :func:`ldct_clip.io.read_nifti`) decide units once, at the I/O
boundary: they return float32 HU plus geometry, and writers do the reverse. Nothing inside the library
guesses units.

Conventions (the same for DICOM and NIfTI, all in DICOM patient coordinates, LPS, millimetres):

- ``hu[z, y, x]``: z = slice index, y = row, x = column.
- ``spacing = (z, y, x)``: distance between slice centres, between rows, between columns.
- ``origin = (x, y, z)``: patient position of the centre of voxel ``hu[0, 0, 0]``.
- ``direction``: 3×3 array whose rows are the unit vectors of increasing x index (DICOM row cosines),
  increasing y index (column cosines) and increasing z index (slice normal).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset


@dataclass
class CTVolume:
    """HU voxels, geometry and (for DICOM input) one header per slice.

    Args:
        hu: float32 array of shape (Z, Y, X) in Hounsfield units.
        spacing: voxel size (z, y, x) in mm, all positive.
        origin: patient position (x, y, z) in mm of the first voxel.
        direction: 3×3 matrix; rows are row cosines, column cosines and slice normal.
        slice_headers: per-slice pydicom Datasets without pixel data (same order as ``hu``), or None
            when the volume did not come from DICOM.
        source: the file or folder the volume was read from.

    >>> import numpy as np
    >>> v = CTVolume(np.zeros((2, 4, 4), np.float32), (2.5, 0.7, 0.7), (0, 0, 0), np.eye(3), None, "x.nii")
    >>> v.shape, v.spacing
    ((2, 4, 4), (2.5, 0.7, 0.7))
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    slice_headers: list[Dataset] | None
    source: Path

    def __post_init__(self) -> None:
        if not isinstance(self.hu, np.ndarray) or self.hu.ndim != 3:
            raise ValueError(f"hu must be a 3-D numpy array (Z, Y, X), got {_describe(self.hu)}")
        if self.hu.dtype != np.float32:
            raise ValueError(f"hu must have dtype float32, got {self.hu.dtype}")
        self.spacing = _triple("spacing", self.spacing)
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive (z, y, x) mm, got {self.spacing}")
        self.origin = _triple("origin", self.origin)
        direction = np.asarray(self.direction, dtype=np.float64)
        if direction.shape != (3, 3) or not np.isfinite(direction).all():
            raise ValueError(f"direction must be a finite 3x3 matrix, got shape {direction.shape}")
        self.direction = direction
        if self.slice_headers is not None:
            self.slice_headers = list(self.slice_headers)
            if len(self.slice_headers) != self.hu.shape[0]:
                raise ValueError(
                    f"slice_headers must hold one header per slice: {len(self.slice_headers)} headers "
                    f"for {self.hu.shape[0]} slices"
                )
        self.source = Path(self.source)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, Y, X) size of the HU array."""
        z, y, x = self.hu.shape
        return (z, y, x)


def _triple(name: str, value: object) -> tuple[float, float, float]:
    """Return ``value`` as a tuple of three finite floats or raise a ValueError naming ``name``."""
    try:
        items = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three numbers, got {value!r}") from None
    if len(items) != 3 or not all(np.isfinite(items)):
        raise ValueError(f"{name} must be three finite numbers, got {value!r}")
    return (items[0], items[1], items[2])


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    return type(value).__name__
