"""Noise models: small seeded callables ``noise(image, rng_or_seed) -> noisy``.

Images are float32 arrays with values in [0, 1]: C x H x W for the synthetic out-of-distribution noises
(the paper's Table 1 and 9, generated as MaskDenoising and the released test script did), any shape for
the raw-domain :class:`PoissonGaussianNoise` of the camera pipeline. ``rng_or_seed`` is an int (turned
into ``np.random.default_rng``), a ``np.random.Generator`` or a legacy ``np.random.RandomState``.

Random numbers are drawn in H x W x C order, the layout of the released test script, so
``RandomState(0)`` reproduces that script's random draws for Gaussian, spatial Gaussian and Poisson noise
(to float rounding) on an image read the same way. Speckle and salt & pepper follow MATLAB's ``imnoise``
on uint8 images, which is how MaskDenoising made those test sets.

>>> noise = make_noise("gaussian", 25)
>>> image = np.full((3, 8, 8), 0.5, np.float32)
>>> np.array_equal(noise(image, 7), noise(image, 7))
True
>>> parse_noise_spec("speckle:0.02,0.04")
[('speckle', 0.02), ('speckle', 0.04)]
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Union

import numpy as np
from scipy import ndimage

from ldct_clip.errors import InputError

RandomSource = Union[int, np.random.Generator, np.random.RandomState]
"""An int seed (for ``np.random.default_rng``), a Generator or a legacy RandomState."""

_Rng = Union[np.random.Generator, np.random.RandomState]


def as_rng(rng_or_seed: RandomSource) -> _Rng:
    """The random generator to draw from: ints become ``np.random.default_rng(seed)``."""
    if isinstance(rng_or_seed, (np.random.Generator, np.random.RandomState)):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool):
        return np.random.default_rng(int(rng_or_seed))
    raise TypeError(f"rng_or_seed must be an int, a numpy Generator or RandomState, got {type(rng_or_seed).__name__}")


def _uniform(rng: _Rng, shape: tuple[int, ...]) -> np.ndarray:
    """U[0, 1) samples from either kind of generator (``random`` / ``random_sample``)."""
    return rng.random(shape) if isinstance(rng, np.random.Generator) else rng.random_sample(shape)


def _quantise_uint8(x: np.ndarray) -> np.ndarray:
    """Round to the nearest 1/255 step, halves away from zero as MATLAB's im2uint8, and clip to [0, 1]."""
    return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5) / 255.0


class NoiseModel(abc.ABC):
    """A seeded degradation; subclasses implement :meth:`_apply` on the channels-last view of the image."""

    name: ClassVar[str]

    def __call__(self, image: np.ndarray, rng_or_seed: RandomSource) -> np.ndarray:
        """Return a noisy float32 copy of ``image`` (values in [0, 1], C x H x W, or H x W)."""
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(f"{self.name} noise takes a C x H x W or H x W image, got shape {image.shape}")
        if image.ndim == 3:
            hwc = np.moveaxis(image, 0, -1).astype(np.float64)
            return np.ascontiguousarray(np.moveaxis(self._apply(hwc, as_rng(rng_or_seed)), -1, 0), dtype=np.float32)
        return np.ascontiguousarray(self._apply(image.astype(np.float64), as_rng(rng_or_seed)), dtype=np.float32)

    @abc.abstractmethod
    def _apply(self, image: np.ndarray, rng: _Rng) -> np.ndarray:
        """Noisy version of ``image`` (float64, channels last when it has channels)."""


def _check_level(name: str, value: float, low: float, high: float = float("inf")) -> float:
    value = float(value)
    if not low <= value <= high:
        bounds = f">= {low:g}" if high == float("inf") else f"in [{low:g}, {high:g}]"
        raise InputError(f"{name} must be {bounds}, got {value:g}")
    return value


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """``x + N(0, (sigma/255)²)`` per element, not clipped (sigma on the 0–255 scale)."""

    sigma: float
    name: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        _check_level("gaussian sigma", self.sigma, 0.0)

    def _apply(self, image: np.ndarray, rng: _Rng) -> np.ndarray:
        return image + rng.normal(0.0, self.sigma / 255.0, image.shape)


@dataclass(frozen=True)
class SpatialGaussianNoise(NoiseModel):
    """Per-channel ``N(0, (sigma/255)²)`` filtered by a 3 x 3 box (scipy ``reflect`` border), added, not clipped.

    The filtered noise has std ``sigma/255/3`` and neighbouring elements are correlated.
    """

    sigma: float
    name: ClassVar[str] = "spatial_gaussian"

    def __post_init__(self) -> None:
        _check_level("spatial_gaussian sigma", self.sigma, 0.0)

    def _apply(self, image: np.ndarray, rng: _Rng) -> np.ndarray:
        noise = rng.normal(0.0, self.sigma / 255.0, image.shape)
        size = (3, 3, 1) if image.ndim == 3 else (3, 3)
        return image + ndimage.uniform_filter(noise, size=size, mode="reflect")


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """Poisson noise scaled by ``alpha``, as in the released test script (after BasicSR).

    ``q`` = image quantised to 1/255; ``v = 2^ceil(log2(#unique values of q))``; ``n = Poisson(q·v)/v − q``;
    result ``clip(x + alpha·n, 0, 1)`` with ``x`` the unquantised image.
    """

    alpha: float
    name: ClassVar[str] = "poisson"

    def __post_init__(self) -> None:
        _check_level("poisson alpha", self.alpha, 0.0)

    def _apply(self, image: np.ndarray, rng: _Rng) -> np.ndarray:
        q = np.clip(np.round(image * 255.0), 0, 255) / 255.0
        v = 2.0 ** np.ceil(np.log2(len(np.unique(q))))
        noise = rng.poisson(q * v) / v - q
        return np.clip(image + self.alpha * noise, 0.0, 1.0)


@dataclass(frozen=True)
class SpeckleNoise(NoiseModel):
    """MATLAB ``imnoise(I, 'speckle', v)`` on a uint8 image: ``J = I + sqrt(12 v)·I·(U − 0.5)``, saved as uint8.

    The multiplicative factor has mean 0 and variance ``v``; the result is rounded to 1/255 and clipped.
    """

    variance: float
    name: ClassVar[str] = "speckle"

    def __post_init__(self) -> None:
        _check_level("speckle variance", self.variance, 0.0)

    def _apply(self, image: np.ndarray, rng: _Rng) -> np.ndarray:
        factor = np.sqrt(12.0 * self.variance) * (_uniform(rng, image.shape) - 0.5)
        return _quantise_uint8(image + image * factor)


@dataclass(frozen=True)
class SaltPepperNoise(NoiseModel):
    """MATLAB ``imnoise(I, 'salt & pepper', d)``: per element ``u < d/2`` → 0, ``d/2 <= u < d`` → 1."""

    density: float
    name: ClassVar[str] = "salt_pepper"

    def __post_init__(self) -> None:
        _check_level("salt_pepper density", self.density, 0.0, 1.0)

    def _apply(self, image: np.ndarray, rng: _Rng) -> np.ndarray:
        u = _uniform(rng, image.shape)
        out = image.copy()
        out[u < self.density / 2] = 0.0
        out[(u >= self.density / 2) & (u < self.density)] = 1.0
        return out


@dataclass(frozen=True)
class PoissonGaussianNoise(NoiseModel):
    """Raw-domain noise of the camera pipeline: ``clip(x + sigma_s·x·N1 + sigma_c·N2, 0, 1)``.

    The signal-dependent part has std proportional to the signal (``sigma_s·x``), as in the released
    pipeline; the total std is ``sqrt((sigma_s·x)² + sigma_c²)``. Not one of the sRGB OOD noises, so not in
    :data:`NOISES`.
    """

    sigma_s: float = 0.04
    sigma_c: float = 0.03
    name: ClassVar[str] = "poisson_gaussian"

    def __post_init__(self) -> None:
        _check_level("sigma_s", self.sigma_s, 0.0)
        _check_level("sigma_c", self.sigma_c, 0.0)

    def _apply(self, image: np.ndarray, rng: _Rng) -> np.ndarray:
        shot = rng.normal(0.0, 1.0, image.shape) * (self.sigma_s * image)
        read = rng.normal(0.0, 1.0, image.shape) * self.sigma_c
        return np.clip(image + shot + read, 0.0, 1.0)


NOISES: dict[str, type[NoiseModel]] = {
    cls.name: cls for cls in (GaussianNoise, SpatialGaussianNoise, PoissonNoise, SpeckleNoise, SaltPepperNoise)
}
"""The out-of-distribution noises by name; each is built from one level."""

PAPER_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian": (25.0, 50.0),
    "spatial_gaussian": (45.0, 50.0, 55.0),
    "poisson": (2.5, 3.0, 3.5),
    "speckle": (0.02, 0.03, 0.04),
    "salt_pepper": (0.012, 0.016, 0.02),
}
"""The paper's OOD levels (Section 4.1); σ = 15 Gaussian is the in-distribution case."""

LEVEL_SYMBOLS = {"gaussian": "σ", "spatial_gaussian": "σ", "poisson": "α", "speckle": "σ²", "salt_pepper": "d"}
"""How the paper writes each noise's level."""


def make_noise(name: str, level: float) -> NoiseModel:
    """The noise called ``name`` at ``level``; an unknown name is an :class:`InputError` naming the valid ones.

    >>> make_noise("salt_pepper", 0.02)
    SaltPepperNoise(density=0.02)
    """
    try:
        cls = NOISES[name]
    except KeyError:
        raise InputError(f"unknown noise {name!r}; valid noises: {', '.join(NOISES)}") from None
    return cls(level)  # type: ignore[call-arg]


def parse_noise_spec(spec: str) -> list[tuple[str, float]]:
    """Parse ``NAME:LEVEL[,LEVEL...]`` into ``[(name, level), ...]``; a bare ``NAME`` means the paper's levels.

    Every level is checked by building the noise, so a bad spec fails here, before any work.

    >>> parse_noise_spec("gaussian:25,50")
    [('gaussian', 25.0), ('gaussian', 50.0)]
    >>> parse_noise_spec("poisson")
    [('poisson', 2.5), ('poisson', 3.0), ('poisson', 3.5)]
    """
    name, sep, levels_text = spec.strip().partition(":")
    name = name.strip()
    if name not in NOISES:
        raise InputError(f"unknown noise {name!r} in {spec!r}; valid noises: {', '.join(NOISES)}")
    if not sep:
        return [(name, level) for level in PAPER_LEVELS[name]]
    try:
        levels = [float(part) for part in levels_text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"noise levels in {spec!r} must be numbers separated by commas, e.g. {name}:"
                         f"{','.join(f'{v:g}' for v in PAPER_LEVELS[name])}") from None
    if not levels:
        raise InputError(f"no levels after ':' in {spec!r}; write e.g. {name}:{PAPER_LEVELS[name][0]:g}")
    for level in levels:
        make_noise(name, level)
    return [(name, level) for level in levels]


def parse_noise_specs(specs: Iterable[str]) -> list[tuple[str, float]]:
    """All ``(name, level)`` cases of several specs, in order, without repeats.

    >>> parse_noise_specs(["gaussian:25", "gaussian:25,50"])
    [('gaussian', 25.0), ('gaussian', 50.0)]
    """
    cases: list[tuple[str, float]] = []
    for spec in specs:
        cases.extend(case for case in parse_noise_spec(spec) if case not in cases)
    return cases


def default_cases() -> list[tuple[str, float]]:
    """The paper's OOD cases: every noise of :data:`PAPER_LEVELS` at each of its levels."""
    return [(name, level) for name, levels in PAPER_LEVELS.items() for level in levels]
