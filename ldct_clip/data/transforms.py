"""MONAI dictionary transforms for CT slices: HU <-> model scale, windows, paired crops, 8-way dihedral
augmentation and online Gaussian noise.

Dictionary transforms move paired images together (one crop position, one flip/rotation for both keys).
MONAI's own transforms are used wherever they exist; :class:`AddGaussianNoised` adds what MONAI lacks:
noise written to a *new* key so the clean target is kept. Images are channel-first, ``1 x Y x X``.

Seeding: every builder returns a MONAI ``Compose``; ``compose.set_random_state(seed)`` seeds all random
transforms in it, including the noise, so a pipeline replays exactly.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    RandFlipd,
    RandGaussianNoise,
    Randomizable,
    RandRotate90d,
    RandSpatialCropd,
    ScaleIntensityRanged,
)
from monai.utils import ensure_tuple

from ldct_clip.data.hu import HU_MAX, HU_MIN, resolve_window
from ldct_clip.errors import InputError

CLEAN_KEY = "clean"
"""Training target: a full-dose patch on the model scale."""
NOISY_KEY = "noisy"
"""Training input: the clean patch plus online Gaussian noise."""
LOW_KEY = "low"
"""Evaluation input: a quarter-dose slice on the model scale."""
FULL_KEY = "full"
"""Evaluation reference: the paired full-dose slice on the model scale."""

DEFAULT_SIGMA = 5.0 / 255.0
"""Std of the online training noise on the model scale (about 80 HU), as in the released LDCT config."""
DEFAULT_PATCH_SIZE = 128
"""Side of the square training patches."""

# RandRotate90 rotates by k ~ U{1..max_k} with probability `prob`: prob = 3/4 with max_k = 3 makes
# k ~ U{0..3}; with an independent flip of probability 1/2 each of the 8 dihedral elements has 1/8.
_ROTATE_PROB = 0.75
_FLIP_PROB = 0.5


def hu_to_model_scaled(keys: KeysCollection) -> ScaleIntensityRanged:
    """HU -> model scale, ``(HU + 1024) / 4096``, unclipped (same map as :func:`ldct_clip.data.hu.hu_to_model`).

    >>> float(hu_to_model_scaled("x")({"x": np.full((1, 2, 2), 0.0)})["x"][0, 0, 0])
    0.25
    """
    return ScaleIntensityRanged(keys, a_min=HU_MIN, a_max=HU_MAX, b_min=0.0, b_max=1.0, clip=False)


def model_to_hu_scaled(keys: KeysCollection) -> ScaleIntensityRanged:
    """Model scale -> HU, ``x * 4096 - 1024``: the exact inverse of :func:`hu_to_model_scaled`.

    >>> float(model_to_hu_scaled("x")({"x": np.full((1, 2, 2), 0.25)})["x"][0, 0, 0])
    0.0
    """
    return ScaleIntensityRanged(keys, a_min=0.0, a_max=1.0, b_min=HU_MIN, b_max=HU_MAX, clip=False)


def windowed(keys: KeysCollection, window: str | tuple[float, float] = "display") -> ScaleIntensityRanged:
    """HU -> [0, 1] through a window (a name from ``ldct_clip.data.hu.WINDOWS`` or (lo, hi)), clipped.

    >>> float(windowed("x", "display")({"x": np.full((1, 1, 1), 40.0)})["x"].max())
    0.5
    """
    lo, hi = resolve_window(window)
    return ScaleIntensityRanged(keys, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)


def rand_dihedrald(keys: KeysCollection) -> Compose:
    """Random element of the 8-way dihedral group (flips x rot90), each with probability 1/8, the same for
    all ``keys``; built from MONAI's ``RandFlipd`` and ``RandRotate90d``."""
    return Compose(
        [
            RandFlipd(keys, prob=_FLIP_PROB, spatial_axis=0),
            RandRotate90d(keys, prob=_ROTATE_PROB, max_k=3, spatial_axes=(0, 1)),
        ]
    )


class AddGaussianNoised(Randomizable, MapTransform):
    """Add N(0, sigma^2) noise to each of ``keys``, written to ``target_keys`` (default: in place).

    Unclipped, as in the released training code. The array transform is MONAI's ``RandGaussianNoise``
    with ``prob=1`` and a fixed std; seed it with :meth:`set_random_state`. Each key gets its own noise.

    >>> t = AddGaussianNoised(CLEAN_KEY, sigma=0.1, target_keys=NOISY_KEY).set_random_state(0)
    >>> out = t({CLEAN_KEY: np.zeros((1, 64, 64), np.float32)})
    >>> sorted(out), round(float(out[NOISY_KEY].std()), 1)
    (['clean', 'noisy'], 0.1)
    """

    backend = RandGaussianNoise.backend

    def __init__(
        self,
        keys: KeysCollection,
        sigma: float = DEFAULT_SIGMA,
        target_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise InputError(f"sigma={sigma!r}: noise std must be a finite number >= 0 (model scale, e.g. 5/255)")
        self.target_keys: tuple[Hashable, ...] = self.keys if target_keys is None else ensure_tuple(target_keys)
        if len(self.target_keys) != len(self.keys):
            raise InputError(
                f"target_keys={self.target_keys}: need one target per key in {self.keys}; pass as many names"
            )
        self.sigma = float(sigma)
        self.noise = RandGaussianNoise(prob=1.0, mean=0.0, std=self.sigma, sample_std=False)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> AddGaussianNoised:
        """Seed the noise generator (MONAI's ``Randomizable`` protocol, used by ``Compose``)."""
        super().set_random_state(seed, state)
        self.noise.set_random_state(seed, state)
        return self

    def randomize(self, data: NdarrayOrTensor) -> None:
        """Draw fresh noise with the shape of ``data``."""
        self.noise.randomize(data)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key, target in self.key_iterator(d, self.target_keys):
            self.randomize(d[key])
            d[target] = self.noise(d[key], randomize=False)
        return d


def _as_plain_float_tensors(keys: KeysCollection) -> EnsureTyped:
    """Plain float32 torch tensors (no MONAI metadata), so DataLoader batches are ordinary tensors."""
    return EnsureTyped(keys, data_type="tensor", dtype=torch.float32, track_meta=False)


def training_transforms(patch_size: int = DEFAULT_PATCH_SIZE, sigma: float = DEFAULT_SIGMA) -> Compose:
    """Full-dose HU slice ``{"clean": 1xYxX}`` -> ``{"clean", "noisy": 1xPxP}`` on the model scale.

    Random ``patch_size`` crop, HU -> model scale, 8-way dihedral augmentation, then unclipped Gaussian
    noise of std ``sigma`` added to a copy of the clean patch.

    >>> t = training_transforms(patch_size=32).set_random_state(100)
    >>> out = t({"clean": np.zeros((1, 64, 48), np.float32)})
    >>> tuple(out["noisy"].shape), float(out["clean"].mean())
    ((1, 32, 32), 0.25)
    """
    if not (isinstance(patch_size, int) and patch_size > 0):
        raise InputError(f"patch_size={patch_size!r}: must be a positive integer number of pixels, e.g. 128")
    return Compose(
        [
            RandSpatialCropd(CLEAN_KEY, roi_size=(patch_size, patch_size), random_size=False),
            hu_to_model_scaled(CLEAN_KEY),
            rand_dihedrald(CLEAN_KEY),
            AddGaussianNoised(CLEAN_KEY, sigma=sigma, target_keys=NOISY_KEY),
            _as_plain_float_tensors([CLEAN_KEY, NOISY_KEY]),
        ]
    )


def evaluation_transforms() -> Compose:
    """Paired HU slices ``{"low", "full": 1xYxX}`` -> the same keys on the model scale, as plain tensors.

    >>> out = evaluation_transforms()({"low": np.zeros((1, 4, 4)), "full": np.zeros((1, 4, 4))})
    >>> float(out["low"].max()), type(out["full"]).__name__
    (0.25, 'Tensor')
    """
    return Compose([hu_to_model_scaled([LOW_KEY, FULL_KEY]), _as_plain_float_tensors([LOW_KEY, FULL_KEY])])
