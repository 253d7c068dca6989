"""Torch datasets over a Mayo manifest: random training patches and whole paired evaluation slices.

Both read slices as float32 HU at the I/O boundary (:func:`ldct_clip.io.read_slice_hu`) and convert to
the model scale with the MONAI pipelines of :mod:`ldct_clip.data.transforms`.

Seeding :class:`TrainingPatches`, two ways:

- key ``(index, item_seed)`` (what ``ldct_clip.training``'s step sampler yields): crop, flip and noise
  depend only on that key, so a batch is the same in any worker and after a resume;
- key ``index``: the transforms run on from ``seed``; inside a ``DataLoader`` worker they are reseeded
  from ``seed`` and the worker's torch seed (different per worker and per epoch, reproducible when the
  loader's ``generator`` or ``torch.manual_seed`` is fixed), so workers never repeat each other's noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ldct_clip.data.mayo import Manifest, ManifestRow
from ldct_clip.data.transforms import (
    CLEAN_KEY,
    DEFAULT_PATCH_SIZE,
    DEFAULT_SIGMA,
    FULL_KEY,
    LOW_KEY,
    evaluation_transforms,
    training_transforms,
)
from ldct_clip.errors import InputError
from ldct_clip.io.dicom import read_slice_hu

DEFAULT_SEED = 100
"""Seed of the released training configs."""
DEFAULT_THICKNESS_MM = 1.0
"""Slice thickness used by the CLIPDenoising experiments."""

_INT16 = np.iinfo(np.int16)
_SEED_LIMIT = 2**32  # MONAI's set_random_state takes seeds below this


class SliceReader:
    """Read slices as float32 HU, optionally keeping decoded slices in RAM.

    The cache is lossless: a slice whose HU are whole numbers inside the int16 range (every CT slice
    with an integer rescale slope and intercept) is kept as int16, half the memory of float32; any other
    slice is kept as float32. Each DataLoader worker fills its own cache.
    """

    def __init__(self, cache: bool = False) -> None:
        self.cache = cache
        self._store: dict[str, np.ndarray] = {}

    def __call__(self, path: str) -> np.ndarray:
        if not self.cache:
            return read_slice_hu(path)
        stored = self._store.get(path)
        if stored is None:
            stored = _compact(read_slice_hu(path))
            self._store[path] = stored
        return stored.astype(np.float32)


def _compact(hu: np.ndarray) -> np.ndarray:
    """int16 copy when that is exact, else the float32 slice itself."""
    if hu.size and hu.min() >= _INT16.min and hu.max() <= _INT16.max and np.array_equal(hu, np.rint(hu)):
        return hu.astype(np.int16)
    return hu


def _selection(
    manifest: Manifest, patients: Iterable[str], thickness: float, kernel: str | None, dose: str | None
) -> tuple[tuple[str, ...], tuple[ManifestRow, ...], str | None]:
    """Validated patients and the matching rows; ``kernel`` resolved when the data has exactly one."""
    if isinstance(patients, str):
        raise InputError(f"patients={patients!r}: pass a list of patient IDs, e.g. [{patients!r}]")
    chosen = tuple(patients)
    if not chosen:
        raise InputError("patients: empty list; pass the patient IDs of a split, e.g. get_split(...).train")
    unknown = [p for p in chosen if p not in manifest.patients]
    if unknown:
        raise InputError(
            f"patients {', '.join(unknown)}: not in the manifest (it has {', '.join(manifest.patients)}); "
            "check the split or rescan the data"
        )
    rows = manifest.select(chosen, dose, thickness, kernel)
    if not rows:
        available = sorted({r.thickness_mm for r in manifest.select(chosen, dose)})
        raise InputError(
            f"thickness={thickness:g} mm: no {f'{dose}-dose ' if dose else ''}slices of {', '.join(chosen)} here"
            f"{'' if kernel is None else f' and kernel {kernel}'} (available: "
            f"{', '.join(f'{t:g}' for t in available)} mm); pick one of those"
        )
    kernels = sorted({r.kernel for r in rows})
    if len(kernels) > 1:
        raise InputError(
            f"kernel=None: the slices come in several reconstruction kernels ({', '.join(kernels)}); "
            "pass kernel= one of them"
        )
    return chosen, rows, kernels[0] if kernel is None else kernel


class TrainingPatches(Dataset):
    """Random patches of full-dose slices with online Gaussian noise: ``{"noisy", "clean": 1xPxP}``.

    One item per full-dose slice of ``patients`` at ``thickness`` mm: a random ``patch_size`` crop,
    a random dihedral flip/rotation and unclipped N(0, sigma^2) noise, on the model scale (float32).

    Args:
        manifest: from :func:`ldct_clip.data.mayo.scan_mayo` or :meth:`Manifest.load`.
        patients: training patients, e.g. ``get_split("clipdenoising").train``.
        patch_size: side of the square patches; every slice must be at least this large.
        sigma: noise std on the model scale (5/255 is about 80 HU).
        thickness: slice thickness in mm.
        cache: keep decoded slices in RAM (see :class:`SliceReader`).
        seed: seed of crops, flips and noise for integer keys (see the module docstring).
        kernel: reconstruction kernel, needed only when the data holds several.
    """

    def __init__(
        self,
        manifest: Manifest,
        patients: Sequence[str],
        patch_size: int = DEFAULT_PATCH_SIZE,
        sigma: float = DEFAULT_SIGMA,
        thickness: float = DEFAULT_THICKNESS_MM,
        cache: bool = False,
        seed: int = DEFAULT_SEED,
        kernel: str | None = None,
    ) -> None:
        if not (isinstance(seed, int) and 0 <= seed < _SEED_LIMIT):
            raise InputError(f"seed={seed!r}: must be an integer in [0, 2**32)")
        self.transforms = training_transforms(patch_size=patch_size, sigma=sigma)  # validates both
        self.patients, self.rows, self.kernel = _selection(manifest, patients, thickness, kernel, "full")
        small = [r for r in self.rows if min(r.rows, r.columns) < patch_size]
        if small:
            raise InputError(
                f"patch_size={patch_size}: larger than {len(small)} slice(s), e.g. {small[0].path} "
                f"({small[0].rows}x{small[0].columns}); use a patch_size of at most the slice size"
            )
        self.paths = [str(manifest.absolute(r)) for r in self.rows]
        self.seed = seed
        self.transforms.set_random_state(seed=seed)
        self._stream: int | None = None
        self._read = SliceReader(cache)

    def __len__(self) -> int:
        return len(self.rows)

    def _seed_for_worker(self) -> None:
        """Reseed once per DataLoader worker (and epoch) from ``seed`` and the worker's torch seed."""
        info = get_worker_info()
        if info is not None and info.seed != self._stream:
            self._stream = info.seed
            mixed = np.random.SeedSequence([self.seed, info.seed]).generate_state(1)[0]
            self.transforms.set_random_state(seed=int(mixed))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(key, tuple):
            index, item_seed = key
            self.transforms.set_random_state(seed=item_seed % _SEED_LIMIT)
        else:
            index = key
            self._seed_for_worker()
        hu = self._read(self.paths[index])
        return self.transforms({CLEAN_KEY: hu[None]})

    def patient_balanced_weights(self) -> torch.Tensor:
        """Per-item weights 1 / (slices of that patient), for ``WeightedRandomSampler``.

        Every patient then gets the same total weight, so patients are drawn equally often whatever
        their number of slices.
        """
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.patient] = counts.get(row.patient, 0) + 1
        return torch.tensor([1.0 / counts[row.patient] for row in self.rows], dtype=torch.float64)


class EvaluationPairs(Dataset):
    """Whole paired slices: ``{"low", "full": 1xYxX model scale, "patient", "z", "low_path", "full_path"}``.

    One item per quarter/full pair of ``patients`` at ``thickness`` mm, sorted by patient and position.
    Slices without a partner are left out (``Manifest.pairing_summary`` counts them).
    """

    def __init__(
        self,
        manifest: Manifest,
        patients: Sequence[str],
        thickness: float = DEFAULT_THICKNESS_MM,
        cache: bool = False,
        kernel: str | None = None,
    ) -> None:
        self.patients, _, self.kernel = _selection(manifest, patients, thickness, kernel, None)
        self.pairs = manifest.pairs(self.patients, thickness, self.kernel)
        if not self.pairs:
            raise InputError(
                f"patients {', '.join(self.patients)}: no quarter/full-dose pairs at {thickness:g} mm; "
                "check that both doses were scanned (prepare_mayo.py prints the pairing summary)"
            )
        odd = [(q, f) for q, f in self.pairs if (q.rows, q.columns) != (f.rows, f.columns)]
        if odd:
            q, f = odd[0]
            raise InputError(
                f"{q.path}: {q.rows}x{q.columns} slice paired with {f.path} of {f.rows}x{f.columns}; "
                f"{len(odd)} pair(s) differ in size, so their doses cannot be compared; remove them"
            )
        self.root = manifest.root
        self.transforms = evaluation_transforms()
        self._read = SliceReader(cache)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, object]:
        quarter, full = self.pairs[index]
        low_path, full_path = str(self.root / quarter.path), str(self.root / full.path)
        item = self.transforms({LOW_KEY: self._read(low_path)[None], FULL_KEY: self._read(full_path)[None]})
        return {
            **item,
            "patient": full.patient,
            "z": full.z,
            "low_path": low_path,
            "full_path": full_path,
        }
