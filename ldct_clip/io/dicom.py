"""Read CT series from DICOM folders into HU volumes and write denoised volumes back as DICOM.

Units are decided here, once: readers return float32 Hounsfield units, writers turn HU back into the
source's stored integers. Rules, applied to every slice on its own:

- HU = stored × RescaleSlope + RescaleIntercept (the slice's own values; both are required for CT, and
  default to 1 and 0 for other modalities).
- Padding becomes air, :data:`AIR_HU` = −1024 HU, the bottom of the model scale (−1024 maps to 0), so
  that padding and air look the same to the model. A pixel is padding when its stored value equals
  PixelPaddingValue (or lies between PixelPaddingValue and PixelPaddingRangeLimit). When
  PixelPaddingValue is absent, Siemens data (Manufacturer containing "SIEMENS") with signed storage
  marks the outside of the reconstruction circle with stored −2000; only that combination is treated as
  padding, because −2000 is an ordinary value in unsigned data or in other vendors' signed data.
- Slices are ordered by their position along the slice normal, dot(ImagePositionPatient, row × column
  cosines), ascending; when any slice lacks a position they are ordered by InstanceNumber.
- Each slice keeps its own ImagePositionPatient in :attr:`CTVolume.positions`, so a series with a gap or a
  gantry tilt is read as it is (``spacing[0]`` is the median gap); writers decide whether they can
  represent it.
- HU must stay within ±:data:`~ldct_clip.io.volume.MAX_ABS_HU`; a RescaleSlope that takes them beyond (or
  to infinity in float32) is refused as corrupt.
- A slice's declared Rows × Columns is checked against its pixel data before any buffer of that size is
  allocated: the exact byte count for uncompressed data; for compressed data a side of at most
  :data:`MAX_COMPRESSED_SIDE` (the decoders allocate the declared size before decoding), and the first
  slice is decoded before the volume is allocated, so a corrupt header costs at most one slice.

Every problem with the input files is raised as :class:`~ldct_clip.errors.InputError` with one line that
names the file, the problem and what to do; pydicom exceptions never escape for bad input.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    generate_uid,
)

from ldct_clip.atomic import staged_folder
from ldct_clip.errors import InputError
from ldct_clip.io.volume import MAX_ABS_HU, CTVolume

__all__ = [
    "AIR_HU",
    "MAX_COMPRESSED_SIDE",
    "SIEMENS_PADDING_STORED",
    "SliceInfo",
    "is_dicom_file",
    "read_series",
    "read_slice_header",
    "read_slice_hu",
    "write_dicom_series",
]

AIR_HU = -1024.0
"""HU given to padding pixels: the bottom of the model scale [−1024, 3072] HU."""

SIEMENS_PADDING_STORED = -2000
"""Stored value Siemens scanners use outside the reconstruction circle when PixelPaddingValue is absent."""

MAX_COMPRESSED_SIDE = 16384
"""Largest Rows or Columns accepted for compressed pixel data: CT slices are at most a few thousand pixels
wide, and pydicom's decoders allocate Rows × Columns before decoding, so a corrupt 65535 × 65535 header would
allocate 8 GiB for a slice holding a few kilobytes."""

_NOT_USABLE = "this file is not a usable CT image slice; re-export the series or remove the file"
_RAW_DATASET_STARTS = (b"\x02\x00", b"\x08\x00")  # group 0002 or 0008, little endian
_POSITION_TOLERANCE_MM = 1e-3
_GEOMETRY_TOLERANCE = 1e-4
_STORED_DTYPES = {
    (8, False): np.dtype("u1"),
    (8, True): np.dtype("i1"),
    (16, False): np.dtype("<u2"),
    (16, True): np.dtype("<i2"),
    (32, False): np.dtype("<u4"),
    (32, True): np.dtype("<i4"),
}
_STALE_PIXEL_TAGS = (
    "PixelData",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)


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
    """Read one slice's pixels as float32 HU (rows × columns), with the module's rescale/padding rules.

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


def write_dicom_series(
    volume: CTVolume,
    hu: np.ndarray,
    out_dir: str | os.PathLike[str],
    description: str = "denoised",
    derivation: str = "Denoised with ldct_clip (CLIPDenoising)",
    overwrite: bool = False,
) -> Path:
    """Write ``hu`` as a new DICOM series derived from ``volume``'s source headers, one file per slice.

    Each slice keeps its source header (patient, study, frame of reference, geometry, the original
    RescaleSlope/Intercept and pixel representation) and gets a new SOPInstanceUID; the series gets one
    new SeriesInstanceUID, ImageType DERIVED\\SECONDARY, SeriesDescription "<original> [<description>]"
    and DerivationDescription ``derivation`` (name the model there). Stored values are
    round((HU − intercept) / slope) clipped to the stored range. Output is uncompressed Explicit VR
    Little Endian. PixelPaddingValue is dropped: padding was turned into air on reading.

    The files are written into a temporary folder beside ``out_dir`` that is renamed into place once
    complete, so a failure never leaves a partial series; an existing ``out_dir`` is replaced only when
    ``overwrite`` is True.

    Args:
        volume: the volume read by :func:`read_series` (its headers are copied, never modified).
        hu: HU array with the shape of ``volume.hu``.
        out_dir: folder to create.
        description: marker appended to SeriesDescription.
        derivation: DerivationDescription text, naming the model or checkpoint.
        overwrite: replace an existing ``out_dir``.

    Returns:
        ``out_dir`` as a Path.

    >>> import tempfile, shutil
    >>> from pydicom.data import get_testdata_file
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = shutil.copy(get_testdata_file("693_UNCR.dcm"), folder)
    >>> volume = read_series(folder)
    >>> out = write_dicom_series(volume, volume.hu, folder / "denoised", derivation="identity (example)")
    >>> pydicom.dcmread(next(out.iterdir())).SeriesDescription
    '5/5mm Plain [denoised]'
    >>> shutil.rmtree(folder)
    """
    if volume.slice_headers is None:
        raise InputError(
            f"{volume.source}: volume has no DICOM headers to copy (it was not read from DICOM); "
            "use write_nifti, or read a DICOM reference series with read_series and write with that"
        )
    values = np.asarray(hu)
    if values.shape != volume.shape:
        raise InputError(
            f"hu has shape {values.shape} but the volume from {volume.source} has shape {volume.shape}; "
            "pass one HU value per voxel of the source volume"
        )
    if not np.isfinite(values).all():
        raise InputError(f"hu for {volume.source} contains NaN or infinite values; fix them before writing")
    target = Path(out_dir)
    _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)

    series_uid = generate_uid()
    with staged_folder(target, before_move=lambda: _check_target(target, overwrite)) as temp:
        for index, header in enumerate(volume.slice_headers):
            ds = _derived_slice(header, values[index], series_uid, description, derivation)
            # dcmwrite (unlike save_as) re-encodes datasets read as big endian
            pydicom.dcmwrite(temp / f"IM{index + 1:05d}.dcm", ds, enforce_file_format=True)
    return target


# --- reading -------------------------------------------------------------------------------------------


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


def _stored_pixels(file: Path, ds: Dataset) -> np.ndarray:
    """Stored integer values of a single-frame, single-sample slice.

    Native (uncompressed) 8/16/32-bit data is viewed straight from the PixelData bytes in the byte order
    the file was read with, with bits above BitsStored masked (unsigned) or sign-extended (signed) as
    the standard requires; this skips pydicom's per-call overhead, which dominated reading time.
    Compressed (encapsulated) data goes through pydicom's decoders and the pylibjpeg plugins.
    """
    if "PixelData" not in ds:
        _missing(file, "PixelData")
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    encapsulated = syntax is not None and syntax.is_encapsulated  # raw datasets (no meta) are native
    bits_allocated = int(_required_number(file, ds, "BitsAllocated", int))
    bits_stored = int(_number(file, ds, "BitsStored", int) or bits_allocated)
    if not 1 <= bits_stored <= bits_allocated:
        raise _bad_value(file, "BitsStored", bits_stored)
    signed = _number(file, ds, "PixelRepresentation", int) == 1
    dtype = _STORED_DTYPES.get((bits_allocated, signed))
    rows, columns = int(ds.Rows), int(ds.Columns)
    held = len(ds.PixelData)
    if not encapsulated and dtype is not None:
        dtype = dtype.newbyteorder("<" if ds.original_encoding[1] else ">")
        if held < rows * columns * dtype.itemsize:
            raise InputError(
                f"{file}: declares {rows}x{columns} pixels of {bits_allocated} bits "
                f"({rows * columns * dtype.itemsize} bytes) but holds {held} bytes of pixel data; the file is "
                "truncated or its header corrupt; re-export the series or remove the file"
            )
        stored = np.frombuffer(ds.PixelData, dtype=dtype, count=rows * columns).reshape(rows, columns)
        spare = bits_allocated - bits_stored
        if spare > 0 and signed:
            return (stored << spare) >> spare
        if spare > 0:
            return stored & dtype.type((1 << bits_stored) - 1)
        return stored
    name = getattr(syntax, "name", "unknown")
    if encapsulated and max(rows, columns) > MAX_COMPRESSED_SIDE:
        raise InputError(
            f"{file}: declares {rows}x{columns} pixels but holds {held} bytes of {name} pixel data; the header "
            f"is corrupt (compressed slices wider than {MAX_COMPRESSED_SIDE} pixels are refused before "
            "decoding); re-export the series or remove the file"
        )
    try:
        return ds.pixel_array
    except Exception as exc:
        raise InputError(
            f"{file}: cannot decode pixel data (transfer syntax {name}): {_one_line(exc)}; "
            "the file is corrupt or needs a missing decoder plugin"
        ) from None


def _padding_mask(stored: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Boolean mask of padding pixels, or None when the slice declares (or implies) no padding."""
    value = ds.get("PixelPaddingValue")
    if value is not None:
        # Wrap into the stored type: a signed value written with VR US (63536) means -2000.
        pad = np.array(int(value)).astype(stored.dtype)
        limit = ds.get("PixelPaddingRangeLimit")
        if limit is None:
            return stored == pad
        low, high = sorted((pad, np.array(int(limit)).astype(stored.dtype)))
        return (stored >= low) & (stored <= high)
    siemens = "SIEMENS" in str(ds.get("Manufacturer", "")).upper()
    if siemens and int(ds.get("PixelRepresentation", 0)) == 1:
        return stored == SIEMENS_PADDING_STORED
    return None


def _rescale(file: Path, ds: Dataset, modality: str) -> tuple[float, float]:
    """(slope, intercept); required for CT, defaulting to (1, 0) for other modalities."""
    if modality == "CT":
        slope = _required_number(file, ds, "RescaleSlope", float)
        intercept = _required_number(file, ds, "RescaleIntercept", float)
    else:
        slope = _number(file, ds, "RescaleSlope", float)
        intercept = _number(file, ds, "RescaleIntercept", float)
        slope = 1.0 if slope is None else slope
        intercept = 0.0 if intercept is None else intercept
    if slope == 0 or not np.isfinite([slope, intercept]).all():
        raise InputError(f"{file}: RescaleSlope {slope} / RescaleIntercept {intercept} unusable; {_NOT_USABLE}")
    return float(slope), float(intercept)


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


def _normal(file: Path, orientation: Sequence[float]) -> np.ndarray:
    """Unit slice normal row × column cosines; InputError when the cosines are degenerate."""
    normal = np.cross(np.asarray(orientation[:3], dtype=np.float64), np.asarray(orientation[3:], dtype=np.float64))
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise InputError(f"{file}: ImageOrientationPatient {tuple(orientation)} is degenerate; {_NOT_USABLE}")
    return normal / length


# --- tag helpers -----------------------------------------------------------------------------------------


def _tag_name(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _missing(file: Path, keyword: str) -> None:
    """Raise for a missing required tag, saying so when the file ends before any pixel data (truncated)."""
    try:
        has_pixels = "PixelData" in pydicom.dcmread(file, force=True)
    except Exception:
        has_pixels = False
    if not has_pixels:
        raise InputError(f"{file}: missing tag {_tag_name(keyword)} and no pixel data; the file is truncated or "
                         "not an image; re-export the series or remove the file")
    raise InputError(f"{file}: missing tag {_tag_name(keyword)}; {_NOT_USABLE}")


def _bad_value(file: Path, keyword: str, value: object) -> InputError:
    return InputError(f"{file}: unreadable value {value!r} in tag {_tag_name(keyword)}; {_NOT_USABLE}")


def _get(file: Path, ds: Dataset, keyword: str) -> object:
    """Value of ``keyword`` or None when absent or empty; InputError when pydicom cannot parse it."""
    try:
        value = ds.get(keyword)
    except Exception:
        raise _bad_value(file, keyword, "?") from None
    return None if value is None or value == "" else value


def _required(file: Path, ds: Dataset, keyword: str) -> object:
    value = _get(file, ds, keyword)
    if value is None:
        _missing(file, keyword)
    return value


def _number(file: Path, ds: Dataset, keyword: str, kind: type[int] | type[float]) -> int | float | None:
    value = _get(file, ds, keyword)
    if value is None:
        return None
    try:
        number = kind(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad_value(file, keyword, value) from None
    if not np.isfinite(number):
        raise _bad_value(file, keyword, value)
    return number


def _required_number(file: Path, ds: Dataset, keyword: str, kind: type[int] | type[float]) -> int | float:
    number = _number(file, ds, keyword, kind)
    if number is None:
        _missing(file, keyword)
    return number  # type: ignore[return-value]


def _floats(file: Path, ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    value = _get(file, ds, keyword)
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise _bad_value(file, keyword, value) from None
    if len(numbers) != count or not np.isfinite(numbers).all():
        raise _bad_value(file, keyword, value)
    return numbers


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


# --- writing -------------------------------------------------------------------------------------------


def _check_target(target: Path, overwrite: bool) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InputError(f"{target}: exists and is not a folder; choose another output folder")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: output folder already exists; choose another one or pass overwrite=True")


def _derived_slice(header: Dataset, hu: np.ndarray, series_uid: str, description: str, derivation: str) -> Dataset:
    """A copy of ``header`` carrying ``hu`` as stored values and the derived-series identity tags."""
    ds = copy.deepcopy(header)
    for keyword in _STALE_PIXEL_TAGS:
        if keyword in ds:
            del ds[keyword]
    modality = str(ds.get("Modality", ""))
    source = Path(str(getattr(header, "filename", None) or "<source header>"))
    slope, intercept = _rescale(source, ds, modality)
    bits_allocated = int(ds.get("BitsAllocated", 16))
    bits_stored = int(ds.get("BitsStored", bits_allocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dtype = _STORED_DTYPES.get((bits_allocated, signed))
    if dtype is None or not 1 <= bits_stored <= bits_allocated:
        raise InputError(
            f"{source}: cannot write BitsAllocated {bits_allocated} / BitsStored {bits_stored}; "
            "only 8, 16 or 32 allocated bits are supported"
        )
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    stored = np.clip(np.rint((hu.astype(np.float64) - intercept) / slope), low, high).astype(dtype)

    sop_uid = generate_uid()
    original_sop = ds.get("SOPInstanceUID")
    sop_class = ds.get("SOPClassUID", CTImageStorage)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    image_type = ds.get("ImageType", [])
    image_type = [image_type] if isinstance(image_type, str) else list(image_type)
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    suffix = f"[{description}]"
    original = str(ds.get("SeriesDescription", "")).strip()
    ds.SeriesDescription = f"{original[: 63 - len(suffix)]} {suffix}".strip()
    ds.DerivationDescription = derivation[:1024]
    if original_sop is not None:
        reference = Dataset()
        reference.ReferencedSOPClassUID = sop_class
        reference.ReferencedSOPInstanceUID = original_sop
        ds.SourceImageSequence = [reference]

    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds
