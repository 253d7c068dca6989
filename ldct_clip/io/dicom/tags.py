"""Tag values of a DICOM dataset read with checks: a missing or unparsable tag is a one-line InputError naming the
file and the tag, never a pydicom exception. Also the rescale of stored values, which reading and writing share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from ldct_clip.errors import InputError

_NOT_USABLE = "this file is not a usable CT image slice; re-export the series or remove the file"
_STORED_DTYPES = {
    (8, False): np.dtype("u1"),
    (8, True): np.dtype("i1"),
    (16, False): np.dtype("<u2"),
    (16, True): np.dtype("<i2"),
    (32, False): np.dtype("<u4"),
    (32, True): np.dtype("<i4"),
}


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

