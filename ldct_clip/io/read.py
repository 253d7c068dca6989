"""Read a CT volume from whatever the user points at: a DICOM series folder or a NIfTI file."""

from __future__ import annotations

import os
from pathlib import Path

from ldct_clip.errors import InputError
from ldct_clip.io.dicom import read_series
from ldct_clip.io.nifti import NIFTI_SUFFIXES, read_nifti
from ldct_clip.io.volume import CTVolume

__all__ = ["read_volume"]


def read_volume(path: str | os.PathLike[str], series_uid: str | None = None) -> CTVolume:
    """:func:`read_series` for a folder (``series_uid`` picks one of several), :func:`read_nifti` for a
    ``.nii``/``.nii.gz`` file; anything else is an :class:`InputError` naming the path.

    >>> read_volume("scan.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ldct_clip.errors.InputError: scan.txt: not a DICOM series folder or a .nii/.nii.gz file (no such file ...
    """
    source = Path(path)
    if source.is_dir():
        return read_series(source, series_uid=series_uid)
    if source.name.endswith(NIFTI_SUFFIXES):
        return read_nifti(source)
    missing = "" if source.exists() else " (no such file or folder)"
    raise InputError(f"{source}: not a DICOM series folder or a .nii/.nii.gz file{missing}; pass one of those")
