"""Build small, realistic CT DICOM series on disk for tests.

Shared by the I/O, Mayo-layout and inference tests: ``make_ct_series`` writes one file per slice with the
tags a scanner writes (CT Image Storage, study/series/SOP/frame-of-reference UIDs, geometry, rescale,
pixel representation), and ``phantom_hu`` gives a deterministic HU volume to encode.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

COMPRESSIONS = {"rle": RLELossless, "j2k": JPEG2000Lossless}
"""Names accepted by ``make_ct_series(compress=...)``; both encoders work without extra packages."""


def phantom_hu(n_slices: int = 6, rows: int = 64, columns: int = 64) -> np.ndarray:
    """Integer-valued HU volume (Z, Y, X): air, a water disc, a bone insert, and a per-slice offset.

    Every slice differs (offset 10 HU × slice index inside the disc), so slice order is testable.
    """
    y, x = np.mgrid[:rows, :columns]
    cy, cx = (rows - 1) / 2, (columns - 1) / 2
    radius = np.hypot(y - cy, x - cx)
    volume = np.full((n_slices, rows, columns), -1000.0, dtype=np.float32)
    for z in range(n_slices):
        image = volume[z]
        image[radius < 0.4 * min(rows, columns)] = 10.0 * z
        image[(np.abs(y - cy) < rows / 10) & (np.abs(x - cx - columns / 8) < columns / 10)] = 1000.0
        image[0, : z + 1] = -500.0  # top-left marker: row 0 holds z + 1 marked pixels
    return volume


def make_ct_series(
    folder: str | Path,
    n_slices: int = 6,
    rows: int = 64,
    columns: int = 64,
    *,
    hu: np.ndarray | None = None,
    signed: bool = True,
    bits_stored: int = 16,
    slope: float = 1.0,
    intercept: float = -1024.0,
    spacing: tuple[float, float, float] = (2.5, 0.75, 0.7),
    origin: tuple[float, float, float] = (-24.0, -24.0, 100.0),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    with_positions: bool = True,
    positions: Sequence[Sequence[float]] | None = None,
    shuffle_names: bool = True,
    extensions: Sequence[str] = (".dcm", ".IMA", ""),
    implicit_vr: bool = False,
    compress: str | None = None,
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_description: str = "Test abdomen 2.5mm",
    patient_id: str = "TEST001",
    manufacturer: str = "TESTVENDOR",
    pixel_padding_value: int | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write a CT series into ``folder`` (created if needed); return the files in slice order.

    Slice ``i`` sits at ``origin + i * spacing[0] * normal`` with InstanceNumber ``i + 1`` and holds
    ``hu[i]`` (default :func:`phantom_hu`) encoded as round((HU − intercept) / slope); ``positions`` (one
    ImagePositionPatient per slice) overrides those positions, e.g. for a gap or a gantry tilt. With
    ``shuffle_names`` the file names are random-looking and cycle through ``extensions``, so name order
    says nothing about slice order. ``compress`` is one of :data:`COMPRESSIONS` or None.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     [p.suffix for p in make_ct_series(folder, n_slices=3, rows=8, columns=8)]
    ['.dcm', '.IMA', '']
    """
    if implicit_vr and compress:
        raise ValueError("compressed transfer syntaxes are explicit VR: pass implicit_vr=False with compress")
    values = phantom_hu(n_slices, rows, columns) if hu is None else np.asarray(hu, dtype=np.float64)
    if values.shape != (n_slices, rows, columns):
        raise ValueError(f"hu has shape {values.shape}, expected {(n_slices, rows, columns)}")
    if positions is not None and len(positions) != n_slices:
        raise ValueError(f"positions holds {len(positions)} entries, expected one per slice ({n_slices})")
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    stored = np.rint((values - intercept) / slope)
    if stored.min() < low or stored.max() > high:
        raise ValueError(f"stored values {stored.min()}..{stored.max()} do not fit in [{low}, {high}]")
    stored = stored.astype("<i2" if signed else "<u2")

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = [f"{i:03d}" for i in range(n_slices)]
    if shuffle_names:
        names = [f"{rng.getrandbits(40):010x}" for _ in range(n_slices)]
    study = study_uid or generate_uid()
    series = series_uid or generate_uid()
    frame = frame_of_reference_uid or generate_uid()
    row_cos, col_cos = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row_cos, col_cos)
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    syntax = ImplicitVRLittleEndian if implicit_vr else ExplicitVRLittleEndian

    files = []
    for i in range(n_slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.Modality = modality
        ds.Manufacturer = manufacturer
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName = "Test^Phantom"
        ds.PatientID = patient_id
        ds.StudyDate = "20240102"
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 2
        ds.InstanceNumber = i + 1
        if with_positions:
            position = np.asarray(origin) + i * spacing[0] * normal if positions is None else positions[i]
            ds.ImagePositionPatient = [round(float(v), 4) for v in position]
            ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.SliceThickness = spacing[0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.KVP = 120
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "HU"
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = int(signed)
        if pixel_padding_value is not None:
            ds.PixelPaddingValue = pixel_padding_value
        ds.PixelData = stored[i].tobytes()
        ds["PixelData"].VR = "OW"
        if compress:
            ds.compress(COMPRESSIONS[compress], generate_instance_uid=False)
        path = out / f"{names[i]}{extensions[i % len(extensions)] if shuffle_names else '.dcm'}"
        ds.save_as(path, implicit_vr=implicit_vr, little_endian=True, enforce_file_format=True)
        files.append(path)
    return files


def make_mayo_tree(root: str | Path, patients: Sequence[str], n_slices: int = 3, size: int = 48,
                   noise_hu: float = 40.0) -> Path:
    """An AAPM-Mayo-layout tree under ``root``: ``<patient>/{full,quarter}_1mm/`` for each of ``patients``.

    Full dose is :func:`phantom_hu` (``n_slices`` of ``size``×``size``, 1 mm apart, 0.7 mm pixels); the
    quarter dose adds Gaussian noise of ``noise_hu`` seeded by the patient's index, so each patient differs.
    Returns ``root``.
    """
    root = Path(root)
    for i, patient in enumerate(patients):
        full = phantom_hu(n_slices, size, size)
        quarter = full + np.random.default_rng(i).normal(0, noise_hu, full.shape).astype(np.float32)
        for dose, hu in (("full", full), ("quarter", quarter)):
            make_ct_series(root / patient / f"{dose}_1mm", n_slices, size, size, hu=np.round(hu),
                           spacing=(1.0, 0.7, 0.7), patient_id=patient, seed=10 * i + (dose == "quarter"))
    return root
