"""The normal-dose series a benchmark starts from: a DICOM folder or NIfTI file, or AAPM-Mayo test patients.

Each patient becomes a :class:`NormalDose`: its thin slices in position order (a central block of them with
``max_slices``: enough for ``max_slices`` slabs of the thickest condition, so thick slabs stay made of
adjacent slices), the pixel size and slice spacing, where it came from, and, for AAPM-Mayo data, the real
quarter-dose slices at the same positions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldct_clip.data.datasets import DEFAULT_THICKNESS_MM
from ldct_clip.errors import InputError
from ldct_clip.evaluation import load_manifest, pairs_from_manifest, slice_positions
from ldct_clip.generalization.conditions import slab_size
from ldct_clip.io import read_slice_header, read_volume

__all__ = ["NormalDose", "central_block", "file_identity", "series_from_input", "series_from_mayo"]


@dataclass(frozen=True, eq=False)
class NormalDose:
    """One patient's normal-dose thin slices (the selected block), and the real low dose where it exists.

    Attributes:
        patient: patient ID (the slices' PatientID, or the file or folder name).
        hu: Z×Y×X float32 HU of the selected slices, in position order.
        positions_mm: each slice's position along the slice normal.
        pixel_mm: in-plane pixel size (square pixels).
        slice_spacing_mm: distance between adjacent slices.
        source: the file or folder read.
        identity: ``(path, size, mtime_ns)`` of every file the slices come from, for the simulation cache key.
        block: ``(first, count, total)``: which slices of the whole series were selected.
        real_low: the scanner's own low-dose slices at the same positions, or None.
    """

    patient: str
    hu: np.ndarray
    positions_mm: np.ndarray
    pixel_mm: float
    slice_spacing_mm: float
    source: str
    identity: tuple[tuple[str, int, int], ...]
    block: tuple[int, int, int]
    real_low: np.ndarray | None = None


def central_block(total: int, count: int | None) -> slice:
    """The ``count`` middle slices of ``total`` (all of them when ``count`` is None or larger).

    >>> central_block(10, 4), central_block(3, None)
    (slice(3, 7, None), slice(0, 3, None))
    """
    if count is None or count >= total:
        return slice(0, total)
    start = (total - count) // 2
    return slice(start, start + count)


def file_identity(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """``(resolved path, size, mtime_ns)`` of each file: a changed or replaced file changes the cache key."""
    found = []
    for path in paths:
        info = path.stat()
        found.append((str(path.resolve()), info.st_size, info.st_mtime_ns))
    return tuple(found)


def _spacing(positions: np.ndarray, nominal: float) -> float:
    """The median gap between adjacent slices (the nominal spacing for one slice)."""
    return float(np.median(np.abs(np.diff(positions)))) if len(positions) > 1 else float(nominal)


def _block_length(spacing: float, thicknesses: Sequence[float], max_slices: int | None, total: int,
                  source: str) -> int | None:
    """Thin slices to keep: ``max_slices`` slabs of the thickest condition (None: all); checks every thickness."""
    largest = max(slab_size(t, spacing, source) for t in thicknesses)
    if total < largest:
        raise InputError(f"{source}: {total} slice(s) {spacing:g} mm apart, fewer than one {max(thicknesses):g} mm "
                         f"slab needs ({largest}); pass a longer series or a smaller --thickness")
    return None if max_slices is None else max_slices * largest


def _check_square(spacing_y: float, spacing_x: float, source: str) -> float:
    if not math.isclose(spacing_y, spacing_x, rel_tol=1e-3):
        raise InputError(f"{source}: pixels are {spacing_y:g} x {spacing_x:g} mm, not square; resample the slices "
                         "in-plane first")
    return float(spacing_x)


def series_from_input(path: str | os.PathLike[str], thicknesses: Sequence[float],
                      max_slices: int | None = None) -> NormalDose:
    """The normal-dose series in a DICOM folder or NIfTI file (all of it, or its central block)."""
    source = Path(path)
    volume = read_volume(source)
    positions = slice_positions(volume)
    order = np.argsort(positions, kind="stable")
    spacing = _spacing(positions[order], volume.spacing[0])
    block = central_block(len(order), _block_length(spacing, thicknesses, max_slices, len(order), str(source)))
    chosen = order[block]
    headers = volume.slice_headers or []
    patient = str(headers[0].get("PatientID", "") or "").strip() if headers else ""
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    return NormalDose(
        patient=patient or source.name.removesuffix(".gz").removesuffix(".nii"),
        hu=np.ascontiguousarray(volume.hu[chosen], dtype=np.float32),
        positions_mm=positions[chosen],
        pixel_mm=_check_square(volume.spacing[1], volume.spacing[2], str(source)),
        slice_spacing_mm=spacing,
        source=str(source),
        identity=file_identity(files),
        block=(block.start, len(chosen), len(order)),
    )


def series_from_mayo(root: str | os.PathLike[str], split: str, thicknesses: Sequence[float],
                     max_slices: int | None = None) -> tuple[list[NormalDose], Path]:
    """The 1 mm full-dose series of ``split``'s test patient(s) under an AAPM-Mayo root (or manifest CSV),
    each with its real quarter dose; and the data root the slices are read from."""
    manifest = load_manifest(root)
    pairs = pairs_from_manifest(manifest, split, DEFAULT_THICKNESS_MM)
    found = []
    for patient, indices in pairs.patient_runs():
        positions = np.array([pairs.slices[i].position_mm for i in indices])
        where = f"{manifest.root} patient {patient}"
        spacing = _spacing(positions, DEFAULT_THICKNESS_MM)
        block = central_block(len(indices), _block_length(spacing, thicknesses, max_slices, len(indices), where))
        chosen = indices[block]
        read = [pairs.read_pair(i) for i in chosen]
        full_files = [manifest.root / pairs.slices[i].full_source for i in chosen]
        info = read_slice_header(full_files[0])
        found.append(NormalDose(
            patient=patient,
            hu=np.stack([np.asarray(full, dtype=np.float32) for _, full in read]),
            positions_mm=positions[block],
            pixel_mm=_check_square(*info.pixel_spacing, str(full_files[0])),
            slice_spacing_mm=spacing,
            source=str(full_files[0].parent),
            identity=file_identity(full_files),
            block=(block.start, len(chosen), len(indices)),
            real_low=np.stack([np.asarray(low, dtype=np.float32) for low, _ in read]),
        ))
    return found, manifest.root
