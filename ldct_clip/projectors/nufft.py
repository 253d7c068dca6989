"""The fast parallel-beam projector: scikit-image's projector pair evaluated in Fourier space (FINUFFT).

Same operators as :class:`~ldct_clip.projectors.skimage.SkimageProjector`, computed in O(N² log N) per
slice instead of O(views · N²), with the non-uniform FFT library FINUFFT (Barnett, Magland & af Klinteberg,
SIAM J. Sci. Comput. 41(5):C479-C504, 2019; ``pip install finufft``), batched over slices, multi-threaded:

- Forward: scikit-image rotates the bilinear interpolant f̃ of the image and sums it along rays. The
  line integral of f̃ has, by the Fourier slice theorem, the 1-D spectrum F(ω·n_θ) · Λ̂(ω n_x) Λ̂(ω n_y),
  where F is the image's discrete-time Fourier transform and Λ̂ = sinc² the transform of the linear
  interpolation kernel. It is evaluated on views × K·M radial points (a type-2 NUFFT), folded modulo the
  sampling rate (the detector is sampled at whole pixels) and inverse-FFT'd to the detector bins.
- FBP: the sinogram is filtered exactly as ``iradon`` does (same padding, same :func:`fourier_filter`);
  back-projecting with linear interpolation of the filtered projection q is back-projecting the continuous
  q̃ = q ∗ Λ, whose spectrum is Q(ω) · sinc²(ω); that is summed onto the pixel grid by a type-1 NUFFT from
  the same kind of radial points.

The two differ from scikit-image only by the truncation of the sinc² tails at |ω| < :data:`BANDS` / 2
cycles per pixel, by the non-uniform FFT's tolerance :data:`TOLERANCE`, and (forward only) by the
difference between scikit-image's unit-step Riemann sum along each ray and the exact line integral of f̃;
``tests/test_projectors.py`` states the measured agreement. CPU only (FINUFFT's CUDA sibling, cufinufft, is
another package); on a GPU use the ``torch`` projector.
"""

from __future__ import annotations

import math
import os
from functools import cached_property

import numpy as np
from scipy import fft

from ldct_clip.projectors.filters import DEFAULT_FILTER, fourier_filter, padded_length
from ldct_clip.projectors.geometry import ParallelGeometry

__all__ = ["BANDS", "TOLERANCE", "NufftProjector", "available"]

BANDS = 4
"""Radial frequencies are sampled over |ω| < BANDS/2 cycles per pixel (sinc² < 1.2e-3 beyond 2)."""
TOLERANCE = 1e-5
"""Relative tolerance of the non-uniform FFTs (single precision: noise and line integrals need no more)."""


def available() -> bool:
    """Whether FINUFFT imports here."""
    try:
        import finufft  # noqa: F401
    except ImportError:
        return False
    return True


class NufftProjector:
    """Fourier-space evaluation of scikit-image's radon/iradon pair; see the module docstring.

    >>> from ldct_clip.projectors.geometry import ParallelGeometry
    >>> p = NufftProjector(ParallelGeometry(16, 1.0, 24), threads=1)
    >>> p.forward(np.zeros((2, 16, 16))).shape, p.fbp(np.zeros((2, 24, 16))).shape
    ((2, 24, 16), (2, 16, 16))
    """

    name = "nufft"

    def __init__(self, geometry: ParallelGeometry, filter_name: str = DEFAULT_FILTER, threads: int | None = None):
        self.geometry = geometry
        self.filter_name = filter_name
        self.threads = threads or os.cpu_count() or 1
        size = geometry.size
        self._diagonal = math.ceil(math.sqrt(2) * size)  # iradon's padding of a circle=True sinogram
        # Radial spacing 1/length: sampling the spectrum periodises the profile with period ``length``, which must
        # not fold a copy onto the evaluated range (|t| <= size // 2 on detector and image alike)
        self._forward_length = 2 * (size // 2) + 4
        self._fbp_length = max(self._diagonal, self._diagonal // 2 + size // 2 + 4)
        self._filter = fourier_filter(padded_length(self._diagonal), filter_name)

    def _points(self, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row and column frequencies (radians per pixel) of ω = m/length, m = 0 … BANDS·length/2 − 1, along
        every view's detector direction n = (cos θ, −sin θ), and the interpolation weights sinc²."""
        omega = np.arange(BANDS * length // 2) / length
        theta = self.geometry.angles()[:, None]
        cols, rows = omega * np.cos(theta), -omega * np.sin(theta)
        return 2 * np.pi * rows.ravel(), 2 * np.pi * cols.ravel(), np.sinc(omega)

    @cached_property
    def _forward_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols, _ = self._points(self._forward_length)
        weight = (np.sinc(cols / (2 * np.pi)) * np.sinc(rows / (2 * np.pi))) ** 2
        return rows, cols, weight.astype(np.float32)

    @cached_property
    def _fbp_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols, sinc = self._points(self._fbp_length)
        return rows, cols, (sinc**2).astype(np.float32)

    def _transform(self, kind: int, rows: np.ndarray, cols: np.ndarray, data: np.ndarray, batch: int) -> np.ndarray:
        import finufft

        size = self.geometry.size
        plan = finufft.Plan(kind, (size, size), n_trans=batch, eps=TOLERANCE, dtype="complex64",
                            nthreads=self.threads)
        plan.setpts(rows.astype(np.float32), cols.astype(np.float32))
        return plan.execute(data)

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Sinograms (B × views × detectors) of images (B × size × size), zero outside the circle."""
        g = self.geometry
        batch, length = len(images), self._forward_length
        rows, cols, weight = self._forward_points
        half = self._transform(2, rows, cols, np.asarray(images, np.complex64), batch).reshape(batch, g.views, -1)
        half *= weight.reshape(g.views, -1)
        # the image is real: G(−ω) = conj G(ω); fold all |ω| < BANDS/2 onto one period of the detector sampling
        positive = half.reshape(batch, g.views, BANDS // 2, length).sum(axis=2)
        # m = −BANDS·length/2 … −1 (the first, at the band edge, is left out), folded the same way
        negative = np.concatenate((np.zeros_like(half[..., :1]), np.conj(half[..., :0:-1])), axis=-1)
        negative = negative.reshape(batch, g.views, BANDS // 2, length).sum(axis=2)
        projection = fft.ifft(positive + negative, axis=-1, workers=self.threads).real
        bins = (np.arange(g.size) - g.size // 2) % length
        return projection[..., bins] * g.pixel_mm

    def fbp(self, sinograms: np.ndarray) -> np.ndarray:
        """Filtered back-projection (B × size × size) of sinograms (B × views × detectors)."""
        g = self.geometry
        batch, diagonal, length = len(sinograms), self._diagonal, self._fbp_length
        padded = np.zeros((batch, g.views, len(self._filter)), np.float32)
        start = diagonal // 2 - g.size // 2
        padded[..., start : start + g.size] = np.asarray(sinograms) / g.pixel_mm
        half_filter = self._filter[: len(self._filter) // 2 + 1].astype(np.float32)
        spectrum = fft.rfft(padded, axis=-1, workers=self.threads)
        spectrum *= half_filter
        placed = np.zeros((batch, g.views, length), np.float32)
        placed[..., :diagonal] = fft.irfft(spectrum, len(self._filter), axis=-1, workers=self.threads)[..., :diagonal]
        # DTFT samples of the filtered projection q, its index diagonal // 2 being t = 0
        spectrum = fft.fft(np.roll(placed, -(diagonal // 2), axis=-1), axis=-1, workers=self.threads)
        rows, cols, weight = self._fbp_points
        strengths = spectrum[..., np.arange(len(weight)) % length]
        strengths *= weight
        strengths[..., 1:] *= 2  # the conjugate half, −ω, adds the complex conjugate: 2·Re of one half
        image = self._transform(1, rows, cols, strengths.reshape(batch, -1), batch).real
        image *= math.pi / (2 * g.views * length)
        return image * ~_outside_circle(g.size)


def _outside_circle(size: int) -> np.ndarray:
    """Pixels farther than size // 2 from the centre pixel (``iradon`` zeroes them)."""
    y, x = np.ogrid[:size, :size]
    return (y - size // 2) ** 2 + (x - size // 2) ** 2 > (size // 2) ** 2
