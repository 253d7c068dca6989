"""Classical baselines scored beside the models, with fixed parameters (never tuned on the evaluated slices).

- ``tv``: total variation, :func:`skimage.restoration.denoise_tv_chambolle` per slice on the model scale
  ``(HU + 1024) / 4096`` with weight :data:`TV_WEIGHT` = 0.01 (≈ 41 HU, about one quarter-dose noise
  standard deviation) and exactly :data:`TV_ITERATIONS` iterations. skimage's relative-energy stopping
  rule (``eps``) stops after a handful of iterations at some small weights and not at others, so it is
  switched off: a fixed iteration count makes the result deterministic and smooth in the weight (100
  iterations are within 0.1 dB of 200). On a synthetic abdomen phantom with correlated ≈ 40 HU noise the
  PSNR-optimal weight was 0.0125–0.02; a piecewise-flat phantom favours over-smoothing, so the default
  sits below that, where textured anatomy keeps its detail.
- ``bm3d``: BM3D (optional ``bm3d`` package, non-commercial licence, ``pip install bm3d``) per slice on the
  model scale with noise standard deviation :data:`BM3D_SIGMA_HU` = 35 HU: the quarter-dose noise implied
  by the paper's Fig. 7 (low-dose PSNR 40.48 dB at data_range 4096 is an RMSE of 39 HU against a
  full-dose image carrying half the low-dose noise, so σ ≈ 39 / √1.25 ≈ 35 HU). It runs single-threaded:
  the package's threads sum in a varying order and change the output by up to 0.15 HU from run to run,
  so a report could not be reproduced. Slow on CPU: about 15 s per 512×512 slice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib.util import find_spec

import numpy as np
from skimage.restoration import denoise_tv_chambolle

from ldct_clip.data.hu import hu_to_model, model_to_hu
from ldct_clip.errors import InputError

__all__ = [
    "BASELINES",
    "BM3D_SIGMA_HU",
    "TV_ITERATIONS",
    "TV_WEIGHT",
    "bm3d_available",
    "check_parameter",
    "default_baselines",
    "denoise_bm3d",
    "denoise_tv",
    "resolve_baselines",
]

TV_WEIGHT = 0.01
"""Default TV weight on the model scale (≈ 41 HU); see the module docstring."""
TV_ITERATIONS = 100
"""Chambolle iterations of the TV baseline (fixed: the energy stopping rule is off)."""
BM3D_SIGMA_HU = 35.0
"""Default BM3D noise standard deviation in HU; see the module docstring."""
BASELINES: tuple[str, ...] = ("tv", "bm3d")
"""Classical baselines :func:`ldct_clip.evaluation.evaluate` can run."""


def denoise_tv(hu: np.ndarray, weight: float = TV_WEIGHT) -> np.ndarray:
    """Total-variation denoising of each Y×X slice of a Z×Y×X HU volume (Chambolle, on the model scale).

    >>> noisy = np.random.default_rng(0).normal(40.0, 40.0, (1, 32, 32))
    >>> bool(denoise_tv(noisy).std() < noisy.std() / 2)
    True
    """
    check_parameter("tv_weight", weight)
    out = np.empty(hu.shape, dtype=np.float32)
    for z, image in enumerate(hu):
        smooth = denoise_tv_chambolle(hu_to_model(image.astype(np.float64)), weight=weight, eps=0.0,
                                      max_num_iter=TV_ITERATIONS)
        out[z] = model_to_hu(smooth)
    return out


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package is installed."""
    return find_spec("bm3d") is not None


def denoise_bm3d(hu: np.ndarray, sigma_hu: float = BM3D_SIGMA_HU) -> np.ndarray:
    """BM3D denoising of each Y×X slice of a Z×Y×X HU volume, noise σ given in HU (optional ``bm3d``)."""
    check_parameter("bm3d_sigma_hu", sigma_hu)
    _require_bm3d()
    import bm3d

    profile = bm3d.BM3DProfile()
    profile.num_threads = 1  # reproducible: see the module docstring
    out = np.empty(hu.shape, dtype=np.float32)
    for z, image in enumerate(hu):
        smooth = bm3d.bm3d(hu_to_model(image.astype(np.float64)), sigma_hu / 4096.0, profile=profile)
        out[z] = model_to_hu(np.asarray(smooth))
    return out


def _require_bm3d() -> None:
    if not bm3d_available():
        raise InputError("BM3D baseline: the optional package bm3d is not installed; run 'pip install bm3d' "
                         "(non-commercial licence) or leave bm3d out of the baselines")


def default_baselines() -> tuple[str, ...]:
    """``("tv", "bm3d")`` when ``bm3d`` is installed, else ``("tv",)``."""
    return BASELINES if bm3d_available() else ("tv",)


def resolve_baselines(names: Sequence[str] | None) -> tuple[str, ...]:
    """Validated baseline names; None means :func:`default_baselines`. Asking for BM3D without ``bm3d`` fails.

    >>> resolve_baselines(["tv", "tv"])
    ('tv',)
    """
    if names is None:
        return default_baselines()
    chosen = tuple(dict.fromkeys(names))
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise InputError(f"baseline(s) {', '.join(unknown)}: unknown; use any of {', '.join(BASELINES)}")
    if "bm3d" in chosen:
        _require_bm3d()
    return chosen


def check_parameter(name: str, value: float) -> None:
    """InputError unless ``value`` is a finite positive number."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name}={value!r}: must be a positive number")
