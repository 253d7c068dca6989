"""Noise models against their formulas: spread, correlation, flipped pixels, mean, clipping, seeds, specs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ldct_clip.data.noise import (
    NOISES,
    PAPER_LEVELS,
    GaussianNoise,
    PoissonGaussianNoise,
    PoissonNoise,
    SaltPepperNoise,
    SpatialGaussianNoise,
    SpeckleNoise,
    default_cases,
    make_noise,
    parse_noise_spec,
    parse_noise_specs,
)
from ldct_clip.errors import InputError

GREY = np.full((3, 200, 200), 0.5, np.float32)


def _ramp() -> np.ndarray:
    """An image with exactly 256 grey levels (so Poisson's v is 256), mid-grey on its left half."""
    image = np.full((3, 128, 256), 0.5, np.float32)
    image[:, :, 128:] = (np.arange(128 * 128) % 256).reshape(128, 128) / np.float32(255)
    return image


def test_gaussian_is_added_unclipped_with_the_given_std() -> None:
    noisy = GaussianNoise(50)(GREY, 0)
    residual = noisy - GREY
    assert residual.std() == pytest.approx(50 / 255, rel=0.01)
    assert abs(residual.mean()) < 1e-3
    assert noisy.min() < 0 and noisy.max() > 1  # not clipped
    assert noisy.dtype == np.float32 and noisy.shape == GREY.shape


def test_gaussian_reproduces_the_released_scripts_draws() -> None:
    image = np.random.default_rng(1).random((3, 12, 10)).astype(np.float32)
    expected = image + np.random.RandomState(0).normal(0, 25 / 255, (12, 10, 3)).transpose(2, 0, 1)
    np.testing.assert_allclose(GaussianNoise(25)(image, np.random.RandomState(0)), expected, atol=1e-6)


def test_spatial_gaussian_is_box_filtered_per_channel() -> None:
    residual = SpatialGaussianNoise(45)(GREY, 1) - GREY
    inner = residual[:, 2:-2, 2:-2]
    assert inner.std() == pytest.approx(45 / 255 / 3, rel=0.02)  # mean of 9 iid values: std / 3
    lag1 = np.corrcoef(inner[:, :, :-1].ravel(), inner[:, :, 1:].ravel())[0, 1]
    assert lag1 == pytest.approx(6 / 9, abs=0.03)  # 3x3 boxes one step apart share 6 of 9 values
    across_channels = np.corrcoef(inner[0].ravel(), inner[1].ravel())[0, 1]
    assert abs(across_channels) < 0.03
    rng = np.random.RandomState(2)
    white = rng.normal(0, 45 / 255, (200, 200, 3))
    box = np.stack([ndimage.convolve(white[..., c], np.ones((3, 3)) / 9) for c in range(3)])
    np.testing.assert_allclose(SpatialGaussianNoise(45)(GREY, np.random.RandomState(2)), GREY + box, atol=1e-6)


def test_poisson_variance_scales_with_level_and_is_clipped() -> None:
    image = _ramp()
    grey = (slice(None), slice(None), slice(0, 128))
    base = PoissonNoise(1.0)(image, 0) - image
    assert base[grey].var() == pytest.approx(0.5 / 256, rel=0.03)  # Poisson(x·v)/v has variance x / v, v = 256
    assert abs(base[grey].mean()) < 1e-3
    strong = PoissonNoise(3.0)(image, 0) - image
    assert strong[grey].var() == pytest.approx(9 * 0.5 / 256, rel=0.05)
    noisy = PoissonNoise(3.5)(image, 0)
    assert noisy.min() == 0.0 and noisy.max() == 1.0 and ((noisy == 0) | (noisy == 1)).mean() > 0.001


def test_poisson_uses_the_number_of_grey_levels() -> None:
    two_levels = np.zeros((3, 100, 100), np.float32)
    two_levels[:, :, 50:] = 16 / 255  # 2 unique values: v = 2, so Poisson(x·2)/2 − x has variance x / 2
    residual = PoissonNoise(1.0)(two_levels, 3) - two_levels
    assert residual[:, :, 50:].var() == pytest.approx(16 / 255 / 2, rel=0.05)
    assert np.all(residual[:, :, :50] == 0)  # zero signal, zero Poisson noise


def test_speckle_is_multiplicative_with_the_given_variance_on_the_uint8_grid() -> None:
    noisy = SpeckleNoise(0.04)(GREY, 0)
    relative = (noisy - GREY) / GREY
    assert relative.var() == pytest.approx(0.04 + 1 / (12 * 127.5 ** 2), rel=0.02)
    assert abs(relative.mean()) < 2e-3
    assert relative.max() <= np.sqrt(12 * 0.04) / 2 + 1 / 255  # uniform: bounded
    np.testing.assert_allclose(noisy * 255, np.round(noisy * 255), atol=1e-4)
    assert np.all(SpeckleNoise(0.04)(np.zeros_like(GREY), 0) == 0)
    bright = SpeckleNoise(0.04)(np.full_like(GREY, 0.9), 0)
    assert bright.max() == 1.0  # clipped


def test_salt_and_pepper_flips_the_given_fraction() -> None:
    image = np.random.default_rng(0).uniform(0.1, 0.9, (3, 200, 200)).astype(np.float32)
    noisy = SaltPepperNoise(0.02)(image, 5)
    changed = noisy != image
    assert changed.mean() == pytest.approx(0.02, rel=0.08)
    assert (noisy == 0).mean() == pytest.approx(0.01, rel=0.12) and (noisy == 1).mean() == pytest.approx(0.01, rel=0.12)
    assert set(np.unique(noisy[changed])) <= {0.0, 1.0}
    u = np.random.RandomState(1).random_sample((200, 200, 3)).transpose(2, 0, 1)
    expected = np.where(u < 0.01, 0.0, np.where(u < 0.02, 1.0, image))
    np.testing.assert_array_equal(SaltPepperNoise(0.02)(image, np.random.RandomState(1)), expected)


def test_poisson_gaussian_std_follows_the_signal() -> None:
    noise = PoissonGaussianNoise(0.04, 0.03)
    for level in (0.2, 0.8):
        flat = np.full((300, 300), level)
        residual = noise(flat, 0) - flat
        assert residual.std() == pytest.approx(np.hypot(0.04 * level, 0.03), rel=0.02)
    noisy = noise(np.full((100, 100), 0.99), 0)
    assert noisy.max() == 1.0  # sensor saturation


@pytest.mark.parametrize("name", sorted(NOISES))
def test_every_noise_is_reproducible_per_seed(name: str) -> None:
    noise = make_noise(name, PAPER_LEVELS[name][-1])
    image = _ramp()
    a, b, c = noise(image, 11), noise(image, np.random.default_rng(11)), noise(image, 12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(noise(image, np.random.RandomState(4)), noise(image, np.random.RandomState(4)))
    assert a.dtype == np.float32 and a.shape == image.shape


def test_specs_parse_and_errors_name_the_valid_choices() -> None:
    assert parse_noise_spec("spatial_gaussian:45, 50") == [("spatial_gaussian", 45.0), ("spatial_gaussian", 50.0)]
    assert parse_noise_specs(["poisson:3", "poisson"]) == [("poisson", 3.0), ("poisson", 2.5), ("poisson", 3.5)]
    assert len(default_cases()) == 14 and default_cases()[0] == ("gaussian", 25.0)
    with pytest.raises(InputError, match="unknown noise 'gauss'.*valid noises: gaussian, spatial_gaussian"):
        parse_noise_spec("gauss:25")
    with pytest.raises(InputError, match="must be numbers"):
        parse_noise_spec("gaussian:abc")
    with pytest.raises(InputError, match="no levels"):
        parse_noise_spec("speckle:")
    with pytest.raises(InputError, match=r"salt_pepper density must be in \[0, 1\], got 2"):
        parse_noise_spec("salt_pepper:2")
    with pytest.raises(InputError, match="unknown noise"):
        make_noise("poisson_gaussian", 0.04)
    with pytest.raises(TypeError, match="rng_or_seed"):
        GaussianNoise(15)(GREY, 1.5)  # type: ignore[arg-type]
