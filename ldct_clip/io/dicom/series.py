"""A folder of DICOM files: choose one series, check its slices agree, order them and stack their HU."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ldct_clip.errors import InputError
from ldct_clip.io.dicom.slices import SliceInfo, _fill_hu, _normal, _read, _read_image, _slice_info
from ldct_clip.io.dicom.tags import _number, _required, _rescale
from ldct_clip.io.volume import CTVolume

__all__ = ["read_series"]

_POSITION_TOLERANCE_MM = 1e-3
_GEOMETRY_TOLERANCE = 1e-4


def read_series(
    path: str | os.PathLike[str], series_uid: str | None = None, allow_non_ct: bool = False
) -> CTVolume:
    """Read one CT series from a folder of DICOM files into a float32 HU volume.

    Files may have any names (``.dcm``, ``.IMA``, none); non-DICOM files such as DICOMDIR or a readme
    are skipped. Subfolders are not searched.

    Args:
        path: folder holding the slices.
        series_uid: SeriesInstanceUID to read when the folder holds several series.
        allow_non_ct: read a series whose Modality is not CT (for example MR) instead of refusing it.

    Returns:
        CTVolume with slices ordered along the slice normal and one header per slice.

    >>> import tempfile, shutil
    >>> from pydicom.data import get_testdata_file
    >>> folder = tempfile.mkdtemp()
    >>> _ = shutil.copy(get_testdata_file("693_J2KR.dcm"), folder)
    >>> read_series(folder).shape
    (1, 512, 512)
    >>> shutil.rmtree(folder)
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; pass the folder that holds the series' DICOM files")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    with ThreadPoolExecutor() as pool:
        headers = list(pool.map(_read, files))
    found = [(file, ds) for file, ds in zip(files, headers) if ds is not None]
    if not found:
        raise InputError(
            f"{folder}: no DICOM image files among {len(files)} files; "
            "pass the folder that holds the series' slices"
        )

    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for file, ds in found:
        uid = str(_required(file, ds, "SeriesInstanceUID"))
        groups.setdefault(uid, []).append((file, ds))
    chosen = groups[_choose_series(folder, groups, series_uid, allow_non_ct)]

    infos = [_slice_info(file, ds) for file, ds in chosen]
    for info, (_, ds) in zip(infos, chosen):
        if info.modality != "CT" and not allow_non_ct:
            raise InputError(
                f"{info.path}: Modality is {info.modality or 'missing'}, not CT; this toolkit denoises CT "
                "(API: read_series(..., allow_non_ct=True) reads it anyway)"
            )
        _rescale(info.path, ds, info.modality)
    _check_consistent(infos)
    order = _slice_order(infos)
    infos = [infos[i] for i in order]
    slice_headers = [chosen[i][1] for i in order]

    # The first slice is decoded on its own before the volume is allocated, which proves the declared size.
    first = _fill_hu(infos[0].path, _read_image(infos[0].path, with_pixels=True), infos[0])
    hu = np.empty((len(infos), *first.shape), dtype=np.float32)
    hu[0] = first

    def load(index: int) -> None:
        info = infos[index]
        _fill_hu(info.path, _read_image(info.path, with_pixels=True), info, hu[index])

    with ThreadPoolExecutor() as pool:
        list(pool.map(load, range(1, len(infos))))

    spacing_z, origin, direction = _geometry(infos, slice_headers[0])
    placed = all(info.position_along_normal is not None for info in infos)
    volume = CTVolume(
        hu=hu,
        spacing=(spacing_z, *infos[0].pixel_spacing),
        origin=origin,
        direction=direction,
        slice_headers=slice_headers,
        source=folder,
        positions=[info.image_position for info in infos] if placed else None,
    )
    problem = volume.uneven_spacing()
    if problem is not None:
        gaps = np.diff(volume.positions @ direction[2])  # type: ignore[operator]
        warnings.warn(
            f"{folder}: slice gaps vary from {gaps.min():g} to {gaps.max():g} mm ({problem}); volume spacing "
            f"uses the median {spacing_z:g} mm and each slice keeps its true position; NIfTI output of this "
            "series is refused (it needs evenly spaced slices)",
            stacklevel=2,
        )
    return volume


def _choose_series(
    folder: Path, groups: dict[str, list[tuple[Path, Dataset]]], series_uid: str | None, allow_non_ct: bool
) -> str:
    """Pick the SeriesInstanceUID to read, or raise InputError listing what the folder holds."""

    def describe(uids: Sequence[str]) -> str:
        parts = []
        for uid in uids:
            first = groups[uid][0][1]
            modality = first.get("Modality", "?")
            parts.append(f"{uid} {modality} '{first.get('SeriesDescription', '')}' ({len(groups[uid])} slices)")
        return "; ".join(parts)

    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(
                f"{folder}: no series with SeriesInstanceUID {series_uid}; "
                f"the folder holds: {describe(list(groups))}"
            )
        return series_uid
    candidates = [uid for uid in groups if allow_non_ct or groups[uid][0][1].get("Modality") == "CT"]
    if not candidates:
        raise InputError(
            f"{folder}: no CT series, found {describe(list(groups))}; this toolkit denoises CT "
            "(API: read_series(..., allow_non_ct=True) reads another modality anyway)"
        )
    if len(candidates) > 1:
        raise InputError(
            f"{folder}: {len(candidates)} series found: {describe(candidates)}; "
            "pass series_uid to choose one"
        )
    return candidates[0]


def _check_consistent(infos: list[SliceInfo]) -> None:
    """All slices must share Rows, Columns, PixelSpacing and ImageOrientationPatient."""
    first = infos[0]
    for info in infos[1:]:
        if (info.rows, info.columns) != (first.rows, first.columns):
            problem = f"size {info.rows}x{info.columns} differs from {first.rows}x{first.columns} in {first.path}"
        elif not np.allclose(info.pixel_spacing, first.pixel_spacing, rtol=_GEOMETRY_TOLERANCE, atol=0):
            problem = f"PixelSpacing {info.pixel_spacing} differs from {first.pixel_spacing} in {first.path}"
        elif (info.image_orientation is None) != (first.image_orientation is None) or (
            info.image_orientation is not None
            and not np.allclose(info.image_orientation, first.image_orientation, atol=_GEOMETRY_TOLERANCE)
        ):
            problem = (
                f"ImageOrientationPatient {info.image_orientation} differs from "
                f"{first.image_orientation} in {first.path}"
            )
        else:
            continue
        raise InputError(f"{info.path}: {problem}; remove the file or pass a folder with one consistent series")


def _slice_order(infos: list[SliceInfo]) -> list[int]:
    """Indices sorting slices along the normal, or by InstanceNumber when any position is missing."""
    positions = [info.position_along_normal for info in infos]
    if all(p is not None for p in positions):
        keys: list[float] = positions  # type: ignore[assignment]
        what, tolerance = "position along the slice normal", _POSITION_TOLERANCE_MM
    else:
        lacking = next(info for info in infos if info.position_along_normal is None)
        if any(info.instance_number is None for info in infos):
            raise InputError(
                f"{lacking.path}: no ImagePositionPatient/ImageOrientationPatient and some slices lack "
                "InstanceNumber, so slices cannot be ordered; re-export the series with positions"
            )
        keys = [float(info.instance_number) for info in infos]  # type: ignore[arg-type]
        what, tolerance = "InstanceNumber (positions missing)", 0.5
    order = sorted(range(len(infos)), key=lambda i: keys[i])
    for a, b in zip(order, order[1:]):
        if keys[b] - keys[a] < tolerance:
            raise InputError(
                f"{infos[b].path}: same {what} {keys[b]:g} as {infos[a].path}; "
                "the folder holds duplicate slices: remove one of them"
            )
    return order


def _geometry(infos: list[SliceInfo], first_header: Dataset) -> tuple[float, tuple[float, float, float], np.ndarray]:
    """(slice spacing, origin, direction) of slices already in order.

    Spacing is the median gap between positions along the normal; without positions (or with one slice) it
    is SpacingBetweenSlices, else SliceThickness, else 1 mm. Missing orientation means identity.
    """
    first = infos[0]
    direction = np.eye(3)
    if first.image_orientation is not None:
        row, column = first.image_orientation[:3], first.image_orientation[3:]
        direction = np.array([row, column, _normal(first.path, first.image_orientation)])
    origin = first.image_position if first.image_position is not None else (0.0, 0.0, 0.0)
    positions = [info.position_along_normal for info in infos]
    if len(infos) > 1 and all(p is not None for p in positions):
        gaps = np.diff(np.asarray(positions, dtype=np.float64))
        return float(np.median(gaps)), origin, direction
    between = _number(first.path, first_header, "SpacingBetweenSlices", float)
    for candidate in (between, first.slice_thickness):
        if candidate is not None and candidate > 0:
            return float(candidate), origin, direction
    return 1.0, origin, direction

