"""Read and write CT volumes as NIfTI (.nii / .nii.gz) through SimpleITK.

Values are taken as HU as stored (after the file's own scl_slope/scl_inter, which SimpleITK applies).
SimpleITK reports geometry in DICOM patient coordinates (LPS) with index order (x, y, z); here it is
converted to :class:`~ldct_clip.io.volume.CTVolume`'s conventions: array (Z, Y, X), spacing (z, y, x),
origin (x, y, z) and direction rows = unit vectors of the x, y and z index axes. Volumes are written as
float32 so a write → read round trip is exact.

ITK's NIfTI reader silently turns NaN voxels into 0, which would hide a broken volume inside plausible
HU; floating-point files are therefore checked for non-finite voxels with nibabel, which reads them as
stored, and refused when they hold any.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from ldct_clip.atomic import partial_path
from ldct_clip.errors import InputError
from ldct_clip.io.volume import CTVolume

__all__ = ["NIFTI_SUFFIXES", "read_nifti", "write_nifti"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def read_nifti(path: str | os.PathLike[str]) -> CTVolume:
    """Read a 3-D NIfTI file as a float32 HU volume with its geometry.

    >>> import shutil, tempfile
    >>> v = CTVolume(np.zeros((3, 4, 5), np.float32), (2.0, 0.5, 0.5), (1, 2, 3), np.eye(3), None, "x")
    >>> folder = tempfile.mkdtemp()
    >>> file = write_nifti(v, v.hu, Path(folder) / "ct.nii.gz")
    >>> read_nifti(file).spacing
    (2.0, 0.5, 0.5)
    >>> shutil.rmtree(folder)
    """
    file = Path(path)
    _check_suffix(file)
    if not file.is_file():
        raise InputError(f"{file}: no such file; pass an existing .nii or .nii.gz file")
    try:
        image = sitk.ReadImage(str(file))
    except RuntimeError as exc:
        message = " ".join(str(exc).split())[-200:]
        raise InputError(f"{file}: cannot read as NIfTI ({message}); the file is corrupt or not NIfTI") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{file}: holds a {image.GetDimension()}-D image with {image.GetNumberOfComponentsPerPixel()} "
            "components per voxel; pass a single 3-D scalar CT volume"
        )
    _check_finite(file)
    hu = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    sx, sy, sz = image.GetSpacing()
    return CTVolume(
        hu=hu,
        spacing=(sz, sy, sx),
        origin=image.GetOrigin(),
        direction=np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3).T,
        slice_headers=None,
        source=file,
    )


def write_nifti(
    volume: CTVolume, hu: np.ndarray, path: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Write ``hu`` (shape of ``volume.hu``) as float32 NIfTI with ``volume``'s geometry.

    The file is written beside ``path`` under a temporary name and renamed into place, so a failure never
    leaves a partial file. An existing ``path`` is replaced only when ``overwrite`` is True.
    """
    file = Path(path)
    _check_suffix(file)
    values = np.asarray(hu)
    if values.shape != volume.shape:
        raise InputError(
            f"hu has shape {values.shape} but the volume from {volume.source} has shape {volume.shape}; "
            "pass one HU value per voxel of the source volume"
        )
    if file.exists() and not overwrite:
        raise InputError(f"{file}: already exists; choose another output file or pass overwrite=True")
    if file.is_dir():
        raise InputError(f"{file}: is a folder; pass a file name ending in .nii or .nii.gz")
    image = sitk.GetImageFromArray(values.astype(np.float32, copy=False))
    sz, sy, sx = volume.spacing
    image.SetSpacing((sx, sy, sz))
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(float(v) for v in volume.direction.T.ravel()))
    file.parent.mkdir(parents=True, exist_ok=True)
    suffix = next(s for s in NIFTI_SUFFIXES if file.name.endswith(s))
    temp = partial_path(file, suffix)
    try:
        sitk.WriteImage(image, str(temp))
        os.replace(temp, file)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return file


def _check_finite(file: Path) -> None:
    """Refuse a floating-point NIfTI file holding NaN or infinite voxels (see the module docstring)."""
    image = nib.load(file)
    if not np.issubdtype(image.get_data_dtype(), np.floating):
        return  # integers cannot hold NaN
    finite = np.isfinite(np.asanyarray(image.dataobj))
    if finite.all():
        return
    slices = np.flatnonzero(~finite.reshape(-1, finite.shape[-1]).all(axis=0)) if finite.ndim == 3 else [0]
    raise InputError(
        f"{file}: {int((~finite).sum())} voxels are NaN or infinite (first in slice {int(slices[0])}); "
        "fill or mask them (e.g. with -1024 HU, air) before using the volume"
    )


def _check_suffix(file: Path) -> None:
    if not file.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{file}: not a NIfTI file name; use a name ending in .nii or .nii.gz")
