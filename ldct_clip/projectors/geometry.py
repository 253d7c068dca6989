"""Scan geometries of the projectors: where the rays of each view run through a square image.

Images are ``size`` × ``size`` pixels of ``pixel_mm``; the rotation axis (isocentre) is the pixel at
index ``(size // 2, size // 2)`` (scikit-image's convention), x runs along columns and y along rows, both
relative to that pixel. Only the disc of radius ``size // 2`` pixels around it is projected.

- :class:`ParallelGeometry`: the geometry the simulation has always used: ``views`` directions evenly
  spaced over [0°, 180°), one detector bin per pixel; the ray of view θ at detector coordinate t
  (pixels from the centre) is the line x·cos θ − y·sin θ = t (scikit-image ``radon``/``iradon``).
- :class:`FanGeometry`: one circular rotation of a third-generation scanner with a curved (equiangular,
  cylindrical) detector centred on the focal spot. The defaults are the Siemens SOMATOM Definition AS+ /
  Flash of the AAPM-Mayo data (:data:`SIEMENS_DEFINITION_AS`). The source of view β sits at
  ``source_isocentre_mm`` · (cos β, sin β), β = 2π·i/views; channel k looks along the central ray turned
  by γ_k = (k − central_channel) · Δγ, Δγ = ``channel_mm`` / ``source_detector_mm``.

Where the Siemens numbers come from: they are the DICOM-CT-PD header values of the AAPM-Mayo
projection data (tag names in parentheses). DICOM-CT-PD is defined by B. Chen et al., "Technical Note:
Development and validation of an open data format for CT projection data", Med. Phys. 42(12):6964-6972,
2015 (doi:10.1118/1.4935406); the data set is T. R. Moen et al., "Low-dose CT image and projection dataset",
Med. Phys. 48(2):902-911, 2021 (doi:10.1002/mp.14594), whose Table 4 lists the tags; the 2016 Grand
Challenge used the same scanners (C. H. McCollough et al., Med. Phys. 44(10):e339-e352, 2017). The numbers
themselves (595 mm DetectorFocalCenterRadialDistance, 1085.6 mm ConstantRadialDistance, 736
NumberofDetectorColumns, 1.2858 mm DetectorElementTransverseSpacing, 1152 NumberofSourceAngularSteps) were
NOT read here from a primary document or a DICOM-CT-PD file: they are the values reported by users of the
data (e.g. the rebinned fan geometry of Wagner et al., ISBI 2023, arXiv:2211.01111, and its helix2fan
code). Check them against your own projection headers. Not modelled: the flying focal spot (which doubles
the sampling), the quarter-channel detector offset (DetectorCentralElement 369.625 rather than 367.5),
helical pitch and the cone angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ldct_clip.errors import InputError

__all__ = [
    "GEOMETRIES",
    "SIEMENS_DEFINITION_AS",
    "VIEWS_PER_PIXEL",
    "FanGeometry",
    "Geometry",
    "ParallelGeometry",
    "default_views",
    "make_geometry",
]

GEOMETRIES: tuple[str, ...] = ("parallel", "fan")
"""Names accepted by :func:`make_geometry` (``--geometry``)."""
VIEWS_PER_PIXEL = math.pi / 2
"""Parallel views over 180° per pixel of the projected square's side (angular Nyquist sampling)."""


def default_views(size: int) -> int:
    """Parallel views over 180° for a projected square of ``size`` pixels: ⌈π/2 · size⌉.

    >>> default_views(512)
    805
    """
    return math.ceil(VIEWS_PER_PIXEL * size)


@dataclass(frozen=True)
class ParallelGeometry:
    """Parallel beam over 180°: ``views`` directions, one detector bin per pixel (``size`` bins)."""

    size: int
    pixel_mm: float
    views: int

    name = "parallel"

    @property
    def detectors(self) -> int:
        """Detector bins per view."""
        return self.size

    def angles(self) -> np.ndarray:
        """View angles θ in radians, evenly spaced over [0, π)."""
        return np.arange(self.views) * (math.pi / self.views)


@dataclass(frozen=True)
class FanGeometry:
    """Fan beam over 360° onto an equiangular (curved) detector; see the module docstring."""

    size: int
    pixel_mm: float
    views: int = 1152
    channels: int = 736
    source_isocentre_mm: float = 595.0
    source_detector_mm: float = 1085.6
    channel_mm: float = 1.2858

    name = "fan"

    @property
    def central_channel(self) -> float:
        """Channel index (fractional) of the ray through the isocentre: the detector's middle."""
        return (self.channels - 1) / 2

    @property
    def channel_angle(self) -> float:
        """Δγ, the angle between neighbouring channels seen from the focal spot (radians)."""
        return self.channel_mm / self.source_detector_mm

    def angles(self) -> np.ndarray:
        """Source angles β in radians, evenly spaced over [0, 2π)."""
        return np.arange(self.views) * (2 * math.pi / self.views)

    def fan_angles(self) -> np.ndarray:
        """γ of every channel, radians (negative to positive)."""
        return (np.arange(self.channels) - self.central_channel) * self.channel_angle

    def field_of_view_mm(self) -> float:
        """Diameter of the circle every view sees whole: 2 · source_isocentre · sin(half fan angle)."""
        return 2 * self.source_isocentre_mm * math.sin(self.channels / 2 * self.channel_angle)


Geometry = ParallelGeometry | FanGeometry

SIEMENS_DEFINITION_AS = FanGeometry(size=512, pixel_mm=0.7)
"""The fan defaults on the AAPM-Mayo matrix (512 × 512; the Mayo reconstructions are about 0.66-0.74 mm)."""


def make_geometry(name: str, size: int, pixel_mm: float, views: int | None = None) -> Geometry:
    """The geometry ``name`` (one of :data:`GEOMETRIES`) for a projected square of ``size`` pixels.

    ``views`` defaults to :func:`default_views` for parallel beam and to the scanner's 1152 per rotation
    for fan beam. A fan geometry refuses an image circle wider than the scanner's field of view.

    >>> make_geometry("parallel", 64, 0.75).views, make_geometry("fan", 64, 0.75).views
    (101, 1152)
    """
    if isinstance(views, bool) or (views is not None and (not isinstance(views, int) or views < 1)):
        raise InputError(f"views={views!r}: must be an integer >= 1 (or None for the default)")
    if name == "parallel":
        return ParallelGeometry(size, float(pixel_mm), default_views(size) if views is None else views)
    if name == "fan":
        geometry = FanGeometry(size, float(pixel_mm)) if views is None else FanGeometry(size, float(pixel_mm), views)
        diameter = 2 * (size // 2) * pixel_mm
        if diameter > geometry.field_of_view_mm():
            raise InputError(
                f"geometry='fan': the image circle is {diameter:.0f} mm across, wider than the scanner's "
                f"{geometry.field_of_view_mm():.0f} mm field of view; use geometry='parallel' (--geometry parallel)"
            )
        return geometry
    raise InputError(f"geometry={name!r}: unknown geometry; use one of {', '.join(GEOMETRIES)}")
