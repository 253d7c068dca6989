"""What is evaluated: low-/full-dose slice pairs from an AAPM-Mayo manifest or from two series.

Pairs are matched by position, never by file order: :func:`pairs_from_manifest` takes the manifest's pairs
(matched by :mod:`ldct_clip.data.mayo` within :data:`~ldct_clip.data.mayo.PAIR_TOLERANCE_FRACTION` × slice
thickness), and :func:`pairs_from_series` pairs slice ``i`` of each series only when both lie at the same
position along the slice normal, each slice's own position (:func:`slice_positions`), and both series share
one in-plane grid (pixel spacing, orientation, field-of-view origin). Anything else is refused with one line:
a pair that does not image the same place would make every score meaningless.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldct_clip.data.datasets import DEFAULT_THICKNESS_MM, EvaluationPairs
from ldct_clip.data.mayo import PAIR_TOLERANCE_FRACTION, Manifest
from ldct_clip.data.splits import MAYO_PATIENTS, get_split
from ldct_clip.errors import InputError
from ldct_clip.io.dicom import read_slice_hu
from ldct_clip.io.read import read_volume
from ldct_clip.io.volume import CTVolume

__all__ = ["PairedSlices", "SlicePair", "pairs_from_manifest", "pairs_from_series", "slice_positions"]

ORIENTATION_TOLERANCE = 1e-3
"""Largest difference between the direction cosines of two series on one grid."""


@dataclass(frozen=True)
class SlicePair:
    """One evaluated slice: whose, where along the slice normal, where it was read from, its Y×X size."""

    patient: str
    position_mm: float
    low_source: str
    full_source: str
    shape: tuple[int, int]


@dataclass(frozen=True)
class PairedSlices:
    """Low-/full-dose slice pairs, sorted by patient and position, read on demand.

    Attributes:
        slices: the pairs.
        read_pair: ``index -> (low, full)`` float32 HU Y×X slices.
        description: one line on where the data comes from (shown in reports).
        split: split preset name for Mayo data, None for a series pair.
        published_comparable: whether the slices are those of the published table (the whole
            ``clipdenoising`` L506 1 mm test set), so quoted rows can sit beside measured ones.
        sources: the files and folders the slices are read from; a report folder may never hold them.
    """

    slices: tuple[SlicePair, ...]
    read_pair: Callable[[int], tuple[np.ndarray, np.ndarray]]
    description: str
    split: str | None = None
    published_comparable: bool = False
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.slices)

    def evenly_spaced(self, count: int) -> PairedSlices:
        """At most ``count`` slices spread evenly over all of them (first and last included), for quick looks."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(f"max_slices={count!r}: must be a positive integer")
        if count >= len(self):
            return self
        keep = [int(i) for i in np.unique(np.round(np.linspace(0, len(self) - 1, count)).astype(int))]
        return PairedSlices(
            slices=tuple(self.slices[i] for i in keep),
            read_pair=lambda index: self.read_pair(keep[index]),
            description=f"{self.description}; {len(keep)} of {len(self)} slices, evenly spaced",
            split=self.split,
            published_comparable=False,
            sources=self.sources,
        )

    def patient_runs(self) -> Iterator[tuple[str, list[int]]]:
        """``(patient, indices)`` for each run of consecutive slices of one patient."""
        start = 0
        for index in range(1, len(self) + 1):
            if index == len(self) or self.slices[index].patient != self.slices[start].patient:
                yield self.slices[start].patient, list(range(start, index))
                start = index


def pairs_from_manifest(
    manifest: Manifest,
    split: str = "clipdenoising",
    thickness_mm: float = DEFAULT_THICKNESS_MM,
    kernel: str | None = None,
) -> PairedSlices:
    """The quarter/full-dose pairs of a split's test patients.

    Training patients need not be present. Raises :class:`InputError` when the split is unknown, a test
    patient is missing from the data, or it has no pairs at ``thickness_mm``.
    """
    known = set(manifest.patients) | set(MAYO_PATIENTS)  # resolve the test patients; training ones don't matter
    test = get_split(split, available_patients=known).test
    missing = [patient for patient in test if patient not in manifest.patients]
    if missing:
        raise InputError(
            f"split {split!r}: test patient(s) {', '.join(missing)} not in the data under {manifest.root} "
            f"(found {', '.join(manifest.patients) or 'none'}); add them or choose another --split"
        )
    chosen = EvaluationPairs(manifest, test, thickness=thickness_mm, kernel=kernel)
    root = chosen.root
    slices = tuple(
        SlicePair(full.patient, full.z, quarter.path, full.path, (full.rows, full.columns))
        for quarter, full in chosen.pairs
    )

    def read_pair(index: int) -> tuple[np.ndarray, np.ndarray]:
        quarter, full = chosen.pairs[index]
        return read_slice_hu(root / quarter.path), read_slice_hu(root / full.path)

    kernel_note = f", kernel {chosen.kernel}" if chosen.kernel else ""
    return PairedSlices(
        slices=slices,
        read_pair=read_pair,
        description=(f"AAPM-Mayo data in {root}: split {split}, test patient(s) {', '.join(test)}, "
                     f"{thickness_mm:g} mm{kernel_note}, quarter-dose vs full-dose"),
        split=split,
        published_comparable=split == "clipdenoising" and thickness_mm == 1.0,
        sources=(str(root),),
    )


def pairs_from_series(low: str | os.PathLike[str], full: str | os.PathLike[str]) -> PairedSlices:
    """Pair a low-dose and a full-dose series (DICOM folder or NIfTI file) slice by slice, by position.

    Raises :class:`InputError` when their slice counts, slice sizes, pixel spacings, orientations or
    in-plane origins differ, or when any slice ``i`` of one lies at another position than slice ``i`` of the
    other (each slice's own position, so a gap in one series is found even when the counts agree).
    """
    low_volume, full_volume = read_volume(low), read_volume(full)
    _check_same_grid(low, low_volume, full, full_volume)
    low_z, full_z = slice_positions(low_volume), slice_positions(full_volume)
    tolerance = PAIR_TOLERANCE_FRACTION * min(_slice_gap(low_z, low_volume), _slice_gap(full_z, full_volume))
    off = np.flatnonzero(np.abs(low_z - full_z) > tolerance)
    if off.size:
        i = int(off[0])
        raise InputError(
            f"{low}: slice {i} lies at {low_z[i]:.2f} mm but slice {i} of {full} at {full_z[i]:.2f} mm "
            f"({off.size} slices differ); pass series covering the same positions"
        )
    patient = _patient_id(low_volume) or _patient_id(full_volume) or _series_name(Path(low))
    slices = tuple(
        SlicePair(patient, float(full_z[i]), f"{low}[{i}]", f"{full}[{i}]", full_volume.shape[1:])
        for i in range(full_volume.shape[0])
    )
    return PairedSlices(
        slices=slices,
        read_pair=lambda index: (low_volume.hu[index], full_volume.hu[index]),
        description=f"low-dose {low} vs full-dose {full}",
        sources=(str(low), str(full)),
    )


def slice_positions(volume: CTVolume) -> np.ndarray:
    """Each slice's own position along the slice normal, in mm.

    From the volume's per-slice ``positions`` (Z×3 ImagePositionPatient) when its reader records them, else
    from each DICOM header's ImagePositionPatient, else (NIfTI, or DICOM without positions) from the regular
    grid ``origin + i·spacing·normal``, the only geometry such a file has.

    >>> v = CTVolume(np.zeros((3, 4, 4), np.float32), (2.0, 1.0, 1.0), (0, 0, 10), np.eye(3), None, "x.nii")
    >>> slice_positions(v).tolist()
    [10.0, 12.0, 14.0]
    """
    normal = volume.direction[2]
    recorded = getattr(volume, "positions", None)
    if recorded is not None:
        return np.asarray(recorded, dtype=np.float64) @ normal
    headers = volume.slice_headers or []
    if headers and all(h.get("ImagePositionPatient") is not None for h in headers):
        return np.array([np.asarray(h.ImagePositionPatient, dtype=np.float64) @ normal for h in headers])
    return float(np.dot(volume.origin, normal)) + volume.spacing[0] * np.arange(volume.shape[0])


def _check_same_grid(low: object, low_volume: CTVolume, full: object, full_volume: CTVolume) -> None:
    """One slice count, slice size, pixel spacing, orientation and in-plane origin, or an InputError."""
    same_grid = "pass series reconstructed on the same grid"
    if low_volume.shape[0] != full_volume.shape[0]:
        raise InputError(
            f"{low}: {low_volume.shape[0]} slices but {full} has {full_volume.shape[0]}; pass a low- and a "
            "full-dose series covering the same slices"
        )
    if low_volume.shape[1:] != full_volume.shape[1:]:
        raise InputError(
            f"{low}: slices of {low_volume.shape[1]}x{low_volume.shape[2]} pixels but {full} has "
            f"{full_volume.shape[1]}x{full_volume.shape[2]}; {same_grid}"
        )
    low_pixel, full_pixel = np.array(low_volume.spacing[1:]), np.array(full_volume.spacing[1:])
    if not np.allclose(low_pixel, full_pixel, rtol=1e-3, atol=0):
        raise InputError(
            f"{low}: pixel spacing {low_pixel[0]:g}x{low_pixel[1]:g} mm but {full} has "
            f"{full_pixel[0]:g}x{full_pixel[1]:g} mm; {same_grid}"
        )
    if not np.allclose(low_volume.direction, full_volume.direction, atol=ORIENTATION_TOLERANCE):
        raise InputError(f"{low}: slice orientation {low_volume.direction.round(3).tolist()} differs from "
                         f"{full_volume.direction.round(3).tolist()} in {full}; {same_grid}")
    in_plane = full_volume.direction[:2]  # row and column cosines
    low_start, full_start = in_plane @ np.array(low_volume.origin), in_plane @ np.array(full_volume.origin)
    if np.any(np.abs(low_start - full_start) > PAIR_TOLERANCE_FRACTION * full_pixel[::-1]):
        raise InputError(
            f"{low}: the first pixel lies at ({low_start[0]:.2f}, {low_start[1]:.2f}) mm in the slice plane but "
            f"at ({full_start[0]:.2f}, {full_start[1]:.2f}) mm in {full}; {same_grid}"
        )


def _slice_gap(positions: np.ndarray, volume: CTVolume) -> float:
    """The smallest gap between slices (the nominal spacing for a single slice)."""
    return float(np.min(np.diff(positions))) if len(positions) > 1 else volume.spacing[0]


def _series_name(path: Path) -> str:
    """``scan`` for ``scan.nii.gz``, ``scan.nii`` or a folder ``scan``."""
    return path.name.removesuffix(".gz").removesuffix(".nii")


def _patient_id(volume: CTVolume) -> str:
    if not volume.slice_headers:
        return ""
    return str(volume.slice_headers[0].get("PatientID", "") or "").strip()
