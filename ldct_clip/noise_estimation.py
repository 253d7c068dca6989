"""Image noise of a CT series in HU, and the training noise σ that matches it.

A model trained with Gaussian noise much stronger than the noise of the series it denoises removes detail
with the noise and can score below its own input (issue 12: trained at σ = 5/255 ≈ 80 HU, tested on a
simulated quarter dose of about 23 HU). :func:`estimate_noise_sd` measures the series' noise,
:func:`matching_sigma` turns it into the config's ``data.noise_sigma`` and :func:`compare_with_training`
words the warning that evaluation reports and ``python -m ldct_clip.noise_level`` print.

The estimator (``method="flat-regions"``, the default through ``"auto"``) is the "global noise level" of
Christianson et al. (AJR 2015), which was validated on patient CT:

1. Soft-tissue mask: pixels whose Gaussian-smoothed value (σ = :data:`SMOOTHING_SIGMA_PX` px) lies in
   :data:`SOFT_TISSUE_HU`; smoothing keeps noisy soft tissue inside the range even at 100 HU of noise,
   where a test on raw pixels would drop most of it (and keep only its quiet pixels).
2. Local SD in a :data:`KERNEL_PX` × :data:`KERNEL_PX` window around every pixel whose whole window is
   soft tissue (``scipy.ndimage.uniform_filter`` of x and x²).
3. The noise SD is the lowest major peak (at least :data:`PEAK_HEIGHT` of the highest) of the histogram of
   log local SD. Windows inside homogeneous tissue all show the noise SD and pile up in that peak; windows
   across edges or texture only add SD, so they spread to the right or pile up at about half an edge's
   contrast: the lowest peak is the noise. Taking the *lowest-SD boxes* instead (as
   :func:`ldct_clip.metrics.find_flat_rois` does for HU-bias ROIs) is biased low on a noisy image: the
   boxes that happen to be quietest are chosen. Here no window is chosen by its own noise.

Why not the alternatives (measured with the tests' phantom and real slices, see docs/noise-level.md):

- ``"wavelet"`` (``skimage.restoration.estimate_sigma``, the MAD of the finest diagonal wavelet band) is
  exact only for white noise. CT noise is spatially correlated: it reports about 0.55 of the true SD for
  projection-simulated (ramp-filtered FBP) noise and 0.17 for white noise Gaussian-filtered with
  σ = 1 px, and it is pulled up by anatomy when the noise is low. Offered for comparison only.
- ``"slice-difference"``: local SD of (slice_i − slice_{i+1}) / √2 in the same soft-tissue windows
  cancels anatomy that both slices share. It is exact for noise independent between slices, but biased
  low where a scanner's overlapping reconstruction correlates neighbouring slices and biased high where
  anatomy changes between slices (3 mm and more). With two or more slices ``"auto"`` computes it as a
  check: :attr:`NoiseEstimate.consistent` says whether it agrees within :data:`CONSISTENCY_TOLERANCE`.

Accuracy (the tests assert ±10 %): from −6 % to +9 % on a 128×128 phantom with discs from −20 to 150 HU,
fat, air and bone, for white, Gaussian-correlated (σ = 1 px) and projection-simulated noise of 10 to
100 HU; on a real 512×512 slice from pydicom's test data with added noise, estimate(real + noise) is within
−5 % to +2 % of √(estimate(real)² + SD²). Known bias: a window's mean absorbs the noise at wavelengths longer than the
window, so low-pass noise of correlation length ℓ px reads low by about 2πℓ²/:data:`KERNEL_PX`² (4 % for
Gaussian-filtered noise with σ = 1 px, 8 % with 1.5 px); ramp-filtered CT noise has almost no power at
those wavelengths. Contrast edges smaller than about the noise merge with the noise peak and read up to
~10 % high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.signal import find_peaks
from skimage.restoration import estimate_sigma

from ldct_clip.data.hu import HU_RANGE
from ldct_clip.errors import InputError
from ldct_clip.metrics import SOFT_TISSUE_HU

__all__ = [
    "BROAD_PEAK_RATIO",
    "CONSISTENCY_TOLERANCE",
    "KERNEL_PX",
    "MAX_SLICES",
    "METHODS",
    "NOISE_MISMATCH_FACTOR",
    "NoiseEstimate",
    "SOFT_TISSUE_HU",
    "compare_with_training",
    "estimate_noise_sd",
    "matching_sigma",
    "sigma_to_hu",
]

METHODS = ("auto", "flat-regions", "slice-difference", "wavelet")
"""Accepted ``method`` names; ``"auto"`` is ``"flat-regions"`` with ``"slice-difference"`` as a check."""
KERNEL_PX = 13
"""Side of the local-SD window in pixels: 9 mm at 0.7 mm pixels, small enough to fit inside organs and
the discs of a 128×128 test slice, large enough that its mean absorbs little correlated noise."""
SMOOTHING_SIGMA_PX = 3.0
"""Gaussian σ (pixels) of the smoothed image that decides which pixels are soft tissue."""
PEAK_HEIGHT = 0.25
"""A histogram peak counts as the noise peak when it reaches this fraction of the highest peak."""
HISTOGRAM_BIN = 0.02
"""Bin width of the log-SD histogram (2 % of the SD), smoothed over :data:`HISTOGRAM_SMOOTHING_BINS`."""
HISTOGRAM_SMOOTHING_BINS = 2.0
MIN_WINDOWS = 200
"""Fewer soft-tissue windows than this are too few for a histogram peak: the estimate is refused."""
MAX_SLICES = 64
"""At most this many evenly spaced slices (or slice pairs) are measured: enough for a stable peak, fast
on a 600-slice series."""
CONSISTENCY_TOLERANCE = 0.25
"""Relative difference between flat-regions and slice-difference estimates still called consistent."""
BROAD_PEAK_RATIO = 2.5
"""A peak whose half-height range spans more than this ratio (hi / lo) is flagged as uncertain: noise on the
tests' phantom gives 1.15 to 2.1; CT_small.dcm, texture with no homogeneous tissue, gives 3.5."""
NOISE_MISMATCH_FACTOR = 2.0
"""Training noise and series noise that differ by more than this factor (either way) earn a warning.

Issue 12's measurements: a model trained at σ = 5/255 (≈ 80 HU) scored below its input on a series of
about 23 HU (factor 3.5) but 4 dB above its input on a 10 % dose series (about 40 HU, factor 2). Within a
factor of 2 the released recipe still helps; beyond it, retrain with :func:`matching_sigma`."""
_MIN_SD_HU = 1e-3  # local SDs below this (noise-free synthetic data) are clipped before the log


@dataclass(frozen=True)
class NoiseEstimate:
    """The noise SD of a series and how it was found.

    Attributes:
        sd_hu: estimated image noise SD in HU.
        method: the method that produced ``sd_hu`` (``"auto"`` resolves to ``"flat-regions"``).
        slices: slices (or slice pairs for ``"slice-difference"``) measured.
        windows: soft-tissue windows (local-SD positions) in the histogram; slices for ``"wavelet"``.
        range_hu: where the histogram peak falls to half its height (for ``"wavelet"``: min and max over
            slices); a range wider than :data:`BROAD_PEAK_RATIO` (said in ``description``) means little
            homogeneous tissue or noise that varies across the image: an uncertain estimate.
        peak_fraction: fraction of the windows whose SD lies in ``range_hu``; a small fraction means
            little homogeneous tissue and a less certain estimate.
        checks: other methods' estimates computed as a cross-check, by method name.
        consistent: whether every check agrees with ``sd_hu`` within :data:`CONSISTENCY_TOLERANCE`
            (None without checks).
        description: one line saying all of the above.
    """

    sd_hu: float
    method: str
    slices: int
    windows: int
    range_hu: tuple[float, float]
    peak_fraction: float
    description: str
    checks: dict[str, float] = field(default_factory=dict)
    consistent: bool | None = None


def sigma_to_hu(noise_sigma: float) -> float:
    """HU SD of training noise ``noise_sigma`` (1/255 units of the model scale (HU + 1024) / 4096).

    >>> round(sigma_to_hu(5.0), 1)
    80.3
    """
    return float(noise_sigma) / 255.0 * HU_RANGE


def matching_sigma(sd_hu: float) -> float:
    """The ``data.noise_sigma`` (1/255 units of the model scale) whose noise has SD ``sd_hu`` HU.

    >>> round(matching_sigma(23.0), 2), round(matching_sigma(sigma_to_hu(5.0)), 6)
    (1.43, 5.0)
    """
    return float(sd_hu) / HU_RANGE * 255.0


def compare_with_training(sd_hu: float, training_noise_sigma: float) -> str | None:
    """The warning line when the training noise and the series noise differ by more than
    :data:`NOISE_MISMATCH_FACTOR`, else None. ``training_noise_sigma`` is in 1/255 units.

    >>> print(compare_with_training(23.0, 5.0))  # doctest: +NORMALIZE_WHITESPACE
    training noise σ = 5/255 (≈ 80 HU) is 3.5× the series' noise (23 HU), more than 2×: the model may remove
    detail with the noise and score below its input; train for this series with data.noise_sigma: 1.4
    >>> compare_with_training(60.0, 5.0) is None
    True
    """
    for name, value in (("sd_hu", sd_hu), ("training_noise_sigma", training_noise_sigma)):
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"{name} = {value!r}: a noise level must be a finite number >= 0")
    train_hu = sigma_to_hu(training_noise_sigma)
    training = f"training noise σ = {training_noise_sigma:g}/255 (≈ {train_hu:.0f} HU)"
    series = f"the series' noise ({sd_hu:.0f} HU)"
    advice = f"train for this series with data.noise_sigma: {sigma_line_value(sd_hu)}"
    limit = f"more than {NOISE_MISMATCH_FACTOR:g}×"
    if train_hu > NOISE_MISMATCH_FACTOR * sd_hu:
        ratio = f"{train_hu / sd_hu:.1f}× " if sd_hu > 0 else "far above "
        return (f"{training} is {ratio}{series}, {limit}: the model may remove detail with the noise "
                f"and score below its input; {advice}")
    if sd_hu > NOISE_MISMATCH_FACTOR * train_hu:
        ratio = f"{sd_hu / train_hu:.1f}× " if train_hu > 0 else "far above "
        return f"{series} is {ratio}the {training}, {limit}: the model may leave noise in; {advice}"
    return None


def sigma_line_value(sd_hu: float) -> str:
    """:func:`matching_sigma` of ``sd_hu`` as the user would type it in a config (two significant digits).

    >>> sigma_line_value(23.0), sigma_line_value(80.3), sigma_line_value(3.0)
    ('1.4', '5', '0.19')
    """
    return f"{float(f'{matching_sigma(sd_hu):.2g}'):g}"


def estimate_noise_sd(hu: np.ndarray, method: str = "auto") -> NoiseEstimate:
    """Estimate the image noise SD (HU) of a Z×Y×X CT volume; see the module docstring for the methods.

    Raises :class:`InputError` when ``hu`` is not a finite 3-D array, a slice is too small, the method is
    unknown, or there is too little soft tissue for an estimate.

    >>> rng = np.random.default_rng(0)
    >>> volume = (40.0 + 25.0 * rng.standard_normal((2, 96, 96))).astype(np.float32)
    >>> estimate = estimate_noise_sd(volume)
    >>> round(estimate.sd_hu), estimate.method, estimate.consistent
    (25, 'flat-regions', True)
    """
    if method not in METHODS:
        raise InputError(f"method {method!r} is unknown; use one of {', '.join(METHODS)}")
    volume = np.asarray(hu)
    if volume.ndim != 3:
        raise InputError(f"hu has {volume.ndim} dimensions; pass a Z×Y×X volume (one slice as shape (1, Y, X))")
    if min(volume.shape[1:]) < 2 * KERNEL_PX:
        raise InputError(
            f"slices of {volume.shape[1]}×{volume.shape[2]} pixels are too small to measure noise in "
            f"{KERNEL_PX}×{KERNEL_PX} windows; pass slices of at least {2 * KERNEL_PX}×{2 * KERNEL_PX}"
        )
    if not np.isfinite(volume).all():
        raise InputError("hu contains NaN or infinite values; pass finite HU values")
    if method == "wavelet":
        return _wavelet(volume)
    if method == "slice-difference":
        return _slice_difference(volume)
    primary = _flat_regions(volume)
    if method == "flat-regions" or volume.shape[0] < 2:
        return primary
    check = _slice_difference(volume)
    consistent = abs(check.sd_hu - primary.sd_hu) <= CONSISTENCY_TOLERANCE * primary.sd_hu
    verdict = "agrees" if consistent else "DISAGREES (overlapping slices if lower, anatomy changing if higher)"
    description = f"{primary.description}; adjacent-slice differences give {check.sd_hu:.1f} HU: {verdict}"
    return NoiseEstimate(primary.sd_hu, primary.method, primary.slices, primary.windows, primary.range_hu,
                         primary.peak_fraction, description, {check.method: check.sd_hu}, consistent)


def _flat_regions(volume: np.ndarray) -> NoiseEstimate:
    """Lowest major peak of the local SD in soft-tissue windows of each measured slice."""
    picks = _evenly_spaced(volume.shape[0])
    values = []
    for z in picks:
        image = volume[z].astype(np.float64)
        values.append(_local_sd(image)[_soft_tissue(image)])
    return _peak_estimate(np.concatenate(values), "flat-regions", len(picks), "soft-tissue windows")


def _slice_difference(volume: np.ndarray) -> NoiseEstimate:
    """The same peak on (slice_i − slice_{i+1}) / √2, in windows that are soft tissue in both slices."""
    if volume.shape[0] < 2:
        raise InputError("the slice-difference method needs at least 2 slices; use method 'flat-regions'")
    picks = _evenly_spaced(volume.shape[0] - 1)
    values = []
    for z in picks:
        a, b = volume[z].astype(np.float64), volume[z + 1].astype(np.float64)
        values.append(_local_sd((a - b) / math.sqrt(2.0))[_soft_tissue(a) & _soft_tissue(b)])
    return _peak_estimate(np.concatenate(values), "slice-difference", len(picks), "adjacent-slice difference windows")


def _wavelet(volume: np.ndarray) -> NoiseEstimate:
    """Median over slices of skimage's wavelet MAD estimate (white-noise assumption)."""
    picks = _evenly_spaced(volume.shape[0])
    values = [float(estimate_sigma(volume[z].astype(np.float64))) for z in picks]
    sd = float(np.median(values))
    description = (f"wavelet MAD (skimage estimate_sigma), median of {len(picks)} slices: {sd:.1f} HU; assumes "
                   "white noise and reads CT's correlated noise low")
    return NoiseEstimate(sd, "wavelet", len(picks), len(picks), (min(values), max(values)), 1.0, description)


def _evenly_spaced(count: int) -> list[int]:
    """Indices of at most :data:`MAX_SLICES` evenly spaced items of ``count``."""
    if count <= MAX_SLICES:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, MAX_SLICES)})


def _soft_tissue(image: np.ndarray) -> np.ndarray:
    """Pixels whose whole window is soft tissue on the smoothed image."""
    lo, hi = SOFT_TISSUE_HU
    smooth = ndimage.gaussian_filter(image, SMOOTHING_SIGMA_PX)
    inside = (smooth >= lo) & (smooth <= hi)
    return ndimage.minimum_filter(inside, size=KERNEL_PX, mode="constant", cval=False)


def _local_sd(image: np.ndarray) -> np.ndarray:
    """Sample SD (n − 1) of the :data:`KERNEL_PX` window around every pixel."""
    centred = image - np.median(image)  # keeps E[x²] − E[x]² accurate in float64
    mean = ndimage.uniform_filter(centred, KERNEL_PX)
    mean_sq = ndimage.uniform_filter(centred * centred, KERNEL_PX)
    n = KERNEL_PX * KERNEL_PX
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0) * n / (n - 1))


def _peak_estimate(values: np.ndarray, method: str, slices: int, what: str) -> NoiseEstimate:
    """The lowest major peak of the histogram of log ``values``, with its half-height range."""
    if values.size < MIN_WINDOWS:
        raise InputError(
            f"only {values.size} {KERNEL_PX}×{KERNEL_PX}-pixel windows of soft tissue ({SOFT_TISSUE_HU[0]:g} to "
            f"{SOFT_TISSUE_HU[1]:g} HU) found, {MIN_WINDOWS} needed; noise can only be estimated on CT in HU "
            "that shows soft tissue"
        )
    logs = np.log(np.maximum(values, _MIN_SD_HU))
    edges = np.arange(logs.min() - 5 * HISTOGRAM_BIN, logs.max() + 6 * HISTOGRAM_BIN, HISTOGRAM_BIN)
    counts, edges = np.histogram(logs, edges)
    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), HISTOGRAM_SMOOTHING_BINS)
    peaks, _ = find_peaks(np.r_[0.0, smooth, 0.0], height=PEAK_HEIGHT * smooth.max())
    top = int(peaks[0]) - 1
    centres = 0.5 * (edges[:-1] + edges[1:])
    below = np.nonzero(smooth < smooth[top] / 2)[0]
    left = below[below < top].max(initial=-1) + 1
    right = below[below > top].min(initial=len(smooth)) - 1
    sd, lo, hi = (math.exp(centres[i]) for i in (top, left, right))
    fraction = float(np.mean((logs >= edges[left]) & (logs < edges[right + 1])))
    broad = "; BROAD peak: little homogeneous tissue, the estimate is uncertain" if hi > BROAD_PEAK_RATIO * lo else ""
    description = (f"{method}: {sd:.1f} HU, the commonest local SD of {values.size} {what} of "
                   f"{KERNEL_PX}×{KERNEL_PX} px on {slices} slice(s) (half-height range {lo:.1f}-{hi:.1f} HU, "
                   f"{fraction:.0%} of windows{broad})")
    return NoiseEstimate(sd, method, slices, int(values.size), (lo, hi), fraction, description)
