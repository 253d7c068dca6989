"""The reference projector: scikit-image ``radon`` / ``iradon``, one slice at a time (parallel beam only)."""

from __future__ import annotations

import numpy as np
from skimage.transform import iradon, radon

from ldct_clip.projectors.filters import DEFAULT_FILTER
from ldct_clip.projectors.geometry import ParallelGeometry

__all__ = ["SkimageProjector"]


class SkimageProjector:
    """Bilinear rotate-and-sum forward projection and linear-interpolation FBP of scikit-image.

    Line integrals are in (image units) × mm: ``radon`` sums pixels, times ``pixel_mm``.

    >>> from ldct_clip.projectors.geometry import ParallelGeometry
    >>> p = SkimageProjector(ParallelGeometry(16, 1.0, 24))
    >>> p.forward(np.zeros((2, 16, 16))).shape, p.fbp(np.zeros((2, 24, 16))).shape
    ((2, 24, 16), (2, 16, 16))
    """

    name = "skimage"

    def __init__(self, geometry: ParallelGeometry, filter_name: str = DEFAULT_FILTER) -> None:
        self.geometry = geometry
        self.filter_name = filter_name
        self._degrees = np.rad2deg(geometry.angles())

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Sinograms (B × views × detectors) of images (B × size × size), zero outside the circle."""
        return np.stack([radon(image, self._degrees, circle=True).T for image in images]) * self.geometry.pixel_mm

    def fbp(self, sinograms: np.ndarray) -> np.ndarray:
        """Filtered back-projection (B × size × size) of sinograms (B × views × detectors)."""
        size = self.geometry.size
        return np.stack([
            iradon(s.T / self.geometry.pixel_mm, self._degrees, output_size=size, filter_name=self.filter_name,
                   circle=True)
            for s in sinograms
        ])
