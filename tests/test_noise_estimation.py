"""Noise-SD estimation on simulated noise of known SD, on a phantom and on real CT slices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from scipy import ndimage

from ldct_clip.data.hu import HU_RANGE
from ldct_clip.errors import InputError
from ldct_clip.io.dicom import read_slice_hu
from ldct_clip.noise_estimation import (
    BROAD_PEAK_RATIO,
    CONSISTENCY_TOLERANCE,
    NOISE_MISMATCH_FACTOR,
    SOFT_TISSUE_HU,
    compare_with_training,
    estimate_noise_sd,
    matching_sigma,
    sigma_to_hu,
)
from ldct_clip.simulate import simulate_low_dose

TOLERANCE = 0.10
"""The documented accuracy: every estimate within ±10 % of the known SD."""
SDS = (10.0, 25.0, 50.0, 100.0)
SLICES = 3


def phantom(size: int = 128) -> np.ndarray:
    """One anatomy-like slice: fat rim, soft tissue with discs from -20 to 150 HU, an air pocket and bone."""
    y, x = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    image = np.full((size, size), -1000.0)
    image[(x / 0.92) ** 2 + (y / 0.8) ** 2 < 1] = -90.0
    image[(x / 0.85) ** 2 + (y / 0.72) ** 2 < 1] = 40.0
    for cx, cy, r, value in [(-0.4, -0.2, 0.25, 100.0), (0.35, -0.25, 0.2, -20.0), (0.0, 0.4, 0.18, 150.0),
                             (0.45, 0.35, 0.08, 700.0), (-0.45, 0.35, 0.08, -1000.0), (0.0, -0.1, 0.06, 1200.0)]:
        image[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = value
    return image


def soft_tissue_interior(image: np.ndarray) -> np.ndarray:
    """Pixels of soft tissue at least 3 px from any other tissue: where a known noise SD is measured."""
    lo, hi = SOFT_TISSUE_HU
    return ndimage.binary_erosion((image >= lo) & (image <= hi), iterations=3)


def white(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def correlated(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """White noise Gaussian-filtered in-plane (σ = 1 px), rescaled to unit SD."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), (0, 1.0, 1.0))
    return noise / noise.std()


@pytest.fixture(scope="module")
def projection_noise() -> np.ndarray:
    """Unit-SD noise of simulate_low_dose on the phantom (low − full, SD measured in flat soft tissue)."""
    full = np.repeat(phantom()[None], SLICES, axis=0).astype(np.float32)
    noise = simulate_low_dose(full, 0.7, dose=0.25, workers=1, seed=3).astype(np.float64) - full
    return noise / noise[:, soft_tissue_interior(full[0])].std()


@pytest.mark.parametrize("sd", SDS)
@pytest.mark.parametrize("kind", ["white", "correlated", "projection"])
def test_phantom_with_noise_of_known_sd(kind: str, sd: float, projection_noise: np.ndarray) -> None:
    clean = np.repeat(phantom()[None], SLICES, axis=0)
    rng = np.random.default_rng(int(sd))
    noise = {"white": white, "correlated": correlated}[kind](rng, clean.shape) if kind != "projection" \
        else projection_noise
    estimate = estimate_noise_sd((clean + sd * noise).astype(np.float32))
    assert estimate.sd_hu == pytest.approx(sd, rel=TOLERANCE)
    assert estimate.method == "flat-regions" and estimate.slices == SLICES and estimate.windows > 1000
    assert estimate.range_hu[0] < estimate.sd_hu < estimate.range_hu[1]
    # the phantom's slices are identical, so adjacent-slice differences hold only noise: they must agree
    assert estimate.consistent is True
    assert estimate.checks["slice-difference"] == pytest.approx(sd, rel=TOLERANCE)


def test_wavelet_estimate_reads_correlated_noise_low() -> None:
    """skimage's wavelet MAD is right for white noise but far too low for correlated noise (documented)."""
    clean = np.repeat(phantom()[None], 2, axis=0)
    rng = np.random.default_rng(0)
    on_white = estimate_noise_sd((clean + 50 * white(rng, clean.shape)).astype(np.float32), "wavelet")
    on_correlated = estimate_noise_sd((clean + 50 * correlated(rng, clean.shape)).astype(np.float32), "wavelet")
    assert on_white.sd_hu == pytest.approx(50, rel=0.15)
    assert on_correlated.sd_hu < 0.3 * 50


def test_lowest_sd_boxes_would_be_biased_low() -> None:
    """The reason the flattest-box ROI search is not the estimator: its boxes are the quietest by chance."""
    from ldct_clip.metrics import find_flat_rois

    noisy = (phantom() + 25 * white(np.random.default_rng(1), (128, 128))).astype(np.float32)
    boxes = find_flat_rois(noisy, size=15, n=3, hu_range=(-200.0, 300.0))
    box_sd = np.mean([noisy[y:y + h, x:x + w].std(ddof=1) for y, x, h, w in boxes])
    assert box_sd < 0.9 * 25
    assert estimate_noise_sd(noisy[None]).sd_hu == pytest.approx(25, rel=TOLERANCE)


def real_slice(name: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some test files carry anonymised, non-conformant UIDs
        return read_slice_hu(get_testdata_file(name, download=False)).astype(np.float64)


@pytest.mark.parametrize("kind", ["white", "correlated"])
def test_real_ct_with_added_noise_adds_in_quadrature(kind: str) -> None:
    image = real_slice("693_UNCR.dcm")[None]  # 512×512 abdomen: its own noise is about 3 HU
    own = estimate_noise_sd(image.astype(np.float32)).sd_hu
    rng = np.random.default_rng(7)
    for sd in SDS:
        noise = {"white": white, "correlated": correlated}[kind](rng, image.shape)
        noisy = estimate_noise_sd((image + sd * noise).astype(np.float32)).sd_hu
        assert noisy == pytest.approx(np.hypot(own, sd), rel=TOLERANCE), (sd, own)


def test_texture_without_homogeneous_tissue_is_flagged_uncertain() -> None:
    """CT_small.dcm (128×128 of a 256 mm field) has no region of flat tissue: its peak is broad, and said so."""
    estimate = estimate_noise_sd(real_slice("CT_small.dcm")[None].astype(np.float32))
    assert estimate.range_hu[1] > BROAD_PEAK_RATIO * estimate.range_hu[0]
    assert "BROAD peak" in estimate.description
    clean = estimate_noise_sd((phantom() + 25 * white(np.random.default_rng(4), (128, 128)))[None].astype(np.float32))
    assert "BROAD" not in clean.description


def test_slice_difference_reads_low_on_overlapping_slices() -> None:
    """Noise shared by neighbouring slices (overlapping reconstruction) cancels in differences: the check
    reads about 1/√2 of the noise and disagrees, while the flat-region estimate stays right."""
    rng = np.random.default_rng(2)
    independent = white(rng, (4, 128, 128))
    shared = (independent[:-1] + independent[1:]) / np.sqrt(2.0)  # neighbour correlation 0.5
    volume = np.repeat(phantom()[None], 3, axis=0) + 25 * shared
    estimate = estimate_noise_sd(volume.astype(np.float32))
    assert estimate.sd_hu == pytest.approx(25, rel=TOLERANCE)
    assert estimate.checks["slice-difference"] == pytest.approx(25 / np.sqrt(2.0), rel=TOLERANCE)
    assert estimate.checks["slice-difference"] < (1 - CONSISTENCY_TOLERANCE) * estimate.sd_hu
    assert estimate.consistent is False and "DISAGREES" in estimate.description


def test_single_slice_has_no_check_and_slice_difference_needs_two() -> None:
    image = (phantom() + 25 * white(np.random.default_rng(3), (128, 128))).astype(np.float32)[None]
    estimate = estimate_noise_sd(image)
    assert estimate.checks == {} and estimate.consistent is None
    with pytest.raises(InputError, match="at least 2 slices"):
        estimate_noise_sd(image, "slice-difference")


@pytest.mark.parametrize(
    ("hu", "method", "message"),
    [
        (np.zeros((64, 64), np.float32), "auto", "Z×Y×X"),
        (np.zeros((1, 20, 64), np.float32), "auto", "too small"),
        (np.full((1, 64, 64), np.nan, np.float32), "auto", "NaN"),
        (np.zeros((1, 64, 64), np.float32), "median", "unknown"),
        (np.full((2, 64, 64), -1000.0, np.float32), "auto", "soft tissue"),
    ],
)
def test_bad_input_is_one_line_input_error(hu: np.ndarray, method: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        estimate_noise_sd(hu, method)
    assert "\n" not in str(err.value)


def test_sigma_conversions_follow_the_model_scale() -> None:
    assert sigma_to_hu(5.0) == pytest.approx(5 / 255 * HU_RANGE)
    assert matching_sigma(sigma_to_hu(1.4)) == pytest.approx(1.4)
    assert matching_sigma(80.31) == pytest.approx(5.0, rel=1e-3)


def test_compare_with_training_warns_beyond_the_factor_either_way() -> None:
    train_hu = sigma_to_hu(5.0)
    assert compare_with_training(train_hu / NOISE_MISMATCH_FACTOR * 1.01, 5.0) is None
    assert compare_with_training(train_hu * NOISE_MISMATCH_FACTOR * 0.99, 5.0) is None
    too_strong = compare_with_training(23.0, 5.0)
    assert too_strong is not None and "below its input" in too_strong and "data.noise_sigma: 1.4" in too_strong
    too_weak = compare_with_training(200.0, 5.0)
    assert too_weak is not None and "leave noise" in too_weak and "data.noise_sigma: 12" in too_weak
    assert compare_with_training(0.0, 5.0) is not None
    with pytest.raises(InputError, match="training_noise_sigma"):
        compare_with_training(20.0, float("nan"))
