"""Stored values of a slice's pixel data (native data read straight from its bytes, compressed data through
pydicom's decoders) and which of them are padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ldct_clip.errors import InputError
from ldct_clip.io.dicom.tags import _STORED_DTYPES, _bad_value, _missing, _number, _one_line, _required_number

__all__ = ["AIR_HU", "MAX_COMPRESSED_SIDE", "SIEMENS_PADDING_STORED"]

AIR_HU = -1024.0
"""HU given to padding pixels: the bottom of the model scale [−1024, 3072] HU."""

SIEMENS_PADDING_STORED = -2000
"""Stored value Siemens scanners use outside the reconstruction circle when PixelPaddingValue is absent."""

MAX_COMPRESSED_SIDE = 16384
"""Largest Rows or Columns accepted for compressed pixel data: CT slices are at most a few thousand pixels
wide, and pydicom's decoders allocate Rows × Columns before decoding, so a corrupt 65535 × 65535 header would
allocate 8 GiB for a slice holding a few kilobytes."""



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

