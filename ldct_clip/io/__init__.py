"""Reading and writing CT volumes: DICOM series and NIfTI files in, float32 HU volumes with geometry out."""

from ldct_clip.io.dicom import (
    SliceInfo,
    is_dicom_file,
    read_series,
    read_slice_header,
    read_slice_hu,
    write_dicom_series,
)
from ldct_clip.io.nifti import read_nifti, write_nifti
from ldct_clip.io.read import read_volume
from ldct_clip.io.volume import CTVolume

__all__ = [
    "CTVolume",
    "SliceInfo",
    "is_dicom_file",
    "read_nifti",
    "read_series",
    "read_slice_header",
    "read_slice_hu",
    "read_volume",
    "write_dicom_series",
    "write_nifti",
]
