"""Each slice's true position: gapped and gantry-tilted DICOM series, and what NIfTI output does with them."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import make_ct_series, phantom_hu

from ldct_clip.errors import InputError
from ldct_clip.io import CTVolume, read_nifti, read_series, write_dicom_series, write_nifti

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_C, _S = np.cos(0.3), np.sin(0.3)


def _tilted_positions(n: int, normal: np.ndarray, shift: np.ndarray) -> list[list[float]]:
    """Slice k at origin + 2.5 k mm along ``normal`` + k ``shift`` within the slice plane (gantry tilt)."""
    origin = np.array([-24.0, -24.0, 100.0])
    return [list(origin + k * (2.5 * normal + shift)) for k in range(n)]


TILTS = {
    "axial, y +3 mm per slice": ((1, 0, 0, 0, 1, 0), np.array([0.0, 0.0, 1.0]), np.array([0.0, 3.0, 0.0])),
    "oblique, 1.2 mm along the columns": ((1, 0, 0, 0, _C, _S), np.array([0.0, -_S, _C]), 1.2 * np.array([0, _C, _S])),
}


@pytest.mark.parametrize("tilt", TILTS)
def test_tilted_series_to_nifti_places_every_voxel_at_its_dicom_position(tmp_path: Path, tilt: str) -> None:
    orientation, normal, shift = TILTS[tilt]
    files = make_ct_series(tmp_path / "dicom", n_slices=5, orientation=orientation, shuffle_names=False,
                           positions=_tilted_positions(5, normal, shift))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a tilted series reads as it is, without complaint
        volume = read_series(tmp_path / "dicom")
    assert volume.tilted and volume.evenly_spaced and not volume.regular_grid
    assert volume.spacing[0] == pytest.approx(2.5, abs=1e-3)  # between slice planes, along the normal
    headers = [pydicom.dcmread(f) for f in files]
    np.testing.assert_allclose(volume.positions, [h.ImagePositionPatient for h in headers], atol=1e-9)

    with pytest.warns(UserWarning, match=r"tilted \(gantry tilt .*sheared sform"):
        out = write_nifti(volume, volume.hu, tmp_path / "ct.nii.gz")
    image = nib.load(out)
    assert image.header["sform_code"] > 0 and image.header["qform_code"] == 0
    data = np.asanyarray(image.dataobj)
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    for i, j, k in [(0, 0, 0), (63, 0, 1), (5, 40, 2), (63, 63, 4), (17, 9, 3)]:
        header = headers[k]
        dy, dx = (float(v) for v in header.PixelSpacing)  # (between rows, between columns)
        dicom_lps = np.asarray(header.ImagePositionPatient, float) + i * dx * row + j * dy * column
        np.testing.assert_allclose(image.affine @ [i, j, k, 1], [*(LPS_TO_RAS @ dicom_lps), 1], atol=1e-3)
        assert data[i, j, k] == phantom_hu(5)[k, j, i]
    with pytest.raises(RuntimeError):  # no untilted qform for ITK-based tools to fall back to
        sitk.ReadImage(str(out))

    again = read_nifti(out)
    np.testing.assert_allclose(again.positions, volume.positions, atol=1e-3)
    np.testing.assert_allclose(again.direction, volume.direction, atol=1e-6)
    assert again.spacing == pytest.approx(volume.spacing, abs=1e-4)
    np.testing.assert_array_equal(again.hu, volume.hu)
    assert again.tilted


def test_gapped_series_is_read_with_true_positions_but_refused_as_nifti(tmp_path: Path) -> None:
    z = [0.0, 2.0, 4.0, 8.0, 10.0]
    make_ct_series(tmp_path / "dicom", n_slices=5, positions=[[-24.0, -24.0, v] for v in z])
    with pytest.warns(UserWarning, match="slice gaps vary from 2 to 4 mm.*gap of 4 mm after z=4 mm"):
        volume = read_series(tmp_path / "dicom")
    assert volume.spacing[0] == 2.0  # the median gap, as before
    np.testing.assert_allclose(volume.positions[:, 2], z)
    assert not volume.evenly_spaced and not volume.regular_grid and not volume.tilted
    with pytest.raises(InputError) as info:
        write_nifti(volume, volume.hu, tmp_path / "ct.nii.gz")
    assert str(info.value) == (
        f"{tmp_path / 'ct.nii.gz'}: slices of {tmp_path / 'dicom'} are not evenly spaced (gap of 4 mm after "
        "z=4 mm); NIfTI needs a regular grid: write DICOM instead or resample"
    )
    assert not (tmp_path / "ct.nii.gz").exists()
    out = write_dicom_series(volume, volume.hu, tmp_path / "denoised")  # DICOM keeps every slice's position
    assert sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in out.iterdir()) == z


def test_regular_series_unchanged(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "dicom", orientation=(1, 0, 0, 0, _C, _S))
    volume = read_series(tmp_path / "dicom")
    assert volume.regular_grid and volume.evenly_spaced and not volume.tilted
    expected = np.asarray(volume.origin) + np.arange(6)[:, None] * volume.spacing[0] * volume.direction[2]
    np.testing.assert_allclose(volume.positions, expected, atol=1e-3)
    image = nib.load(write_nifti(volume, volume.hu, tmp_path / "ct.nii"))
    assert image.header["qform_code"] > 0  # written through SimpleITK, readable by every tool


def test_positions_validation() -> None:
    hu = np.zeros((3, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"finite \(3, 3\) array"):
        CTVolume(hu, (1, 1, 1), (0, 0, 0), np.eye(3), None, "x", positions=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="must equal origin"):
        CTVolume(hu, (1, 1, 1), (0, 0, 0), np.eye(3), None, "x", positions=[[0, 0, 1], [0, 0, 2], [0, 0, 3]])
    with pytest.raises(ValueError, match="advance along the slice normal"):
        CTVolume(hu, (1, 1, 1), (0, 0, 0), np.eye(3), None, "x", positions=[[0, 0, 0], [0, 0, 2], [0, 0, 1]])
    jitter = CTVolume(hu, (1, 1, 1), (0, 0, 0), np.eye(3), None, "x", positions=[[0, 0, 0], [0, 0.05, 1.04], [0, 0, 2]])
    assert jitter.regular_grid  # within a tenth of a voxel: on the grid
