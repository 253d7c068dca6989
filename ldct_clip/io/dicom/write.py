"""Write HU as a new DICOM series derived from the source headers (new UIDs, the source's stored encoding)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ldct_clip.atomic import staged_folder
from ldct_clip.errors import InputError
from ldct_clip.io.dicom.tags import _STORED_DTYPES, _rescale
from ldct_clip.io.volume import CTVolume

__all__ = ["write_dicom_series"]

_STALE_PIXEL_TAGS = (
    "PixelData",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)



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
    >>> from ldct_clip.io.dicom import read_series
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
