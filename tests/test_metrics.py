"""Tests for ldct_clip.metrics: hand-computable values and independent references for each recipe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from ldct_clip.errors import InputError
from ldct_clip.metrics import (
    PRESETS,
    MetricPreset,
    find_flat_rois,
    get_preset,
    psnr,
    roi_stats,
    score_slices,
    ssim,
    summarize,
)


def _phantom(rng: np.random.Generator, n: int = 96) -> np.ndarray:
    """A CT-like slice in HU: air, a textured soft-tissue ellipse and a bone disc."""
    y, x = np.mgrid[:n, :n]
    image = np.full((n, n), -1000.0)
    body = ((x - n / 2) / (0.42 * n)) ** 2 + ((y - n / 2) / (0.34 * n)) ** 2 < 1
    texture = ndimage.gaussian_filter(rng.normal(0.0, 120.0, (n, n)), 2.0)
    image[body] = 40.0 + texture[body]
    image[(x - 0.38 * n) ** 2 + (y - 0.45 * n) ** 2 < (0.08 * n) ** 2] = 900.0
    return image


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    target = _phantom(rng)
    return target + rng.normal(0.0, 25.0, target.shape), target


def _same_zero_reference(pred: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """Straightforward zero-padded 11×11 Gaussian SSIM averaged over the whole image (pytorch-ssim recipe)."""
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    kernel = np.outer(g, g) / np.outer(g, g).sum()

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate(a, kernel, mode="constant", cval=0.0)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(pred), blur(target)
    sxx = blur(pred * pred) - mu_x**2
    syy = blur(target * target) - mu_y**2
    sxy = blur(pred * target) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_constant_offset_gives_exact_psnr_for_each_preset(name: str) -> None:
    preset = PRESETS[name]
    lo, hi = preset.window
    d = 0.01 * (hi - lo)
    target = np.random.default_rng(0).uniform(lo + d, hi - d, (3, 24, 24)) - d / 2
    scores = score_slices(target + d, target, preset)
    np.testing.assert_allclose(scores["psnr"], 20 * math.log10((hi - lo) / d), rtol=0, atol=1e-9)
    assert scores["psnr"].shape == scores["ssim"].shape == (3,)


def test_psnr_formula_and_per_sample_shapes() -> None:
    target = np.zeros((2, 3, 8, 8))
    pred = target + np.array([2.0, 4.0])[:, None, None, None]
    np.testing.assert_allclose(psnr(pred, target, 400.0), [20 * math.log10(200), 20 * math.log10(100)], atol=1e-9)
    single = psnr(pred[0, 0], target[0, 0], data_range=400.0)
    assert single.shape == () and float(single) == pytest.approx(20 * math.log10(200), abs=1e-9)


@pytest.mark.parametrize("padding", ["same_zero", "valid"])
def test_identical_inputs_score_perfectly(pair: tuple[np.ndarray, np.ndarray], padding: str) -> None:
    _, target = pair
    batch = np.stack([target, target + 100.0])[:, None]
    for x in (batch, torch.from_numpy(batch).float()):
        np.testing.assert_allclose(ssim(x, x, 4096.0, padding=padding), [1.0, 1.0], atol=1e-12)
        assert np.all(np.isposinf(psnr(x, x, 4096.0)))


def test_valid_ssim_matches_skimage(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    for p, t, data_range in ((pred, target, 4096.0), ((pred + 1024) / 4096, (target + 1024) / 4096, 1.0)):
        expected = structural_similarity(p, t, data_range=data_range, **kwargs)
        assert float(ssim(p, t, data_range, padding="valid")) == pytest.approx(expected, abs=1e-9)


def test_natural_preset_matches_skimage_per_channel_mean() -> None:
    rng = np.random.default_rng(3)
    clean = ndimage.gaussian_filter(rng.uniform(0, 255, (3, 40, 48)), (0, 2, 2))
    noisy = clean + rng.normal(0, 15, clean.shape)  # partly outside [0, 255]: the preset clamps
    scores = score_slices(noisy[None], clean[None], "natural")
    expected = structural_similarity(
        np.clip(noisy, 0, 255), clean, data_range=255.0, channel_axis=0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    assert scores["ssim"][0] == pytest.approx(expected, abs=1e-9)
    mse = np.mean((np.clip(noisy, 0, 255) - clean) ** 2)
    assert scores["psnr"][0] == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)


def test_same_zero_ssim_matches_reference_and_differs_from_valid(pair: tuple[np.ndarray, np.ndarray]) -> None:
    pred, target = pair
    same = float(ssim(pred, target, 4096.0, padding="same_zero"))
    assert same == pytest.approx(_same_zero_reference(pred, target, 4096.0), abs=1e-9)
    assert abs(same - float(ssim(pred, target, 4096.0, padding="valid"))) > 1e-4
    clipped = [np.clip(a, -1024.0, 3072.0) for a in (pred, target)]  # air noise dips below -1024
    scores = score_slices(pred[None], target[None], "clipdenoising")
    assert scores["ssim"][0] == pytest.approx(float(ssim(*clipped, 4096.0)), abs=1e-12)


def test_valid_ssim_of_constant_images_is_the_luminance_term() -> None:
    a, b, data_range = 30.0, 50.0, 100.0
    c1 = (0.01 * data_range) ** 2
    value = ssim(np.full((16, 16), a), np.full((16, 16), b), data_range, padding="valid")
    assert float(value) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-12)


@pytest.mark.parametrize("name", ["clipdenoising", "redcnn", "noise2sim"])
def test_values_outside_the_window_do_not_change_the_score(pair: tuple[np.ndarray, np.ndarray], name: str) -> None:
    lo, hi = PRESETS[name].window

    def with_outliers(image: np.ndarray, margin: float) -> np.ndarray:
        out = image.copy()
        out[:12, :12] = lo - margin  # e.g. scanner padding
        out[-12:, -12:] = hi + margin  # e.g. metal
        return out

    pred, target = (with_outliers(a, 300.0) for a in pair)
    reference = score_slices(pred[None], target[None], name)
    moved = score_slices(with_outliers(pred, 900.0)[None], with_outliers(target, 2000.0)[None], name)
    clipped = score_slices(np.clip(pred, lo, hi)[None], np.clip(target, lo, hi)[None], name)
    unclipped_psnr = float(psnr(PRESETS[name].prepare(pred), target, PRESETS[name].data_range))
    for key in ("psnr", "ssim"):
        np.testing.assert_allclose(moved[key], reference[key], rtol=0, atol=1e-12)
        np.testing.assert_allclose(clipped[key], reference[key], rtol=0, atol=1e-12)
    assert abs(reference["psnr"][0] - unclipped_psnr) > 1.0


def test_noise2sim_scales_the_window_to_unit_range() -> None:
    np.testing.assert_allclose(PRESETS["noise2sim"].prepare(np.array([-500.0, -160.0, 40.0, 240.0, 900.0])),
                               [0.0, 0.0, 0.5, 1.0, 1.0])


def test_preset_definitions() -> None:
    expected = {
        "clipdenoising": ((-1024.0, 3072.0), 4096.0, "same_zero", False),
        "redcnn": ((-160.0, 240.0), 400.0, "same_zero", False),
        "noise2sim": ((-160.0, 240.0), 1.0, "valid", True),
        "natural": ((0.0, 255.0), 255.0, "valid", False),
    }
    actual = {n: (p.window, p.data_range, p.ssim_padding, p.scale_to_unit) for n, p in PRESETS.items()}
    assert actual == expected
    with pytest.raises(ValueError):
        MetricPreset("bad", (-160.0, 240.0), 4096.0, "valid", False, "data_range does not match the window")


def test_data_range_is_required_and_validated() -> None:
    x = np.zeros((16, 16))
    with pytest.raises(TypeError):
        psnr(x, x)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ssim(x, x)  # type: ignore[call-arg]
    with pytest.raises(InputError, match="data_range"):
        ssim(x, x, 0.0)


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(InputError, match="clipdenoising, redcnn, noise2sim, natural"):
        get_preset("mayo")
    with pytest.raises(InputError, match="unknown metric preset 'mayo'"):
        score_slices(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), "mayo")


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError, match="differ"):
        psnr(np.zeros((8, 8)), np.zeros((8, 9)), 1.0)
    with pytest.raises(InputError, match="Y×X or N×C×Y×X"):
        ssim(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), 1.0)
    with pytest.raises(InputError, match="padding"):
        ssim(np.zeros((16, 16)), np.zeros((16, 16)), 1.0, padding="reflect")  # type: ignore[arg-type]


def test_summarize() -> None:
    mean, std, n = summarize(np.array([44.0, 46.0, 45.0, 45.0]))
    assert (mean, n) == (45.0, 4) and std == pytest.approx(math.sqrt(0.5))


def test_roi_stats_bias_and_noise() -> None:
    rng = np.random.default_rng(11)
    target = _phantom(rng, 128)
    offset = target + 7.0
    stats = roi_stats(offset, target, [(40, 40, 30, 30), target > 500])
    assert [s.bias for s in stats] == pytest.approx([7.0, 7.0], abs=1e-9)
    flat = np.full((2, 96, 96), 40.0)
    noisy = flat + rng.normal(0.0, 10.0, flat.shape)
    box, mask = (1, 10, 10, 64, 64), np.zeros(flat.shape, dtype=bool)
    mask[1, 10:74, 10:74] = True
    by_box, by_mask = roi_stats(noisy, flat, [box, torch.from_numpy(mask)])
    assert by_box == by_mask
    assert by_box.pred_std == pytest.approx(10.0, rel=0.05) and by_box.target_std == 0.0
    assert by_box.n_pixels == 64 * 64 and by_box.bias == pytest.approx(by_box.pred_mean - 40.0)
    tiny = np.array([[0.0, 0.0], [2.0, 2.0]])
    assert roi_stats(tiny, tiny, [(0, 0, 2, 2)])[0].pred_std == pytest.approx(math.sqrt(4 / 3))  # ddof=1
    with pytest.raises(InputError, match="outside"):
        roi_stats(noisy, flat, [(1, 90, 90, 10, 10)])


def test_find_flat_rois_finds_the_flat_region() -> None:
    rng = np.random.default_rng(5)
    volume = np.stack([_phantom(rng, 128) + rng.normal(0.0, 20.0, (128, 128)) for _ in range(3)])
    volume[1, 70:100, 50:90] = 60.0 + rng.normal(0.0, 2.0, (30, 40))  # the flat soft-tissue region
    rois = find_flat_rois(volume, size=12, n=2)
    for z, y0, x0, h, w in rois:
        assert (z, h, w) == (1, 12, 12)
        assert 70 <= y0 and y0 + h <= 100 and 50 <= x0 and x0 + w <= 90
    (_, ay, ax, _, _), (_, by, bx, _, _) = rois
    assert abs(ay - by) >= 12 or abs(ax - bx) >= 12  # non-overlapping
    stats = roi_stats(volume, volume, rois)
    assert all(s.target_std < 3.0 for s in stats)
    single = find_flat_rois(volume[1], size=12, n=1)
    assert single == [rois[0][1:]]
    with pytest.raises(InputError, match="no 12×12 region"):
        find_flat_rois(volume, size=12, hu_range=(5000.0, 6000.0))
