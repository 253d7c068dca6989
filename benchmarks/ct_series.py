"""A 512×512 CT series for the benchmarks, written from pydicom-data's real CT slice (693_UNCR.dcm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def make_series(folder: Path, slices: int, shift: bool = False) -> None:
    """Write ``slices`` copies of the slice, 1 mm apart, as one new series (new series and SOP UIDs).

    ``shift`` rolls each copy by a few more pixels than the last, so that no two slices are equal (for
    runs whose results could depend on repeated inputs).
    """
    ds = pydicom.dcmread(str(get_testdata_file("693_UNCR.dcm")))
    stored = ds.pixel_array
    ds.SeriesInstanceUID = generate_uid()
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    for index in range(slices):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [x, y, z + index]
        if shift:
            ds.PixelData = np.roll(stored, (2 * index, 3 * index), axis=(0, 1)).tobytes()
        ds.save_as(folder / f"IM{index:04d}.dcm")
