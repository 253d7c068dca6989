"""Read and write CT volumes as NIfTI (.nii / .nii.gz).

Reading goes through nibabel, which reads voxels as stored (ITK's reader silently turns NaN voxels into
0, which would hide a broken volume inside plausible HU) and exposes the header, so every problem is
refused with one line naming the file:

- a header or voxel stream that cannot be read (truncated or corrupt file);
- anything but one real scalar 3-D volume (4-D, RGB/vector, complex voxels);
- NaN or infinite stored voxels, or a scl_slope/scl_inter that scales them beyond
  ±:data:`~ldct_clip.io.volume.MAX_ABS_HU` (or to infinity);
- degenerate geometry: a non-finite, singular or in-plane non-perpendicular affine, or a zero or
  non-finite pixdim where pixdim sets the voxel size.

Values are HU after the file's own scl_slope/scl_inter. Geometry is nibabel's best affine (NIfTI's
methods in order: the sform when sform_code is set, else the qform, else pixdim), converted from NIfTI's
RAS to DICOM patient coordinates (LPS) and to :class:`~ldct_clip.io.volume.CTVolume`'s conventions:
array (Z, Y, X), spacing (z, y, x), origin (x, y, z), direction rows = unit vectors of the x and y index
axes and the slice normal. A sheared affine (the slice axis not perpendicular to the slice plane: gantry
tilt) is read exactly, into :attr:`CTVolume.positions`.

Writing: a volume whose slices are evenly spaced along the slice normal is written through SimpleITK
(qform and sform, as every NIfTI tool expects); a tilted one through nibabel with a sheared sform that
places every slice where its DICOM header says (and qform_code 0, so no reader falls back to an
untilted qform). A volume with a gap is refused: NIfTI cannot hold it. Voxels are written as float32 so a
write → read round trip is exact.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.volumeutils import apply_read_scaling

from ldct_clip.atomic import partial_path
from ldct_clip.errors import InputError
from ldct_clip.io.volume import MAX_ABS_HU, CTVolume

__all__ = ["NIFTI_SUFFIXES", "read_nifti", "write_nifti"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
_PERPENDICULAR_TOLERANCE = 1e-4  # |cos| of the angle between the row and column axes
_SINGULAR_TOLERANCE = 1e-6  # |det| relative to the product of the axis lengths
_PIXDIM_AGREEMENT = 1e-5  # relative difference up to which pixdim and the affine's voxel size agree


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
        image = nib.load(file)
    except Exception as exc:
        raise InputError(
            f"{file}: cannot read as NIfTI ({_one_line(exc)}); the file is truncated, corrupt or not NIfTI; "
            "re-export it"
        ) from None
    shape = _check_shape(file, image)
    try:
        stored = np.asanyarray(image.dataobj.get_unscaled()).reshape(shape)
    except Exception as exc:
        raise InputError(f"{file}: voxel data truncated or corrupt ({_one_line(exc)}); re-export it") from None
    # nibabel repairs some header fields on loading (a zero pixdim becomes 1, an infinite scl_slope NaN,
    # which means "no scaling"); corrupt values are refused, so they are checked as written.
    with nib.openers.ImageOpener(file) as stream:
        written = type(image.header).from_fileobj(stream, check=False)
    _check_finite(file, stored)
    hu = _scaled(file, image, float(written["scl_slope"]), stored)
    spacing, origin, direction, positions = _geometry(file, image, written["pixdim"][1:4], shape[2])
    return CTVolume(
        hu=np.ascontiguousarray(hu.T),
        spacing=spacing,
        origin=origin,
        direction=direction,
        slice_headers=None,
        source=file,
        positions=positions,
    )


def write_nifti(
    volume: CTVolume, hu: np.ndarray, path: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Write ``hu`` (shape of ``volume.hu``) as float32 NIfTI with ``volume``'s geometry.

    Every slice lands at ``volume.positions``: a tilted series gets a sheared sform (with a warning, since
    ITK-based tools such as SimpleITK refuse sheared affines); a series with a gap is an InputError, since
    NIfTI needs evenly spaced slices. The file is written beside ``path`` under a temporary name and
    renamed into place, so a failure never leaves a partial file. An existing ``path`` is replaced only
    when ``overwrite`` is True.
    """
    file = Path(path)
    _check_suffix(file)
    values = np.asarray(hu)
    if values.shape != volume.shape:
        raise InputError(
            f"hu has shape {values.shape} but the volume from {volume.source} has shape {volume.shape}; "
            "pass one HU value per voxel of the source volume"
        )
    problem = volume.uneven_spacing()
    if problem is not None:
        raise InputError(
            f"{file}: slices of {volume.source} are not evenly spaced ({problem}); NIfTI needs a regular grid: "
            "write DICOM instead or resample"
        )
    if file.exists() and not overwrite:
        raise InputError(f"{file}: already exists; choose another output file or pass overwrite=True")
    if file.is_dir():
        raise InputError(f"{file}: is a folder; pass a file name ending in .nii or .nii.gz")
    values = values.astype(np.float32, copy=False)
    file.parent.mkdir(parents=True, exist_ok=True)
    suffix = next(s for s in NIFTI_SUFFIXES if file.name.endswith(s))
    temp = partial_path(file, suffix)
    try:
        if volume.tilted:
            _warn_sheared(file, volume)
            nib.save(_sheared_image(volume, values), temp)
        else:
            sitk.WriteImage(_grid_image(volume, values), str(temp))
        os.replace(temp, file)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return file


# --- reading -----------------------------------------------------------------------------------------------


def _check_shape(file: Path, image: nib.Nifti1Image) -> tuple[int, int, int]:
    """(X, Y, Z) of a single real scalar 3-D volume (trailing axes of size 1 dropped), else InputError."""
    dtype = image.get_data_dtype()
    if dtype.kind == "c":
        raise InputError(
            f"{file}: complex voxels ({dtype}); CT volumes are real: save the real part or magnitude as a "
            "real-valued NIfTI"
        )
    shape = tuple(int(n) for n in image.shape)
    spatial = shape[:4] if shape[3:4] not in ((), (1,)) else shape[:3]
    components = math.prod(shape[4:]) * (len(dtype.fields) if dtype.fields else 1)
    if len(spatial) != 3 or components != 1:
        raise InputError(
            f"{file}: holds a {len(spatial)}-D image with {components} components per voxel; "
            "pass a single 3-D scalar CT volume"
        )
    return spatial  # type: ignore[return-value]


def _check_finite(file: Path, stored: np.ndarray) -> None:
    """Refuse NaN or infinite stored voxels (see the module docstring)."""
    if not np.issubdtype(stored.dtype, np.floating):
        return  # integers cannot hold NaN
    finite = np.isfinite(stored)
    if finite.all():
        return
    slices = np.flatnonzero(~finite.reshape(-1, finite.shape[-1]).all(axis=0))
    raise InputError(
        f"{file}: {int((~finite).sum())} voxels are NaN or infinite (first in slice {int(slices[0])}); "
        "fill or mask them (e.g. with -1024 HU, air) before using the volume"
    )


def _scaled(file: Path, image: nib.Nifti1Image, raw_slope: float, stored: np.ndarray) -> np.ndarray:
    """float32 HU = stored × scl_slope + scl_inter (nibabel's reading of them), refused beyond ±MAX_ABS_HU;
    ``raw_slope`` is scl_slope as written (nibabel takes an infinite one for "no scaling")."""
    if math.isinf(raw_slope):
        raise InputError(f"{file}: scl_slope is {raw_slope}; the header's scaling is corrupt: fix it or re-export")
    slope, inter = image.dataobj.slope, image.dataobj.inter
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused just below
        hu = np.asarray(apply_read_scaling(stored, slope, inter), dtype=np.float32)
    low, high = float(hu.min()), float(hu.max())
    if -MAX_ABS_HU <= low <= high <= MAX_ABS_HU:  # also False for NaN
        return hu
    if (slope, inter) != (1.0, 0.0):
        raise InputError(
            f"{file}: scl_slope {slope:g} / scl_inter {inter:g} scale the voxels to {low:g}..{high:g} HU, beyond "
            f"±{MAX_ABS_HU:g}; the header's scaling is corrupt: fix scl_slope/scl_inter or re-export the file"
        )
    raise InputError(
        f"{file}: voxels range from {low:g} to {high:g}, beyond ±{MAX_ABS_HU:g} HU; this is not a CT volume in HU"
    )


def _geometry(
    file: Path, image: nib.Nifti1Image, written_pixdim: np.ndarray, n_slices: int
) -> tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray, np.ndarray]:
    """(spacing, origin, direction, positions) in CTVolume's conventions from the affine nibabel uses;
    ``written_pixdim`` is pixdim[1:4] as written (nibabel replaces a zero by 1)."""
    header = image.header
    source = "sform" if header["sform_code"] > 0 else "qform" if header["qform_code"] > 0 else "pixdim"
    if source != "sform":
        pixdim = np.asarray(written_pixdim, dtype=np.float64)
        if not (np.isfinite(pixdim).all() and (pixdim > 0).all()):
            user = "the qform scales by it" if source == "qform" else "with no sform or qform it sets the geometry"
            raise InputError(
                f"{file}: pixdim voxel size {tuple(float(v) for v in pixdim)} is not positive and finite, and "
                f"{user}; the geometry is corrupt: fix the voxel size or re-export the file"
            )
    affine = np.asarray(image.affine, dtype=np.float64)
    described = f"the {source} affine {_matrix(affine[:3])}"
    if not np.isfinite(affine).all():
        raise InputError(f"{file}: {described} is not finite; the geometry is corrupt: fix it or re-export the file")
    axes = _LPS_FROM_RAS @ affine[:3, :3]  # columns: steps of the x, y and z (slice) index in LPS mm
    lengths = np.linalg.norm(axes, axis=0)
    if abs(np.linalg.det(axes)) <= _SINGULAR_TOLERANCE * float(np.prod(lengths)):
        raise InputError(
            f"{file}: {described} is singular (its axes do not span 3-D space); the geometry is corrupt: "
            "fix it or re-export the file"
        )
    row, column = axes[:, 0] / lengths[0], axes[:, 1] / lengths[1]
    cosine = float(np.dot(row, column))
    if abs(cosine) > _PERPENDICULAR_TOLERANCE:
        raise InputError(
            f"{file}: {described} has row and column axes {math.degrees(math.acos(cosine)):.3f}° apart, not 90°; "
            "CT slices have perpendicular rows and columns: fix the geometry or re-export the file"
        )
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    if np.dot(normal, axes[:, 2]) < 0:  # left-handed index axes: the z index runs against row x column
        normal = -normal
    origin = _LPS_FROM_RAS @ affine[:3, 3]
    positions = origin + np.arange(n_slices)[:, None] * axes[:, 2]
    # Where pixdim agrees with the affine it is the voxel size as written (float32, like the affine): taking
    # it, as ITK does, keeps NIfTI -> NIfTI round trips exact instead of drifting by float32 rounding.
    sizes = np.array([lengths[0], lengths[1], np.dot(axes[:, 2], normal)])
    pixdim = np.asarray(written_pixdim, dtype=np.float64)
    sizes = np.where(np.abs(pixdim - sizes) <= _PIXDIM_AGREEMENT * sizes, pixdim, sizes)
    spacing = (float(sizes[2]), float(sizes[1]), float(sizes[0]))
    return spacing, (float(origin[0]), float(origin[1]), float(origin[2])), np.array([row, column, normal]), positions


# --- writing -----------------------------------------------------------------------------------------------


def _grid_image(volume: CTVolume, values: np.ndarray) -> sitk.Image:
    """SimpleITK image of ``values`` on ``volume``'s grid; off the grid (evenly spaced, not tilted, but
    ``spacing[0]``, the median gap, drifting from the mean step) the slice spacing is the mean step."""
    image = sitk.GetImageFromArray(values)
    sz, sy, sx = volume.spacing
    if not volume.regular_grid:
        sz = float(np.dot(volume.slice_step, volume.direction[2]))
    image.SetSpacing((sx, sy, sz))
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(float(v) for v in volume.direction.T.ravel()))
    return image


def _sheared_image(volume: CTVolume, values: np.ndarray) -> nib.Nifti1Image:
    """nibabel image whose sform takes index (x, y, z) to ``positions[z]`` + x·sx·row + y·sy·column (in RAS)."""
    _, sy, sx = volume.spacing
    affine = np.eye(4)
    affine[:3, :3] = _LPS_FROM_RAS @ np.column_stack([sx * volume.direction[0], sy * volume.direction[1],
                                                       volume.slice_step])
    affine[:3, 3] = _LPS_FROM_RAS @ np.asarray(volume.origin)
    image = nib.Nifti1Image(values.T, None)  # NIfTI index order (x, y, z)
    image.set_sform(affine, code="scanner")
    image.set_qform(None, code=0)  # a qform cannot hold the shear: no reader may fall back to it
    image.header.set_xyzt_units("mm")
    return image


def _warn_sheared(file: Path, volume: CTVolume) -> None:
    step = volume.slice_step
    along = float(np.dot(step, volume.direction[2]))
    shift = float(np.linalg.norm(step - along * volume.direction[2]))
    tilt = math.degrees(math.atan2(shift, along))
    warnings.warn(
        f"{file}: the slices of {volume.source} are tilted (gantry tilt {tilt:.2f}°, {shift:.3g} mm in-plane shift "
        "per slice); written with a sheared sform that places every slice exactly: nibabel reads it, ITK-based "
        "tools (SimpleITK) refuse a sheared affine",
        stacklevel=3,
    )


def _matrix(rows: np.ndarray) -> str:
    return "[" + ", ".join("[" + ", ".join(f"{v:.6g}" for v in row) + "]" for row in rows) + "]"


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[-200:]


def _check_suffix(file: Path) -> None:
    if not file.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{file}: not a NIfTI file name; use a name ending in .nii or .nii.gz")
