"""RED-CNN training patches: random aligned quarter/full-dose patch pairs from each paired slice.

As the official SSinyu/RED-CNN ``loader.py`` (``ct_dataset`` with ``get_patch``) under its ``main.py``
defaults (``patch_n=10``, ``patch_size=64``, ``transform=False``): each item is one quarter/full pair, cut
into ``patches_per_slice`` patches at independent random positions, the same position in both doses; no
flips or rotations. Deviation: a patch may start anywhere in ``0..size - patch_size`` (the official
``np.random.randint(0, h - patch_size)`` never picks the last position and fails on slices of exactly the
patch size). HU come from :func:`ldct_clip.io.read_slice_hu`, which turns padding outside the scan circle
into -1024 HU as the official ``prep.py`` does (stored -2000 -> 0 before the rescale).

Keys: ``(index, item_seed)`` fixes the patch positions; an ``int`` index draws its item seed from a stream
(see :class:`ldct_clip.data.adjacent_slices.KeySeeds`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import RandSpatialCropSamplesd
from torch.utils.data import Dataset

from ldct_clip.data.adjacent_slices import KeySeeds, patient_balanced
from ldct_clip.data.datasets import DEFAULT_SEED, DEFAULT_THICKNESS_MM, SliceReader, _selection
from ldct_clip.data.hu import IntensityScale
from ldct_clip.data.mayo import Manifest
from ldct_clip.data.transforms import CLEAN_KEY, NOISY_KEY
from ldct_clip.errors import InputError

DEFAULT_PATCH_SIZE = 64
"""Side of RED-CNN's square training patches (official ``patch_size``)."""
DEFAULT_PATCHES_PER_SLICE = 10
"""Patches cut from each slice pair (official ``patch_n``)."""


class PairedPatches(Dataset):
    """RED-CNN pairs: ``{"noisy": k x 1 x P x P quarter-dose, "clean": k x 1 x P x P full-dose}`` patches.

    One item per quarter/full pair of ``patients`` at ``thickness`` mm (``Manifest.pairs``: sorted by
    patient and position; unpaired slices are left out), both mapped by ``scale`` (RED-CNN's is
    :data:`ldct_clip.data.hu.MODEL_SCALE`, ``(HU + 1024) / 4096``). The training loop flattens the patch
    axis into the batch (official: 16 slices x 10 patches per step).

    Args:
        manifest: from :func:`ldct_clip.data.mayo.scan_mayo` or :meth:`Manifest.load`.
        patients: training patients (RED-CNN is supervised: never the test patients).
        scale: HU -> network scale.
        thickness: slice thickness in mm.
        patch_size: side of the square patches; every slice must be at least this large.
        patches_per_slice: patches per pair (k).
        kernel: reconstruction kernel, needed only when the data holds several.
        cache: keep decoded slices in RAM (see :class:`ldct_clip.data.datasets.SliceReader`).
        seed: seed of the stream for ``int`` keys.
    """

    def __init__(
        self,
        manifest: Manifest,
        patients: Sequence[str],
        scale: IntensityScale,
        thickness: float = DEFAULT_THICKNESS_MM,
        patch_size: int = DEFAULT_PATCH_SIZE,
        patches_per_slice: int = DEFAULT_PATCHES_PER_SLICE,
        kernel: str | None = None,
        cache: bool = False,
        seed: int = DEFAULT_SEED,
    ) -> None:
        if not isinstance(scale, IntensityScale):
            raise InputError(f"scale={scale!r}: pass an ldct_clip.data.hu.IntensityScale, e.g. hu.MODEL_SCALE")
        for name, value in (("patch_size", patch_size), ("patches_per_slice", patches_per_slice)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}={value!r}: must be a positive integer")
        self.patients, _, self.kernel = _selection(manifest, patients, thickness, kernel, None)
        self.pairs = manifest.pairs(self.patients, thickness, self.kernel)
        if not self.pairs:
            raise InputError(
                f"patients {', '.join(self.patients)}: no quarter/full-dose pairs at {thickness:g} mm; "
                "RED-CNN needs both doses (prepare_mayo.py prints the pairing summary)"
            )
        for quarter, full in self.pairs:
            if (quarter.rows, quarter.columns) != (full.rows, full.columns):
                raise InputError(
                    f"{quarter.path}: {quarter.rows}x{quarter.columns} slice paired with {full.path} of "
                    f"{full.rows}x{full.columns}; remove the pair, its doses cannot be cut at one position"
                )
            if min(quarter.rows, quarter.columns) < patch_size:
                raise InputError(
                    f"patch_size={patch_size}: larger than {quarter.path} ({quarter.rows}x{quarter.columns}); "
                    "use a patch_size of at most the slice size"
                )
        self.rows = tuple(full for _, full in self.pairs)
        self.paths = [(str(manifest.absolute(q)), str(manifest.absolute(f))) for q, f in self.pairs]
        self.scale, self.patch_size, self.patches_per_slice = scale, patch_size, patches_per_slice
        self._crop = RandSpatialCropSamplesd(
            [NOISY_KEY, CLEAN_KEY], (patch_size, patch_size), num_samples=patches_per_slice, random_size=False
        )
        self._seeds = KeySeeds(seed)
        self._read = SliceReader(cache)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, item_seed = self._seeds(key)
        quarter, full = self.paths[index]
        pair = {NOISY_KEY: self.scale.to_unit(self._read(quarter))[None],
                CLEAN_KEY: self.scale.to_unit(self._read(full))[None]}
        self._crop.set_random_state(seed=item_seed)
        patches = self._crop(pair)
        return {
            k: torch.from_numpy(np.stack([np.asarray(p[k], dtype=np.float32) for p in patches]))
            for k in (NOISY_KEY, CLEAN_KEY)
        }

    def patient_balanced_weights(self) -> torch.Tensor:
        """Per-item weights 1 / (pairs of that patient): every patient is drawn equally often."""
        return patient_balanced(self.rows)
