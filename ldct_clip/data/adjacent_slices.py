"""Noise2Sim training pairs: a quarter-dose slice and a nearby quarter-dose slice, with a similarity mask.

Noise2Sim (Niu et al.) trains on low-dose data only: the target of slice ``i`` is slice ``i ± k`` of the
same series, whose anatomy is nearly the same but whose noise is independent; pixels where the two
slices differ in structure (their 7x7 box means differ by more than 30 HU) are left out of the loss.
This follows the official ``noise2sim/data/datasets/data_ldct.py`` (``LDCT.__getitem__``, ``noise-sim``)
with ``configs/ldct_mayo_unet2.py`` (``neighbor=2``, ``ks=7``, ``th=30``, ``hu_range=[-160, 240]``).
Slices are read as HU with :func:`ldct_clip.io.read_slice_hu` (the file's rescale slope and intercept);
the official code takes ``pixel_array - 1024``, the same HU for Mayo's slope 1 and intercept -1024.

Keys: ``(index, item_seed)`` (what ``ldct_clip.training.StepBatchSampler`` yields) fixes the neighbour,
crop and flip of an item; an ``int`` index draws its item seed from a stream seeded by ``seed`` and,
inside a DataLoader worker, by the worker's torch seed (:class:`KeySeeds`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import Compose, EnsureTyped, RandSpatialCropd
from scipy.ndimage import uniform_filter
from torch.utils.data import Dataset, get_worker_info

from ldct_clip.data.datasets import DEFAULT_SEED, DEFAULT_THICKNESS_MM, SliceReader, _selection
from ldct_clip.data.hu import IntensityScale
from ldct_clip.data.mayo import Manifest, ManifestRow
from ldct_clip.data.transforms import CLEAN_KEY, NOISY_KEY, rand_dihedrald
from ldct_clip.errors import InputError

WEIGHT_KEY = "weight"
"""Per-pixel loss weight: 1 where the two slices are similar, 0 where they differ in structure."""
DEFAULT_NEIGHBOR = 2
"""Largest slice offset k of a pair (official ``neighbor``)."""
DEFAULT_THRESHOLD_HU = 30.0
"""Largest box-mean difference in HU that still counts as similar (official ``th``)."""
DEFAULT_BOX = 7
"""Side of the box whose mean is compared (official ``ks``)."""

SEED_LIMIT = 2**32
"""Item seeds are taken modulo this (numpy and MONAI seeds are below it)."""


class KeySeeds:
    """Turn a dataset key into ``(index, item_seed)``: the seed everything random in an item comes from.

    A ``(index, item_seed)`` key is used as given. An ``int`` key draws the item seed from a stream seeded
    by ``seed``; inside a DataLoader worker the stream is reseeded once per worker (and epoch) from
    ``seed`` and the worker's torch seed, so workers never repeat each other.

    >>> KeySeeds(0)((3, 2**32 + 5))
    (3, 5)
    """

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
            raise InputError(f"seed={seed!r}: must be an integer in [0, 2**32)")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._stream: int | None = None

    def __call__(self, key: int | tuple[int, int]) -> tuple[int, int]:
        if isinstance(key, tuple):
            index, item_seed = key
            return int(index), int(item_seed) % SEED_LIMIT
        info = get_worker_info()
        if info is not None and info.seed != self._stream:
            self._stream = info.seed
            self._rng = np.random.default_rng([self.seed, info.seed])
        return int(key), int(self._rng.integers(SEED_LIMIT))


def patient_balanced(rows: Sequence[ManifestRow]) -> torch.Tensor:
    """Per-item weights 1 / (items of that patient), for ``WeightedRandomSampler`` or ``StepBatchSampler``.

    >>> from dataclasses import replace
    >>> row = ManifestRow("L067", "quarter", 1.0, "", 0.0, "", 8, 8, "a.IMA")
    >>> patient_balanced([row, row, replace(row, patient="L096")]).tolist()
    [0.5, 0.5, 1.0]
    """
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.patient] += 1
    return torch.tensor([1.0 / counts[row.patient] for row in rows], dtype=torch.float64)


def neighbor_offset(position: int, length: int, neighbor: int, rng: np.random.Generator) -> int:
    """Signed offset from slice ``position`` of a ``length``-slice series to its training target.

    As the official code: the first slice always looks forward and the last backward; any other slice
    picks the direction with probability 1/2, then k uniform in 1..min(neighbor, slices left in that
    direction), so the target never leaves the series. A single-slice series returns 0 (its own target).

    >>> rng = np.random.default_rng(0)
    >>> sorted({neighbor_offset(0, 5, 2, rng) for _ in range(100)})
    [1, 2]
    >>> sorted({neighbor_offset(1, 5, 2, rng) for _ in range(100)})
    [-1, 1, 2]
    """
    if length == 1:
        return 0
    last = length - 1
    forward = position == 0 or (position != last and rng.random() < 0.5)
    room = last - position if forward else position
    k = int(rng.integers(1, min(room, neighbor) + 1))
    return k if forward else -k


def similarity_weight(
    hu_a: np.ndarray, hu_b: np.ndarray, threshold_hu: float = DEFAULT_THRESHOLD_HU, box: int = DEFAULT_BOX
) -> np.ndarray:
    """float32 map: 1 where the ``box`` x ``box`` means of two HU images differ by at most ``threshold_hu``.

    The box mean pads with zeros outside the image and divides by ``box**2`` everywhere, as the official
    ``F.conv2d(..., padding=(ks - 1) // 2) / ks**2`` (so near the border a difference counts less).

    >>> a = np.zeros((9, 12), np.float32)
    >>> b = a.copy(); b[:, 4:] = 40.0  # a 40 HU step: masked where >= 6 of the 7 box columns see it
    >>> similarity_weight(a, b)[4].astype(int).tolist()
    [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    """
    means = [uniform_filter(np.asarray(hu, np.float64), size=box, mode="constant", cval=0.0) for hu in (hu_a, hu_b)]
    return (np.abs(means[0] - means[1]) <= threshold_hu).astype(np.float32)


class AdjacentSlicePairs(Dataset):
    """Noise2Sim pairs: ``{"noisy": 1xPxP slice i, "clean": 1xPxP slice i±k, "weight": 1xPxP 0/1}``.

    One item per quarter-dose slice of ``patients`` at ``thickness`` mm; slices are ordered by their
    position z within each patient's series, and only quarter-dose slices are ever read (so the test
    patients' own low-dose scans can be used, as a self-supervised method may). Per item, as official:

    1. the target is slice ``i + neighbor_offset(i, ...)`` of the same series (:func:`neighbor_offset`);
    2. both slices are cropped at one random position to ``patch_size`` (``None``: the whole slice,
       which is the official Mayo setting, crop 512 on 512 slices);
    3. ``weight`` comes from :func:`similarity_weight` on the crops, in HU **after** clipping to the
       scale's window when ``scale.clip`` (official: on HU clipped to [-160, 240], before normalising);
    4. both slices are mapped by ``scale``, then input, target and weight get one random element of the
       8-way dihedral group (flips x 90-degree rotations).

    Args:
        manifest: from :func:`ldct_clip.data.mayo.scan_mayo` or :meth:`Manifest.load`.
        patients: patients whose quarter-dose slices are used (training patients, or test patients).
        scale: HU -> network scale; Noise2Sim's is ``IntensityScale(-160, 240, clip=True)``.
        thickness: slice thickness in mm.
        neighbor: largest slice offset k.
        threshold_hu: largest box-mean difference (HU) kept in the loss.
        box: odd side of the box mean.
        patch_size: side of the square crop, or ``None`` for whole slices.
        kernel: reconstruction kernel, needed only when the data holds several.
        cache: keep decoded slices in RAM (see :class:`ldct_clip.data.datasets.SliceReader`).
        seed: seed of the stream for ``int`` keys (see :class:`KeySeeds`).
    """

    def __init__(
        self,
        manifest: Manifest,
        patients: Sequence[str],
        scale: IntensityScale,
        thickness: float = DEFAULT_THICKNESS_MM,
        neighbor: int = DEFAULT_NEIGHBOR,
        threshold_hu: float = DEFAULT_THRESHOLD_HU,
        box: int = DEFAULT_BOX,
        patch_size: int | None = None,
        kernel: str | None = None,
        cache: bool = False,
        seed: int = DEFAULT_SEED,
    ) -> None:
        if not isinstance(scale, IntensityScale):
            raise InputError(f"scale={scale!r}: pass an ldct_clip.data.hu.IntensityScale, e.g. (-160, 240, clip)")
        if isinstance(neighbor, bool) or not isinstance(neighbor, int) or neighbor < 1:
            raise InputError(f"neighbor={neighbor!r}: must be an integer >= 1 (largest slice offset, e.g. 2)")
        if not (isinstance(threshold_hu, (int, float)) and math.isfinite(threshold_hu) and threshold_hu >= 0):
            raise InputError(f"threshold_hu={threshold_hu!r}: must be a finite number of HU >= 0, e.g. 30")
        if isinstance(box, bool) or not isinstance(box, int) or box < 1 or box % 2 == 0:
            raise InputError(f"box={box!r}: must be an odd integer >= 1 (side of the box mean, e.g. 7)")
        if patch_size is not None and (isinstance(patch_size, bool) or not isinstance(patch_size, int)
                                       or patch_size < 1):
            raise InputError(f"patch_size={patch_size!r}: must be a positive integer or None (whole slices)")
        self.patients, rows, self.kernel = _selection(manifest, patients, thickness, kernel, "quarter")
        series: dict[str, list[ManifestRow]] = defaultdict(list)
        for row in rows:
            series[row.patient].append(row)
        self.series = [sorted(series[p], key=lambda r: r.z) for p in sorted(series)]
        for slices in self.series:
            sizes = {(r.rows, r.columns) for r in slices}
            if len(sizes) > 1:
                raise InputError(
                    f"patient {slices[0].patient}: quarter-dose slices of several sizes ({sorted(sizes)}) in one "
                    "series; neighbouring slices must match, remove the odd ones"
                )
            if patch_size is not None and min(slices[0].rows, slices[0].columns) < patch_size:
                raise InputError(
                    f"patch_size={patch_size}: larger than the {slices[0].rows}x{slices[0].columns} slices of "
                    f"{slices[0].patient}; use a patch_size of at most the slice size"
                )
        self.locations = [(s, i) for s, slices in enumerate(self.series) for i in range(len(slices))]
        self.rows = tuple(self.series[s][i] for s, i in self.locations)
        self.scale, self.neighbor, self.threshold_hu, self.box = scale, neighbor, float(threshold_hu), box
        self.patch_size = patch_size
        self.paths = [[str(manifest.absolute(r)) for r in slices] for slices in self.series]
        pair_keys = [NOISY_KEY, CLEAN_KEY]
        self._crop = None if patch_size is None else RandSpatialCropd(pair_keys, (patch_size, patch_size),
                                                                       random_size=False)
        item_keys = [NOISY_KEY, CLEAN_KEY, WEIGHT_KEY]
        self._flip = Compose([rand_dihedrald(item_keys),
                              EnsureTyped(item_keys, data_type="tensor", dtype=torch.float32, track_meta=False)])
        self._seeds = KeySeeds(seed)
        self._read = SliceReader(cache)

    def __len__(self) -> int:
        return len(self.locations)

    def _plan(self, index: int, item_seed: int) -> tuple[int, int, int, int, int]:
        """Series, input and target positions, crop and flip seeds of an item: all from ``item_seed``."""
        s, i = self.locations[index]
        rng = np.random.default_rng(item_seed)
        j = i + neighbor_offset(i, len(self.series[s]), self.neighbor, rng)
        crop_seed, flip_seed = (int(v) for v in rng.integers(SEED_LIMIT, size=2))
        return s, i, j, crop_seed, flip_seed

    def target_row(self, index: int, item_seed: int) -> ManifestRow:
        """The manifest row of the target slice of key ``(index, item_seed)`` (the input is ``rows[index]``)."""
        s, _, j, _, _ = self._plan(index, item_seed % SEED_LIMIT)
        return self.series[s][j]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        s, i, j, crop_seed, flip_seed = self._plan(*self._seeds(key))
        pair = {NOISY_KEY: self._read(self.paths[s][i])[None], CLEAN_KEY: self._read(self.paths[s][j])[None]}
        if self._crop is not None:
            self._crop.set_random_state(seed=crop_seed)
            pair = {k: np.asarray(v) for k, v in self._crop(pair).items()}
        seen = {k: np.clip(v, self.scale.lo, self.scale.hi) if self.scale.clip else v for k, v in pair.items()}
        weight = similarity_weight(seen[NOISY_KEY][0], seen[CLEAN_KEY][0], self.threshold_hu, self.box)
        item = {k: self.scale.to_unit(v) for k, v in pair.items()}
        item[WEIGHT_KEY] = weight[None]
        self._flip.set_random_state(seed=flip_seed)
        return self._flip(item)

    def patient_balanced_weights(self) -> torch.Tensor:
        """Per-item weights 1 / (slices of that patient): every patient is drawn equally often."""
        return patient_balanced(self.rows)
