"""CT projectors: forward projection and filtered back-projection of batches of slices.

Every projector takes images as a B × size × size array (attenuation per mm, zero outside the circle of
radius size // 2 around the centre pixel) and returns line integrals as B × views × detectors (× mm), and
back: ``fbp(forward(x)) ≈ x``. Names (:data:`PROJECTORS`):

- ``skimage``: the reference, scikit-image ``radon``/``iradon`` one slice at a time (parallel beam only);
- ``nufft``: the same operator pair evaluated in Fourier space with FINUFFT (parallel beam only, CPU);
- ``torch``: ray-driven bilinear sampling and FBP in torch (parallel and fan beam, CPU or CUDA);
- ``auto`` (:data:`DEFAULT_PROJECTOR`): ``nufft`` for parallel beam on a machine without CUDA when FINUFFT
  is installed, else ``torch``.

Geometries (:data:`GEOMETRIES`): ``parallel`` and ``fan`` (see :mod:`ldct_clip.projectors.geometry`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ldct_clip.errors import InputError
from ldct_clip.projectors import nufft
from ldct_clip.projectors.filters import DEFAULT_FILTER, FILTERS, fourier_filter
from ldct_clip.projectors.geometry import (
    GEOMETRIES,
    SIEMENS_DEFINITION_AS,
    FanGeometry,
    Geometry,
    ParallelGeometry,
    default_views,
    make_geometry,
)

__all__ = [
    "DEFAULT_FILTER",
    "DEFAULT_GEOMETRY",
    "DEFAULT_PROJECTOR",
    "FILTERS",
    "GEOMETRIES",
    "PROJECTORS",
    "SIEMENS_DEFINITION_AS",
    "FanGeometry",
    "Geometry",
    "ParallelGeometry",
    "Projector",
    "default_views",
    "fourier_filter",
    "get_projector",
    "make_geometry",
    "resolve_projector",
]

PROJECTORS: tuple[str, ...] = ("auto", "nufft", "torch", "skimage")
"""Names accepted by :func:`get_projector` (``--projector``)."""
DEFAULT_PROJECTOR = "auto"
"""The fastest projector available for the geometry on this machine (see the module docstring)."""
DEFAULT_GEOMETRY = "parallel"
"""The geometry the simulation has always used."""


class Projector(Protocol):
    """What the simulation needs of a projector."""

    name: str
    geometry: Geometry
    filter_name: str

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Line integrals (B × views × detectors) of B × size × size images."""
        ...

    def fbp(self, sinograms: np.ndarray) -> np.ndarray:
        """Filtered back-projection (B × size × size) of B × views × detectors sinograms."""
        ...


def resolve_projector(name: str, geometry: Geometry) -> str:
    """The concrete projector ``name`` stands for with ``geometry``; InputError for impossible pairs.

    >>> resolve_projector("skimage", make_geometry("parallel", 32, 1.0))
    'skimage'
    """
    if name not in PROJECTORS:
        raise InputError(f"projector={name!r}: unknown projector; use one of {', '.join(PROJECTORS)}")
    parallel = isinstance(geometry, ParallelGeometry)
    if name == "auto":
        return "nufft" if parallel and nufft.available() and not torch.cuda.is_available() else "torch"
    if name in ("skimage", "nufft") and not parallel:
        raise InputError(f"projector={name!r}: parallel beam only; use projector='torch' (--projector torch) for "
                         f"geometry={geometry.name!r}")
    if name == "nufft" and not nufft.available():
        raise InputError("projector='nufft': the finufft package is not installed; pip install finufft, or use "
                         "projector='torch' (--projector torch)")
    return name


def get_projector(name: str, geometry: Geometry, filter_name: str = DEFAULT_FILTER,
                  threads: int | None = None) -> Projector:
    """The projector ``name`` (one of :data:`PROJECTORS`) for ``geometry`` with FBP filter ``filter_name``.

    ``threads`` sets FINUFFT's threads (``nufft``); ``torch`` runs on CUDA when present.

    >>> p = get_projector("torch", make_geometry("parallel", 32, 1.0))
    >>> p.name, p.forward(np.zeros((1, 32, 32))).shape
    ('torch', (1, 51, 32))
    """
    if filter_name not in FILTERS:
        raise InputError(f"filter_name={filter_name!r}: unknown FBP filter; use one of {', '.join(FILTERS)}")
    concrete = resolve_projector(name, geometry)
    if concrete == "skimage":
        from ldct_clip.projectors.skimage import SkimageProjector

        return SkimageProjector(geometry, filter_name)  # type: ignore[arg-type]
    if concrete == "nufft":
        return nufft.NufftProjector(geometry, filter_name, threads)  # type: ignore[arg-type]
    from ldct_clip.projectors.torch_projector import TorchProjector

    return TorchProjector(geometry, filter_name, "cuda" if torch.cuda.is_available() else "cpu")
