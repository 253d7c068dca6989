"""Image-quality metrics for CT denoising: PSNR/SSIM presets and HU fidelity in regions of interest.

Published LDCT numbers are only comparable under the exact recipe that produced them: which HU window
is clipped, which ``data_range`` enters PSNR and SSIM's stability constants, and how SSIM's Gaussian
window treats the image border. Each recipe is therefore a named, frozen :class:`MetricPreset` in
:data:`PRESETS`, and every report should name its preset.

Conventions shared by all functions here: arguments are ``(pred, target)`` in that order; NumPy arrays
and torch tensors are both accepted; ``data_range`` is always explicit; results are per sample (one value
per slice or image), and reduction is left to :func:`summarize`.

SSIM border handling, the detail that makes libraries disagree:

- ``"same_zero"``: the 11×11 window is applied with zero padding, so the SSIM map has the image's size and
  is averaged over the whole image. This is the pytorch-ssim code used by RED-CNN and CLIPDenoising's
  released evaluation (on HU values, so the padding acts like water, 0 HU).
- ``"valid"``: only positions where the window fits inside the image are averaged. This is MATLAB's
  ``ssim_index``, skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` and MONAI's ``SSIMMetric``.

MONAI's ``SSIMMetric`` implements the "valid" recipe with the same Gaussian kernel but always computes in
float32, which departs from skimage by about 1e-6 to 3e-6 on CT slices, and it has no zero-padded variant;
SSIM is therefore computed here in float64 with a separable Gaussian correlation (scipy, faster than torch's
float64 ``conv2d`` on CPU). MONAI's ``PSNRMetric`` is exact in float64 and is reused.

Notes on the presets against the code that published them:

- ``clipdenoising`` scores HU as given. The released test script converted model output to
  HU with a range of 4120 (``norm_range_max=3096``) instead of 4096; on a synthetic slice that lowers PSNR
  by about 0.05 dB and SSIM by about 4e-5 compared with the exact scale used here.
- ``noise2sim`` reproduces Noise2Sim's PSNR; its script scored SSIM with skimage's defaults of the time
  (7×7 uniform window, sample covariance, data_range implied by the float dtype), which this module does not
  reproduce, so its SSIM is the Gaussian valid-window one at data_range 1.
- ``natural`` takes RGB at peak 255 as an N×C×Y×X batch and clamps to [0, 255]; for sRGB results round to
  integers first, as the published tables did.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Union

import numpy as np
import torch
from monai.metrics import PSNRMetric
from scipy import ndimage

from ldct_clip.errors import InputError

ArrayLike = Union[np.ndarray, torch.Tensor]
Padding = Literal["same_zero", "valid"]
PADDINGS: tuple[str, ...] = ("same_zero", "valid")
Box = tuple[int, ...]
"""A rectangular ROI: ``(y0, x0, h, w)`` in a slice, or ``(z, y0, x0, h, w)`` in a Z×Y×X volume."""

_SLICES_PER_CHUNK = 16
SOFT_TISSUE_HU: tuple[float, float] = (-100.0, 200.0)
"""HU range of soft tissue for flat regions (noise and HU-bias measurements): no fat, air or bone."""


@dataclass(frozen=True)
class MetricPreset:
    """One published PSNR/SSIM recipe.

    Attributes:
        name: registry key.
        window: ``(lo, hi)`` in input units (HU for CT, 0–255 for natural RGB); inputs are clipped to it.
        data_range: the peak value used by PSNR and SSIM's constants, in the units after :meth:`prepare`.
        ssim_padding: ``"same_zero"`` or ``"valid"`` (see the module docstring).
        scale_to_unit: map the clipped window linearly onto [0, 1] before scoring.
        description: one line on where the recipe comes from.
    """

    name: str
    window: tuple[float, float]
    data_range: float
    ssim_padding: Padding
    scale_to_unit: bool
    description: str

    def __post_init__(self) -> None:
        lo, hi = self.window
        expected = 1.0 if self.scale_to_unit else hi - lo
        if not lo < hi or self.data_range != expected or self.ssim_padding not in PADDINGS:
            raise ValueError(f"inconsistent metric preset {self!r}")

    def prepare(self, x: ArrayLike) -> np.ndarray:
        """Clip ``x`` to the preset's window (and rescale to [0, 1] if the preset says so), as float64.

        >>> PRESETS["noise2sim"].prepare(np.array([-1000.0, 40.0, 1000.0]))
        array([0. , 0.5, 1. ])
        """
        lo, hi = self.window
        out = np.clip(_to_numpy(x), lo, hi)
        return (out - lo) / (hi - lo) if self.scale_to_unit else out


PRESETS: Mapping[str, MetricPreset] = MappingProxyType(
    {
        "clipdenoising": MetricPreset(
            name="clipdenoising",
            window=(-1024.0, 3072.0),
            data_range=4096.0,
            ssim_padding="same_zero",
            scale_to_unit=False,
            description="CLIPDenoising Table 3: HU clipped to [-1024, 3072], zero-padded Gaussian SSIM",
        ),
        "redcnn": MetricPreset(
            name="redcnn",
            window=(-160.0, 240.0),
            data_range=400.0,
            ssim_padding="same_zero",
            scale_to_unit=False,
            description="RED-CNN (SSinyu): HU clipped to [-160, 240], zero-padded Gaussian SSIM",
        ),
        "noise2sim": MetricPreset(
            name="noise2sim",
            window=(-160.0, 240.0),
            data_range=1.0,
            ssim_padding="valid",
            scale_to_unit=True,
            description="Noise2Sim: HU window [-160, 240] scaled to [0, 1], valid-window Gaussian SSIM",
        ),
        "natural": MetricPreset(
            name="natural",
            window=(0.0, 255.0),
            data_range=255.0,
            ssim_padding="valid",
            scale_to_unit=False,
            description="natural RGB at peak 255, no border crop, MATLAB-style SSIM per channel, averaged",
        ),
    }
)
"""All metric presets by name."""
CT_PRESETS: tuple[str, ...] = ("clipdenoising", "redcnn", "noise2sim")
"""The presets that apply to CT (the others are for natural images)."""


def get_preset(name: str) -> MetricPreset:
    """Return the preset called ``name``; raise :class:`InputError` naming the valid ones otherwise.

    >>> get_preset("redcnn").data_range
    400.0
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown metric preset {name!r}; valid presets: {', '.join(PRESETS)}") from None


def psnr(pred: ArrayLike, target: ArrayLike, data_range: float) -> np.ndarray:
    """Peak signal-to-noise ratio in dB, ``10·log10(data_range² / MSE)``, per sample.

    Args:
        pred: Y×X image or N×C×Y×X batch (NumPy or torch).
        target: reference, same shape as ``pred``.
        data_range: peak value (e.g. 4096 for HU in [-1024, 3072]); required because no default is right.

    Returns:
        float64 array of shape ``()`` for a Y×X input or ``(N,)`` for a batch; the MSE runs over all
        channels and pixels of a sample. Identical inputs give ``inf``.

    >>> t = np.zeros((8, 8)); float(psnr(t + 4.0, t, data_range=400.0))
    40.0
    """
    p, t, squeeze = _as_batch(pred, target)
    metric = PSNRMetric(max_val=_check_data_range(data_range), reduction="none")
    return _result(metric(torch.from_numpy(p), torch.from_numpy(t)).numpy().reshape(-1), squeeze)


def ssim(
    pred: ArrayLike,
    target: ArrayLike,
    data_range: float,
    padding: Padding = "same_zero",
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> np.ndarray:
    """Structural similarity with a Gaussian window (Wang et al. 2004), per sample, in float64.

    Args:
        pred: Y×X image or N×C×Y×X batch (NumPy or torch).
        target: reference, same shape as ``pred``.
        data_range: peak value entering ``C1 = (k1·data_range)²`` and ``C2 = (k2·data_range)²``; required.
        padding: ``"same_zero"`` averages the zero-padded, image-sized SSIM map (CLIPDenoising, RED-CNN);
            ``"valid"`` averages only where the window fits (MATLAB, skimage, MONAI).
        win_size: odd window side; sigma: Gaussian standard deviation; k1, k2: stability constants.

    Returns:
        float64 array of shape ``()`` for a Y×X input or ``(N,)`` for a batch; channels are scored
        separately and averaged. Identical inputs give 1.

    >>> x = np.linspace(0.0, 1.0, 32 * 32).reshape(32, 32); float(ssim(x, x, data_range=1.0))
    1.0
    """
    if padding not in PADDINGS:
        raise InputError(f"SSIM padding {padding!r} is not supported; use one of {', '.join(PADDINGS)}")
    if win_size < 1 or win_size % 2 == 0:
        raise InputError(f"SSIM win_size {win_size} is not allowed; use a positive odd number such as 11")
    p, t, squeeze = _as_batch(pred, target)
    if padding == "valid" and min(p.shape[-2:]) < win_size:
        raise InputError(
            f"image of size {p.shape[-2:]} is smaller than the {win_size}×{win_size} SSIM window; "
            "use padding='same_zero' or a smaller win_size"
        )
    c1 = (k1 * _check_data_range(data_range)) ** 2
    c2 = (k2 * data_range) ** 2
    mu_p, mu_t, e_pp, e_tt, e_pt = (
        _gaussian_blur(m, win_size, sigma, padding) for m in (p, t, p * p, t * t, p * t)
    )
    var_p = e_pp - mu_p * mu_p
    var_t = e_tt - mu_t * mu_t
    cov = e_pt - mu_p * mu_t
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p * mu_p + mu_t * mu_t + c1) * (var_p + var_t + c2))
    return _result(ssim_map.mean(axis=(-3, -2, -1)), squeeze)


def score_slices(pred_hu: ArrayLike, target_hu: ArrayLike, preset: str | MetricPreset) -> dict[str, np.ndarray]:
    """Per-slice PSNR and SSIM of Z×Y×X volumes under a preset.

    The preset's window (and rescaling) is applied to both volumes, then each slice is scored with the
    preset's ``data_range`` and SSIM padding. A single Y×X slice is treated as Z = 1; an N×C×Y×X batch
    (e.g. RGB images under ``natural``) is scored per image.

    Returns:
        ``{"psnr": (Z,), "ssim": (Z,)}`` float64 arrays.

    >>> t = np.full((2, 16, 16), 40.0)
    >>> score_slices(t + 4.0, t, "redcnn")["psnr"]
    array([40., 40.])
    """
    spec = get_preset(preset) if isinstance(preset, str) else preset
    p, t = spec.prepare(pred_hu), spec.prepare(target_hu)
    if p.shape != t.shape:
        raise InputError(f"pred shape {p.shape} and target shape {t.shape} differ; pass volumes of equal shape")
    if p.ndim == 2:
        p, t = p[None], t[None]
    if p.ndim == 3:
        p, t = p[:, None], t[:, None]
    elif p.ndim != 4:
        raise InputError(f"got a {p.ndim}-D array; pass a Z×Y×X volume, a Y×X slice or an N×C×Y×X batch")
    psnrs, ssims = [], []
    for start in range(0, p.shape[0], _SLICES_PER_CHUNK):
        chunk = slice(start, start + _SLICES_PER_CHUNK)
        psnrs.append(psnr(p[chunk], t[chunk], spec.data_range))
        ssims.append(ssim(p[chunk], t[chunk], spec.data_range, padding=spec.ssim_padding))
    return {"psnr": np.concatenate(psnrs), "ssim": np.concatenate(ssims)}


def summarize(values: ArrayLike) -> tuple[float, float, int]:
    """Mean, standard deviation (population, ``ddof=0`` as in Noise2Sim's tables) and count of ``values``.

    >>> summarize(np.array([1.0, 3.0]))
    (2.0, 1.0, 2)
    """
    v = _to_numpy(values).reshape(-1)
    if v.size == 0:
        raise InputError("summarize got no values; pass at least one per-slice score")
    return float(v.mean()), float(v.std()), int(v.size)


@dataclass(frozen=True)
class RoiStats:
    """HU statistics of one region of interest.

    Attributes:
        pred_mean, target_mean: mean HU in the ROI.
        bias: ``pred_mean - target_mean`` (a denoiser should keep it near 0 HU).
        pred_std, target_std: sample standard deviation (``ddof=1``) of HU in the ROI, the usual CT noise
            measure; in a flat region it is the image noise.
        n_pixels: number of pixels in the ROI.
    """

    pred_mean: float
    target_mean: float
    bias: float
    pred_std: float
    target_std: float
    n_pixels: int


def roi_stats(pred_hu: ArrayLike, target_hu: ArrayLike, rois: Sequence[Box | ArrayLike]) -> list[RoiStats]:
    """Mean-HU bias and noise of ``pred_hu`` against ``target_hu`` in each ROI.

    Args:
        pred_hu: Y×X slice or Z×Y×X volume in HU (no clipping is applied: this measures HU fidelity).
        target_hu: reference of the same shape.
        rois: each a box ``(y0, x0, h, w)`` (slice) or ``(z, y0, x0, h, w)`` (volume), as returned by
            :func:`find_flat_rois`, or a boolean mask of the image's shape.

    >>> t = np.zeros((8, 8)); roi_stats(t + 5.0, t, [(0, 0, 4, 4)])[0].bias
    5.0
    """
    p, t = _to_numpy(pred_hu), _to_numpy(target_hu)
    if p.shape != t.shape or p.ndim not in (2, 3):
        raise InputError(f"got pred {p.shape} and target {t.shape}; pass two Y×X slices or Z×Y×X volumes")
    stats = []
    for roi in rois:
        mask = _roi_mask(roi, p.shape)
        pv, tv = p[mask], t[mask]
        stats.append(
            RoiStats(
                pred_mean=float(pv.mean()),
                target_mean=float(tv.mean()),
                bias=float(pv.mean() - tv.mean()),
                pred_std=float(pv.std(ddof=1)),
                target_std=float(tv.std(ddof=1)),
                n_pixels=int(pv.size),
            )
        )
    return stats


def find_flat_rois(
    target_hu: ArrayLike, size: int = 16, n: int = 5, hu_range: tuple[float, float] = SOFT_TISSUE_HU
) -> list[Box]:
    """Find up to ``n`` flat soft-tissue boxes in a reference image, for noise and HU-bias measurements.

    Candidates are all ``size``×``size`` boxes lying inside one slice whose every pixel is within
    ``hu_range`` (soft tissue, so boxes never straddle fat/air/bone edges). They are picked greedily by
    lowest standard deviation of ``target_hu``, each new box not overlapping an earlier one in the same
    slice. Boxes on different slices may share a position.

    Returns:
        boxes ``(y0, x0, size, size)`` for a Y×X image or ``(z, y0, x0, size, size)`` for a Z×Y×X volume,
        flattest first; fewer than ``n`` when the image has no more room. Raises :class:`InputError` when
        no box fits.

    >>> t = np.full((40, 40), -1000.0); t[10:30, 10:30] = 40.0
    >>> find_flat_rois(t, size=8, n=1)
    [(10, 10, 8, 8)]
    """
    t = _to_numpy(target_hu)
    if t.ndim not in (2, 3):
        raise InputError(f"got a {t.ndim}-D reference image; pass a Y×X slice or a Z×Y×X volume")
    if size < 2 or size > min(t.shape[-2:]):
        raise InputError(f"ROI size {size} does not fit; use 2 <= size <= {min(t.shape[-2:])}")
    if n < 1:
        raise InputError(f"n = {n}; ask for at least one ROI")
    volume = t if t.ndim == 3 else t[None]
    candidates = []  # (std, z, y0, x0); per-slice greedy picks merge into the global greedy order
    for z, image in enumerate(volume):
        candidates += [(s, z, y0, x0) for s, y0, x0 in _flattest_boxes(image, size, n, hu_range)]
    if not candidates:
        raise InputError(
            f"no {size}×{size} region with all values in {hu_range} HU; widen hu_range or use a smaller size"
        )
    best = sorted(candidates)[:n]
    if t.ndim == 2:
        return [(y0, x0, size, size) for _, _, y0, x0 in best]
    return [(z, y0, x0, size, size) for _, z, y0, x0 in best]


def _flattest_boxes(
    image: np.ndarray, size: int, n: int, hu_range: tuple[float, float]
) -> list[tuple[float, int, int]]:
    """Greedy non-overlapping lowest-std boxes of one slice: ``(std, y0, x0)``, flattest first."""
    lo, hi = hu_range
    inside = _box_sums(((image >= lo) & (image <= hi)).astype(np.float64), size) == size * size
    centred = image - 0.5 * (lo + hi)  # smaller magnitudes keep E[x²] − E[x]² accurate
    area = size * size
    mean = _box_sums(centred, size) / area
    var = np.maximum(_box_sums(centred * centred, size) / area - mean * mean, 0.0)
    score = np.where(inside, var, np.inf)
    picks = []
    while len(picks) < n:
        y0, x0 = np.unravel_index(int(np.argmin(score)), score.shape)
        if not np.isfinite(score[y0, x0]):
            break
        picks.append((math.sqrt(score[y0, x0]), int(y0), int(x0)))
        score[max(0, y0 - size + 1) : y0 + size, max(0, x0 - size + 1) : x0 + size] = np.inf
    return picks


def _box_sums(image: np.ndarray, size: int) -> np.ndarray:
    """Sums over every ``size``×``size`` box, indexed by the box's top-left corner (integral image)."""
    c = np.pad(image, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def _roi_mask(roi: Box | ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask of ``shape`` from a box or a mask, validated."""
    if isinstance(roi, (np.ndarray, torch.Tensor)):
        mask = roi.detach().cpu().numpy() if isinstance(roi, torch.Tensor) else roi
        if mask.dtype != bool or mask.shape != shape:
            raise InputError(f"ROI mask of dtype {mask.dtype} and shape {mask.shape}; need bool of shape {shape}")
    else:
        box = tuple(int(v) for v in roi)
        if len(box) != len(shape) + 2:
            form = "(y0, x0, h, w)" if len(shape) == 2 else "(z, y0, x0, h, w)"
            raise InputError(f"ROI box {box} has {len(box)} values; use {form} for an image of shape {shape}")
        *lead, y0, x0, h, w = box
        if h < 1 or w < 1 or y0 < 0 or x0 < 0 or y0 + h > shape[-2] or x0 + w > shape[-1]:
            raise InputError(f"ROI box {box} is empty or outside the image of shape {shape}")
        if lead and not 0 <= lead[0] < shape[0]:
            raise InputError(f"ROI box {box}: slice {lead[0]} is outside 0..{shape[0] - 1}")
        mask = np.zeros(shape, dtype=bool)
        mask[(*lead, slice(y0, y0 + h), slice(x0, x0 + w))] = True
    if mask.sum() < 2:
        raise InputError("an ROI covers fewer than 2 pixels; a noise standard deviation needs at least 2")
    return mask


def _gaussian_blur(x: np.ndarray, win_size: int, sigma: float, padding: Padding) -> np.ndarray:
    """Separable Gaussian correlation over the last two axes of a float64 array, zero-padded or valid.

    scipy's float64 correlation is several times faster on CPU than torch's float64 ``conv2d``.
    """
    r = np.arange(win_size) - (win_size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    g /= g.sum()
    out = ndimage.correlate1d(x, g, axis=-2, mode="constant", cval=0.0)
    out = ndimage.correlate1d(out, g, axis=-1, mode="constant", cval=0.0)
    if padding == "valid":
        crop = win_size // 2
        out = out[..., crop : out.shape[-2] - crop, crop : out.shape[-1] - crop]
    return out


def _check_data_range(data_range: float) -> float:
    if not (isinstance(data_range, numbers.Real) and math.isfinite(data_range) and data_range > 0):
        raise InputError(f"data_range {data_range!r} is not allowed; pass a positive number such as 4096")
    return float(data_range)


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _as_batch(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both inputs as float64 arrays of shape N×C×Y×X, and whether the input was a single Y×X image."""
    p, t = _to_numpy(pred), _to_numpy(target)
    if p.shape != t.shape:
        raise InputError(f"pred shape {p.shape} and target shape {t.shape} differ")
    if p.ndim == 2:
        return p[None, None], t[None, None], True
    if p.ndim != 4:
        raise InputError(f"got a {p.ndim}-D input of shape {p.shape}; pass Y×X or N×C×Y×X")
    return p, t, False


def _result(values: np.ndarray, squeeze: bool) -> np.ndarray:
    return values.reshape(()) if squeeze else values
