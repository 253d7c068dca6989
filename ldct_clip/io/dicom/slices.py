"""One DICOM file: whether it is an image, its header as a :class:`SliceInfo`, its pixels as HU."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import MediaStorageDirectoryStorage

from ldct_clip.errors import InputError
from ldct_clip.io.dicom.pixels import AIR_HU, _padding_mask, _stored_pixels
from ldct_clip.io.dicom.tags import (
    _NOT_USABLE,
    _floats,
    _missing,
    _number,
    _one_line,
    _required,
    _required_number,
    _rescale,
)
from ldct_clip.io.volume import MAX_ABS_HU

__all__ = ["SliceInfo", "is_dicom_file", "read_slice_header", "read_slice_hu"]

_RAW_DATASET_STARTS = (b"\x02\x00", b"\x08\x00")  # group 0002 or 0008, little endian


@dataclass(frozen=True)
class SliceInfo:
    """What one DICOM slice's header says, read without its pixel data.

    Positions are in patient coordinates (mm); ``position_along_normal`` is
    dot(image_position, row cosines × column cosines), the coordinate slices are sorted by, and is None
    when position or orientation is missing.
    """

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    series_description: str
    modality: str
    patient_id: str
    instance_number: int | None
    image_position: tuple[float, float, float] | None
    image_orientation: tuple[float, float, float, float, float, float] | None
    position_along_normal: float | None
    slice_thickness: float | None
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]


def read_slice_header(path: str | os.PathLike[str]) -> SliceInfo:
    """Read one slice's header (no pixel data) and check the tags needed to place and decode it.

    Raises InputError when the file is not DICOM, is corrupt, is multi-frame or lacks a required tag
    (SOPInstanceUID, SeriesInstanceUID, Rows, Columns, PixelSpacing).

    >>> from pydicom.data import get_testdata_file
    >>> info = read_slice_header(get_testdata_file("693_UNCR.dcm"))
    >>> info.modality, info.rows, info.position_along_normal
    ('CT', 512, 47.0)
    """
    file = Path(path)
    return _slice_info(file, _read_image(file, with_pixels=False))


def read_slice_hu(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one slice's pixels as float32 HU (rows × columns), with the rules of :mod:`ldct_clip.io.dicom`.

    >>> from pydicom.data import get_testdata_file
    >>> hu = read_slice_hu(get_testdata_file("693_UNCR.dcm"))
    >>> hu.shape, hu.dtype, float(hu.min())
    ((512, 512), dtype('float32'), -1024.0)
    """
    file = Path(path)
    ds = _read_image(file, with_pixels=True)
    return _fill_hu(file, ds, _slice_info(file, ds))


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a DICOM image file by the rule :func:`read_series` uses to pick files from a folder.

    True for a file with the 128-byte preamble and "DICM" (a DICOMDIR excepted), including one too corrupt to
    parse (reading it reports the damage), and for a raw dataset without preamble that starts with a group
    0002 or 0008 tag and parses with SOPClassUID and Rows. False for anything else, a folder, or a file that
    cannot be opened.

    >>> from pydicom.data import get_testdata_file
    >>> is_dicom_file(get_testdata_file("693_UNCR.dcm")), is_dicom_file(__file__)
    (True, False)
    """
    file = Path(path)
    try:
        with open(file, "rb") as stream:
            preamble = stream.read(132)
    except OSError:
        return False
    try:
        return _read(file) is not None
    except InputError:
        return preamble[128:132] == b"DICM"


def _read(file: Path, with_pixels: bool = False) -> Dataset | None:
    """Dataset in ``file`` (header only unless ``with_pixels``); None when it is not a DICOM image.

    Readmes, DICOMDIR and other non-image files give None. Files with the DICOM preamble that fail to
    parse are corrupt and raise InputError. Files without the preamble (raw datasets, which start with a
    group 0002 or 0008 tag) are accepted only when they parse and carry SOPClassUID and Rows.
    """
    stop = not with_pixels
    try:
        ds = pydicom.dcmread(file, stop_before_pixels=stop)
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({_one_line(exc)}); check that it exists and is readable") from None
    except InvalidDicomError:
        with open(file, "rb") as stream:
            if stream.read(2) not in _RAW_DATASET_STARTS:
                return None
        try:
            raw = pydicom.dcmread(file, stop_before_pixels=stop, force=True)
        except Exception:
            return None
        return raw if "SOPClassUID" in raw and "Rows" in raw else None
    except Exception as exc:
        raise InputError(f"{file}: corrupt DICOM file ({_one_line(exc)}); replace or remove it") from None
    if ds.file_meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        return None
    return ds


def _read_image(file: Path, with_pixels: bool) -> Dataset:
    """Like :func:`_read` but a file that is not a DICOM image is an InputError."""
    ds = _read(file, with_pixels)
    if ds is None:
        raise InputError(f"{file}: not a DICOM image file; pass a CT slice saved as DICOM")
    return ds


def _slice_info(file: Path, ds: Dataset) -> SliceInfo:
    """Build and check a SliceInfo; raises InputError for missing tags, multi-frame or colour images."""
    frames = _number(file, ds, "NumberOfFrames", int)
    if frames is not None and frames > 1:
        raise InputError(
            f"{file}: multi-frame file ({frames} frames) is not supported; "
            "export the series as one file per slice (classic CT Image Storage)"
        )
    samples = _number(file, ds, "SamplesPerPixel", int)
    if samples is not None and samples != 1:
        raise InputError(f"{file}: colour image ({samples} samples per pixel); {_NOT_USABLE}")
    orientation = _floats(file, ds, "ImageOrientationPatient", 6)
    position = _floats(file, ds, "ImagePositionPatient", 3)
    along_normal = None
    if orientation is not None and position is not None:
        along_normal = float(np.dot(position, _normal(file, orientation)))
    spacing = _floats(file, ds, "PixelSpacing", 2)
    if spacing is None:
        _missing(file, "PixelSpacing")
    if min(spacing) <= 0:
        raise InputError(f"{file}: PixelSpacing {spacing} is not positive; {_NOT_USABLE}")
    thickness = _number(file, ds, "SliceThickness", float)
    return SliceInfo(
        path=file,
        sop_instance_uid=str(_required(file, ds, "SOPInstanceUID")),
        series_instance_uid=str(_required(file, ds, "SeriesInstanceUID")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_description=str(ds.get("SeriesDescription", "")),
        modality=str(ds.get("Modality", "")),
        patient_id=str(ds.get("PatientID", "")),
        instance_number=_number(file, ds, "InstanceNumber", int),
        image_position=position,  # type: ignore[arg-type]
        image_orientation=orientation,  # type: ignore[arg-type]
        position_along_normal=along_normal,
        slice_thickness=thickness,
        rows=int(_required_number(file, ds, "Rows", int)),
        columns=int(_required_number(file, ds, "Columns", int)),
        pixel_spacing=spacing,  # type: ignore[arg-type]
    )


def _fill_hu(file: Path, ds: Dataset, info: SliceInfo, out: np.ndarray | None = None) -> np.ndarray:
    """Decode the pixels of ``ds`` as HU with padding set to air into ``out`` (float32 rows × columns; when
    None, allocated only once decoding has proven the declared size) and return it."""
    stored = _stored_pixels(file, ds)
    if stored.shape != (info.rows, info.columns):
        raise InputError(
            f"{file}: pixel data has shape {stored.shape}, header says {info.rows}x{info.columns}; {_NOT_USABLE}"
        )
    if out is None:
        out = np.empty(stored.shape, dtype=np.float32)
    slope, intercept = _rescale(file, ds, info.modality)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused just below
        np.multiply(stored, np.float32(slope), out=out)
        out += np.float32(intercept)
    padding = _padding_mask(stored, ds)
    if padding is not None:
        np.copyto(out, np.float32(AIR_HU), where=padding)
    low, high = float(out.min()), float(out.max())
    if not -MAX_ABS_HU <= low <= high <= MAX_ABS_HU:  # also False for NaN
        raise InputError(
            f"{file}: RescaleSlope {slope:g} / RescaleIntercept {intercept:g} give HU from {low:g} to {high:g}, "
            f"beyond ±{MAX_ABS_HU:g}; the rescale tags are corrupt; {_NOT_USABLE}"
        )
    return out


def _normal(file: Path, orientation: Sequence[float]) -> np.ndarray:
    """Unit slice normal row × column cosines; InputError when the cosines are degenerate."""
    normal = np.cross(np.asarray(orientation[:3], dtype=np.float64), np.asarray(orientation[3:], dtype=np.float64))
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise InputError(f"{file}: ImageOrientationPatient {tuple(orientation)} is degenerate; {_NOT_USABLE}")
    return normal / length

