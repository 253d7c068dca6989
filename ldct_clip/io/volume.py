"""A CT volume in Hounsfield units with the geometry needed to write it back.

Readers (:func:`ldct_clip.io.read_series`, :func:`ldct_clip.io.read_nifti`) decide units once, at the I/O
boundary: they return float32 HU plus geometry, and writers do the reverse. Nothing inside the library
guesses units.

Conventions (the same for DICOM and NIfTI, all in DICOM patient coordinates, LPS, millimetres):

- ``hu[z, y, x]``: z = slice index, y = row, x = column.
- ``spacing = (z, y, x)``: distance between slice planes along the slice normal (the median for a DICOM
  series with gaps), between rows, between columns.
- ``origin = (x, y, z)``: patient position of the centre of voxel ``hu[0, 0, 0]``.
- ``direction``: 3×3 array whose rows are the unit vectors of increasing x index (DICOM row cosines),
  increasing y index (column cosines) and the slice normal, pointing the way the z index advances.
- ``positions``: (Z, 3) patient position of voxel ``hu[z, 0, 0]`` of every slice, as the source says it
  (DICOM ImagePositionPatient, or the NIfTI affine). On a regular grid it is
  ``origin + z * spacing[0] * direction[2]``; a series with a gap or a gantry tilt (slices shifting within
  their plane from one to the next) is not on that grid, and ``positions`` is where each slice really is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

__all__ = ["GRID_TOLERANCE", "MAX_ABS_HU", "CTVolume"]

GRID_TOLERANCE = 0.1
"""A slice counts as on the grid when it lies within this fraction of the smallest voxel side of where the
grid puts it: a sub-voxel error that the rounding of ImagePositionPatient (often to 0.1 mm) already causes."""

MAX_ABS_HU = 1e6
"""Largest |HU| a reader accepts. CT tops out near 30 000 HU even on extended-range scanners (metal);
values beyond a million come from a corrupt rescale (slope 1e38, say) and overflow the model's scale."""


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
        positions: (Z, 3) patient position (mm) of voxel ``hu[z, 0, 0]`` of each slice; ``positions[0]``
            must equal ``origin`` and the slices must advance along ``direction[2]``. None (the default)
            means the regular grid ``origin + z * spacing[0] * direction[2]``; after construction it is
            always an array.

    >>> import numpy as np
    >>> v = CTVolume(np.zeros((2, 4, 4), np.float32), (2.5, 0.7, 0.7), (0, 0, 0), np.eye(3), None, "x.nii")
    >>> v.shape, v.spacing, v.positions.tolist(), v.regular_grid
    ((2, 4, 4), (2.5, 0.7, 0.7), [[0.0, 0.0, 0.0], [0.0, 0.0, 2.5]], True)
    >>> tilted = CTVolume(v.hu, v.spacing, (0, 0, 0), np.eye(3), None, "x", positions=[[0, 0, 0], [0, 3, 2.5]])
    >>> tilted.evenly_spaced, tilted.tilted, tilted.regular_grid, tilted.slice_step.tolist()
    (True, True, False, [0.0, 3.0, 2.5])
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray
    slice_headers: list[Dataset] | None
    source: Path
    positions: np.ndarray | None = None

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
        self.positions = self._checked_positions()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, Y, X) size of the HU array."""
        z, y, x = self.hu.shape
        return (z, y, x)

    @property
    def slice_step(self) -> np.ndarray:
        """Mean (x, y, z) step in mm from one slice's position to the next (``spacing[0]`` along the
        slice normal for a single slice)."""
        positions = self._positions()
        if len(positions) < 2:
            return self.spacing[0] * self.direction[2]
        return (positions[-1] - positions[0]) / (len(positions) - 1)

    @property
    def evenly_spaced(self) -> bool:
        """Whether every slice lies on the line of equal steps from the first (within :data:`GRID_TOLERANCE`
        of a voxel); False for a series with a gap. A tilted series is evenly spaced."""
        return bool(np.abs(self._positions() - self._equal_steps()).max() <= self._tolerance())

    @property
    def tilted(self) -> bool:
        """Whether the slices shift within their plane from one to the next (gantry tilt): the step between
        slices is not along the slice normal, so the last slice is off the normal line through the first."""
        positions = self._positions()
        drift = positions[-1] - positions[0]
        normal = self.direction[2] / np.linalg.norm(self.direction[2])
        within_plane = drift - np.dot(drift, normal) * normal
        return bool(np.linalg.norm(within_plane) > self._tolerance())

    @property
    def regular_grid(self) -> bool:
        """Whether every slice lies where ``origin``, ``spacing`` and ``direction`` put it (within
        :data:`GRID_TOLERANCE` of a voxel): ``hu[z, y, x]`` at ``origin + (x·sx, y·sy, z·sz) @ direction``.
        False for a gap or a tilt; then only ``positions`` places the slices."""
        return bool(np.abs(self._positions() - self._grid()).max() <= self._tolerance())

    def uneven_spacing(self) -> str | None:
        """None when the slices are evenly spaced, else where they are not, e.g. "gap of 4 mm after z=4 mm"
        (z: position along the slice normal).

        >>> v = CTVolume(np.zeros((4, 2, 2), np.float32), (2, 1, 1), (0, 0, 0), np.eye(3), None, "x",
        ...              positions=[[0, 0, 0], [0, 0, 2], [0, 0, 4], [0, 0, 8]])
        >>> v.uneven_spacing()
        'gap of 4 mm after z=4 mm'
        """
        if self.evenly_spaced:
            return None
        positions = self._positions()
        along = positions @ (self.direction[2] / np.linalg.norm(self.direction[2]))
        gaps = np.diff(along)
        median = float(np.median(gaps))
        for index, gap in enumerate(gaps):
            if abs(gap - median) > self._tolerance():
                return f"gap of {_mm(gap)} mm after z={_mm(along[index])} mm"
        deviation = np.linalg.norm(positions - self._equal_steps(), axis=1)
        worst = int(np.argmax(deviation))
        return f"slice {worst} lies {_mm(deviation[worst])} mm from where equal steps put it"

    def _positions(self) -> np.ndarray:
        assert self.positions is not None  # set by __post_init__
        return self.positions

    def _tolerance(self) -> float:
        return GRID_TOLERANCE * min(self.spacing)

    def _equal_steps(self) -> np.ndarray:
        """Slice positions at equal steps of :attr:`slice_step` from the first slice."""
        positions = self._positions()
        return positions[0] + np.arange(len(positions))[:, None] * self.slice_step

    def _grid(self) -> np.ndarray:
        """Slice positions of the regular grid ``origin + z * spacing[0] * direction[2]``."""
        steps = np.arange(self.hu.shape[0], dtype=np.float64)[:, None]
        return np.asarray(self.origin) + steps * self.spacing[0] * self.direction[2]

    def _checked_positions(self) -> np.ndarray:
        """``positions`` as a validated (Z, 3) float array, or the regular grid when None."""
        if self.positions is None:
            return self._grid()
        positions = np.array(self.positions, dtype=np.float64)
        if positions.shape != (self.hu.shape[0], 3) or not np.isfinite(positions).all():
            raise ValueError(
                f"positions must be a finite ({self.hu.shape[0]}, 3) array, one per slice, got shape {positions.shape}"
            )
        if np.abs(positions[0] - self.origin).max() > 1e-3:
            raise ValueError(f"positions[0] {tuple(positions[0])} must equal origin {self.origin}")
        if (np.diff(positions @ self.direction[2]) <= 0).any():
            raise ValueError("positions must advance along the slice normal direction[2] from slice to slice")
        return positions


def _triple(name: str, value: object) -> tuple[float, float, float]:
    """Return ``value`` as a tuple of three finite floats or raise a ValueError naming ``name``."""
    try:
        items = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three numbers, got {value!r}") from None
    if len(items) != 3 or not all(np.isfinite(items)):
        raise ValueError(f"{name} must be three finite numbers, got {value!r}")
    return (items[0], items[1], items[2])


def _mm(value: float) -> str:
    """A length in mm for messages, to the micrometre: 4.99999 -> '5', -302.5 -> '-302.5'."""
    return f"{round(float(value), 3):g}"


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    return type(value).__name__
