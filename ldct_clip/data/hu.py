"""Hounsfield units <-> model scale, and display/metric windows.

The model sees CT slices on one fixed linear scale: ``x = (HU + 1024) / 4096``, so [-1024, 3072] HU maps
to [0, 1] (the released CLIPDenoising code's normalisation). Values outside that range are kept, not
clipped: the Gaussian training noise and the network output may leave [0, 1]. All functions are pure and
accept numpy arrays, torch tensors and Python floats alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ldct_clip.errors import InputError

HU_MIN = -1024.0
"""HU value mapped to 0 on the model scale (air, including the scanner's padding)."""
HU_MAX = 3072.0
"""HU value mapped to 1 on the model scale."""
HU_RANGE = HU_MAX - HU_MIN
"""Width of the model-scale HU range: 4096, the data_range of the ``clipdenoising`` metric preset."""

WINDOWS: dict[str, tuple[float, float]] = {
    "display": (-160.0, 240.0),
    "abdomen": (-160.0, 240.0),
    "full": (HU_MIN, HU_MAX),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
}
"""Named HU windows as (lo, hi). ``display``/``abdomen`` is the window of the LDCT papers' figures."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor, float)


def _as_float(values: ArrayT) -> ArrayT:
    """Integer arrays become float32 so that the affine maps neither overflow nor truncate."""
    if isinstance(values, np.ndarray) and not np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32)
    if isinstance(values, torch.Tensor) and not values.is_floating_point():
        return values.float()
    if isinstance(values, (int, np.integer)):
        return float(values)
    return values


def hu_to_model(hu: ArrayT) -> ArrayT:
    """Map HU to the model scale, ``(HU + 1024) / 4096``, without clipping.

    >>> hu_to_model(np.array([-1024.0, 0.0, 3072.0]))
    array([0.  , 0.25, 1.  ])
    """
    return (_as_float(hu) - HU_MIN) / HU_RANGE


def model_to_hu(x: ArrayT) -> ArrayT:
    """Map the model scale back to HU, ``x * 4096 - 1024``: the exact inverse of :func:`hu_to_model`.

    >>> float(model_to_hu(hu_to_model(40.0)))
    40.0
    """
    return _as_float(x) * HU_RANGE + HU_MIN


def resolve_window(
    window: str | tuple[float, float] | None = None,
    *,
    center: float | None = None,
    width: float | None = None,
) -> tuple[float, float]:
    """Return a window as HU bounds (lo, hi) from a name, a (lo, hi) pair, or a center and width.

    >>> resolve_window("display")
    (-160.0, 240.0)
    >>> resolve_window(center=40, width=400)
    (-160.0, 240.0)
    """
    if window is not None and (center is not None or width is not None):
        raise InputError("window: give either a name or (lo, hi) or center and width, not both")
    if window is None:
        if center is None or width is None:
            raise InputError("window: give a name, a (lo, hi) pair, or both center and width")
        lo, hi = center - width / 2, center + width / 2
    elif isinstance(window, str):
        if window not in WINDOWS:
            raise InputError(f"window {window!r}: unknown name; use one of {', '.join(WINDOWS)} or (lo, hi) in HU")
        lo, hi = WINDOWS[window]
    else:
        lo, hi = window
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        raise InputError(f"window ({lo}, {hi}): upper bound must exceed lower bound; pass lo < hi in HU")
    return lo, hi


def window(
    hu: ArrayT,
    window: str | tuple[float, float] | None = None,
    *,
    center: float | None = None,
    width: float | None = None,
) -> ArrayT:
    """Clip HU to a window and scale it to [0, 1] (for display and windowed metrics).

    The window is a name from :data:`WINDOWS`, a (lo, hi) pair in HU, or ``center``/``width``.

    >>> window(np.array([-1000.0, 40.0, 1000.0]), "display")
    array([0. , 0.5, 1. ])
    """
    lo, hi = resolve_window(window, center=center, width=width)
    hu = _as_float(hu)
    if isinstance(hu, torch.Tensor):
        clipped = hu.clamp(lo, hi)
    elif isinstance(hu, np.ndarray):
        clipped = np.clip(hu, lo, hi)
    else:
        clipped = min(max(hu, lo), hi)
    return (clipped - lo) / (hi - lo)


@dataclass(frozen=True)
class IntensityScale:
    """A method's linear map between HU and its network's input scale: ``[lo, hi]`` HU -> ``[0, 1]``.

    Methods differ here: CLIPDenoising and RED-CNN use ``[-1024, 3072]`` HU unclipped (:data:`MODEL_SCALE`);
    Noise2Sim clips HU to its training window ``[-160, 240]`` first (``clip=True``). :meth:`to_hu` is the
    exact inverse of :meth:`to_unit` inside the window. Works on numpy arrays, torch tensors and floats.

    >>> IntensityScale(-160.0, 240.0, clip=True).to_unit(np.array([-1000.0, 40.0]))
    array([0. , 0.5])
    >>> float(MODEL_SCALE.to_hu(MODEL_SCALE.to_unit(40.0)))
    40.0
    """

    lo: float
    hi: float
    clip: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi) and self.hi > self.lo):
            raise InputError(f"intensity window ({self.lo}, {self.hi}): need finite lo < hi in HU")

    def to_unit(self, hu: ArrayT) -> ArrayT:
        """HU -> the network's scale (clipped to the window first when ``clip``)."""
        if self.clip:
            return window(hu, (self.lo, self.hi))
        return (_as_float(hu) - self.lo) / (self.hi - self.lo)

    def to_hu(self, x: ArrayT) -> ArrayT:
        """The network's scale -> HU."""
        return _as_float(x) * (self.hi - self.lo) + self.lo

    def to_dict(self) -> dict[str, object]:
        return {"lo": self.lo, "hi": self.hi, "clip": self.clip}


MODEL_SCALE = IntensityScale(HU_MIN, HU_MAX, clip=False)
"""``(HU + 1024) / 4096`` unclipped: the scale of :func:`hu_to_model` (CLIPDenoising, RED-CNN)."""
