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

The parts: :mod:`~ldct_clip.io.dicom.slices` (one file: is it a DICOM image, its header, its HU),
:mod:`~ldct_clip.io.dicom.pixels` (stored values and padding of the pixel data),
:mod:`~ldct_clip.io.dicom.series` (a folder: choosing, ordering and stacking one series),
:mod:`~ldct_clip.io.dicom.write` (a derived series from HU and the source headers) and
:mod:`~ldct_clip.io.dicom.tags` (reading tag values with one-line errors, shared by all of them).
"""

from ldct_clip.io.dicom.pixels import AIR_HU, MAX_COMPRESSED_SIDE, SIEMENS_PADDING_STORED
from ldct_clip.io.dicom.series import read_series
from ldct_clip.io.dicom.slices import SliceInfo, is_dicom_file, read_slice_header, read_slice_hu
from ldct_clip.io.dicom.write import write_dicom_series

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
