"""ldct_clip.projectors: the fast projectors against scikit-image's radon/iradon, batching, and fan beam."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import iradon, radon

from ldct_clip.errors import InputError
from ldct_clip.projectors import (
    FanGeometry,
    ParallelGeometry,
    default_views,
    get_projector,
    make_geometry,
    nufft,
    resolve_projector,
)
from ldct_clip.simulate import simulate_low_dose

needs_finufft = pytest.mark.skipif(not nufft.available(), reason="finufft is not installed (pip install finufft)")
FAST = (pytest.param("nufft", marks=needs_finufft), "torch")


def phantom(size: int) -> np.ndarray:
    """Water disc (μ = 1) with a bone-like (2) and a lung-like (0.3) insert, zero outside the circle."""
    y, x = np.mgrid[:size, :size]
    c = size // 2
    image = np.where(np.hypot(y - c, x - c) < 0.42 * size, 1.0, 0.0)
    image[np.hypot(y - c - 0.2 * size, x - c) < 0.07 * size] = 2.0
    image[np.hypot(y - c + 0.2 * size, x - c) < 0.07 * size] = 0.3
    return image


def relative_rms(a: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - reference) ** 2) / np.mean(reference**2)))


@pytest.mark.parametrize("size", [64, 96])
def test_parallel_forward_matches_skimage_radon(size: int) -> None:
    """torch samples radon's own points (float32: 1e-5); nufft evaluates the same operator in Fourier space (3e-3)."""
    views = 48
    geometry = ParallelGeometry(size, 0.8, views)
    reference = radon(phantom(size), np.arange(views) * 180 / views, circle=True).T * 0.8
    for name, tolerance in (("torch", 1e-5), ("nufft", 3e-3))[: 2 if nufft.available() else 1]:
        sinogram = get_projector(name, geometry, threads=1).forward(phantom(size)[None])[0]
        assert sinogram.shape == reference.shape
        assert relative_rms(sinogram, reference) < tolerance, name


@pytest.mark.parametrize("filter_name", ["ramp", "hann"])
def test_parallel_fbp_matches_skimage_iradon(filter_name: str) -> None:
    size, views = 96, default_views(96)
    geometry = ParallelGeometry(size, 1.0, views)
    degrees = np.arange(views) * 180 / views
    sinogram = radon(phantom(size), degrees, circle=True)
    reference = iradon(sinogram, degrees, output_size=size, filter_name=filter_name, circle=True)
    for name, tolerance in (("torch", 1e-4), ("nufft", 5e-3))[: 2 if nufft.available() else 1]:
        image = get_projector(name, geometry, filter_name, threads=1).fbp(sinogram.T[None])[0]
        assert relative_rms(image, reference) < tolerance, name


def _water(n_slices: int, size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    c = (size - 1) / 2
    image = np.where(np.hypot(y - c, x - c) < 0.46 * size, 0.0, -1000.0).astype(np.float32)
    return np.repeat(image[None], n_slices, axis=0)


def radial_nps(noise: np.ndarray) -> np.ndarray:
    """Radially averaged noise power spectrum (integer radius bins up to Nyquist) of Z × n × n noise patches."""
    n = noise.shape[-1]
    power = np.mean(np.abs(np.fft.fftshift(np.fft.fft2(noise - noise.mean(axis=(1, 2), keepdims=True)),
                                           axes=(1, 2))) ** 2, axis=0)
    y, x = np.mgrid[:n, :n]
    radius = np.hypot(y - n // 2, x - n // 2).round().astype(int)
    keep = radius <= n // 2
    return np.bincount(radius[keep], power[keep]) / np.bincount(radius[keep])


@pytest.fixture(scope="module")
def water_noise() -> dict[str, np.ndarray]:
    """Added noise in a central 40 × 40 patch of 12 water slices (96 × 96), same dose and seed, per projector."""
    hu = _water(12, 96)
    patch = (slice(None), slice(28, 68), slice(28, 68))
    names = ("skimage", "torch", "nufft") if nufft.available() else ("skimage", "torch")
    return {name: (simulate_low_dose(hu, 0.75, 0.25, seed=3, workers=1, projector=name) - hu)[patch]
            for name in names}


@pytest.mark.parametrize("name", FAST)
def test_noise_sd_matches_the_reference_within_3_percent(water_noise: dict[str, np.ndarray], name: str) -> None:
    """Same dose, same seed: the same photon draws, so the SDs differ only by the projector (19 200 pixels)."""
    reference = water_noise["skimage"].std()
    assert reference > 5.0  # real noise, not an empty comparison
    assert water_noise[name].std() == pytest.approx(reference, rel=0.03)


@pytest.mark.parametrize("name", FAST)
def test_noise_power_spectrum_shape_matches_the_reference(water_noise: dict[str, np.ndarray], name: str) -> None:
    """Radially averaged NPS in 5 bands of 4 frequency bins (0.025 to 0.5 cycles/pixel), normalised to unit
    sum: every band within 5 % of the reference curve's peak (measured: nufft 2.2 %, torch 0.4 %)."""

    def bands(noise: np.ndarray) -> np.ndarray:
        curve = radial_nps(noise)[1:21].reshape(5, 4).mean(axis=1)
        return curve / curve.sum()

    reference, curve = bands(water_noise["skimage"]), bands(water_noise[name])
    assert reference[-1] > 1.5 * reference[0]  # ramp-filtered noise: power rises with frequency
    assert np.abs(curve - reference).max() < 0.05 * reference.max()


@pytest.mark.parametrize("name", FAST)
def test_results_do_not_depend_on_the_batch_size(name: str) -> None:
    rng = np.random.default_rng(0)
    geometry = ParallelGeometry(64, 0.7, 40)
    projector = get_projector(name, geometry, threads=1)
    images = np.stack([phantom(64) * rng.uniform(0.5, 1.5) for _ in range(3)])
    sinograms = projector.forward(images)
    one_by_one = np.concatenate([projector.forward(image[None]) for image in images])
    assert np.allclose(sinograms, one_by_one, rtol=0, atol=1e-6 * np.abs(sinograms).max())
    noise = rng.standard_normal(sinograms.shape)
    together = projector.fbp(noise)
    single = np.concatenate([projector.fbp(s[None]) for s in noise])
    assert np.allclose(together, single, rtol=0, atol=1e-6 * np.abs(together).max())


def test_fan_fbp_of_the_forward_projection_reconstructs_the_phantom() -> None:
    size = 64
    geometry = make_geometry("fan", size, 0.75, views=576)
    projector = get_projector("torch", geometry)
    sinogram = projector.forward(phantom(size)[None])
    assert sinogram.shape == (1, 576, geometry.channels)
    y, x = np.mgrid[:size, :size]
    # view 0's source is on the +x axis: its central ray runs along the centre row, one sample per pixel
    centre = int(round(geometry.central_channel))
    assert sinogram[0, 0, centre] == pytest.approx(phantom(size)[size // 2].sum() * 0.75, rel=1e-3)
    image = projector.fbp(sinogram)[0]
    water = (np.hypot(y - 32, x - 32) < 0.35 * size) & (image > 0) & (np.abs(phantom(size) - 1.0) < 1e-9)
    interior = np.hypot(y - 32, x - 32) < 0.38 * size
    assert image[water].mean() == pytest.approx(1.0, abs=0.01)
    assert np.sqrt(np.mean((image - phantom(size))[interior] ** 2)) < 0.06  # edge ringing at 1 pixel steps
    assert relative_rms(image, phantom(size)) < 0.1  # mostly the 1-pixel rim of the sharp disc


def test_fan_noise_sd_grows_like_one_over_root_dose() -> None:
    """Added SD ∝ √(1/d − 1) with negligible electronic noise, i.e. total SD ∝ 1/√d."""
    hu = _water(3, 64)
    patch = (slice(None), slice(20, 44), slice(20, 44))
    sd = {d: (simulate_low_dose(hu, 0.75, d, electronic_noise=0.0, seed=1, workers=1, geometry="fan",
                                n_angles=360) - hu)[patch].std()
          for d in (0.5, 0.1)}
    assert sd[0.1] / sd[0.5] == pytest.approx(np.sqrt((1 / 0.1 - 1) / (1 / 0.5 - 1)), rel=0.1)


def test_fan_geometry_carries_the_scanner_parameters() -> None:
    g = make_geometry("fan", 512, 0.7)
    assert isinstance(g, FanGeometry)
    assert (g.views, g.channels, g.source_isocentre_mm, g.source_detector_mm) == (1152, 736, 595.0, 1085.6)
    assert 490 < g.field_of_view_mm() < 510  # about 500 mm, the scanner's scan field of view
    with pytest.raises(InputError, match="wider than the scanner's 50[0-9] mm field of view"):
        make_geometry("fan", 512, 1.2)


def test_projector_names_and_refusals() -> None:
    parallel, fan = make_geometry("parallel", 32, 1.0), make_geometry("fan", 32, 1.0)
    assert resolve_projector("auto", fan) == "torch"
    assert resolve_projector("auto", parallel) in ("nufft", "torch")
    for bad, message in ((("skimage", fan), "parallel beam only"), (("nufft", fan), "parallel beam only"),
                         (("astra", parallel), "unknown projector")):
        with pytest.raises(InputError, match=message) as info:
            get_projector(*bad)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="unknown geometry"):
        make_geometry("cone", 32, 1.0)
