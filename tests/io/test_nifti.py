"""NIfTI reading/writing, geometry conventions shared with DICOM, and CTVolume validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import make_ct_series

from ldct_clip.errors import InputError
from ldct_clip.io import CTVolume, read_nifti, read_series, write_nifti

_C, _S = np.cos(0.3), np.sin(0.3)
OBLIQUE = np.array([[1.0, 0.0, 0.0], [0.0, _C, _S], [0.0, -_S, _C]])


def _volume(shape: tuple[int, int, int] = (4, 6, 5), direction: np.ndarray = OBLIQUE) -> CTVolume:
    hu = np.random.default_rng(0).uniform(-1024, 3072, shape).astype(np.float32)
    return CTVolume(hu, (2.5, 0.8, 0.6), (-10.0, 20.5, 133.25), direction, None, "memory")


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_round_trip_keeps_values_and_geometry(tmp_path: Path, name: str) -> None:
    volume = _volume()
    file = write_nifti(volume, volume.hu, tmp_path / name)
    assert file == tmp_path / name
    again = read_nifti(file)
    np.testing.assert_array_equal(again.hu, volume.hu)
    assert again.hu.dtype == np.float32
    assert again.spacing == pytest.approx(volume.spacing)
    assert again.origin == pytest.approx(volume.origin)
    np.testing.assert_allclose(again.direction, volume.direction, atol=1e-6)
    assert again.slice_headers is None and again.source == file
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_index_axes_match_simpleitk(tmp_path: Path) -> None:
    """hu[z, y, x] sits at origin + x·sx·row + y·sy·col + z·sz·normal, as SimpleITK computes it."""
    volume = _volume()
    image = sitk.ReadImage(str(write_nifti(volume, volume.hu, tmp_path / "ct.nii.gz")))
    z, y, x = 3, 5, 2
    expected = np.asarray(volume.origin) + np.array([x, y, z]) * volume.spacing[::-1] @ volume.direction
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((x, y, z)), expected, atol=1e-4)
    assert image[x, y, z] == volume.hu[z, y, x]


def test_dicom_geometry_matches_simpleitk_dicom_reader(tmp_path: Path) -> None:
    """Our DICOM volume, via NIfTI, has the geometry and values SimpleITK's own DICOM reader gives."""
    make_ct_series(tmp_path / "dicom", orientation=(1, 0, 0, 0, _C, _S), slope=0.5)
    volume = read_series(tmp_path / "dicom")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "dicom")))
    reference = reader.Execute()
    again = read_nifti(write_nifti(volume, volume.hu, tmp_path / "ct.nii.gz"))
    assert again.spacing == pytest.approx(reference.GetSpacing()[::-1], abs=1e-3)
    assert again.origin == pytest.approx(reference.GetOrigin(), abs=1e-4)
    np.testing.assert_allclose(again.direction, np.reshape(reference.GetDirection(), (3, 3)).T, atol=1e-4)
    np.testing.assert_array_equal(again.hu, sitk.GetArrayFromImage(reference))


def test_existing_file_refused_unless_overwrite(tmp_path: Path) -> None:
    volume = _volume()
    file = tmp_path / "ct.nii.gz"
    file.write_bytes(b"old")
    with pytest.raises(InputError, match="already exists.*overwrite=True"):
        write_nifti(volume, volume.hu, file)
    assert file.read_bytes() == b"old"
    write_nifti(volume, volume.hu + 1, file, overwrite=True)
    np.testing.assert_array_equal(read_nifti(file).hu, volume.hu + 1)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = _volume()
    file = write_nifti(volume, volume.hu, tmp_path / "ct.nii.gz")

    def failing_write(image: sitk.Image, name: str) -> None:
        Path(name).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        write_nifti(volume, volume.hu + 1, file, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["ct.nii.gz"]
    monkeypatch.undo()
    np.testing.assert_array_equal(read_nifti(file).hu, volume.hu)


def test_bad_inputs(tmp_path: Path) -> None:
    volume = _volume()
    with pytest.raises(InputError, match="ending in .nii or .nii.gz"):
        write_nifti(volume, volume.hu, tmp_path / "ct.mha")
    with pytest.raises(InputError, match="shape"):
        write_nifti(volume, volume.hu[1:], tmp_path / "ct.nii")
    with pytest.raises(InputError, match="no such file"):
        read_nifti(tmp_path / "missing.nii")
    garbage = tmp_path / "garbage.nii"
    garbage.write_bytes(b"\x00" * 400)
    with pytest.raises(InputError, match="garbage.nii: cannot read as NIfTI"):
        read_nifti(garbage)
    four_d = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False), str(four_d))
    with pytest.raises(InputError, match="4-D image"):
        read_nifti(four_d)


# --- CTVolume validation (shared by all readers) ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_voxels_are_refused_not_read_as_zero(tmp_path: Path, name: str, bad: float) -> None:
    """ITK's reader alone turns NaN into 0 HU; the file must be refused instead."""
    hu = np.zeros((4, 6, 5), np.float32)
    hu[2, 3, 1] = bad
    file = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(file))
    with pytest.raises(InputError, match=rf"{name}: 1 voxels are NaN or infinite \(first in slice 2\)"):
        read_nifti(file)


def test_integer_nifti_reads_as_hu(tmp_path: Path) -> None:
    hu = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5) - 1024
    file = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(file))
    np.testing.assert_array_equal(read_nifti(file).hu, hu.astype(np.float32))


def test_volume_validation() -> None:
    hu = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="3-D"):
        CTVolume(hu[0], (1, 1, 1), (0, 0, 0), np.eye(3), None, "x")
    with pytest.raises(ValueError, match="float32"):
        CTVolume(hu.astype(np.float64), (1, 1, 1), (0, 0, 0), np.eye(3), None, "x")
    with pytest.raises(ValueError, match="spacing must be positive"):
        CTVolume(hu, (0, 1, 1), (0, 0, 0), np.eye(3), None, "x")
    with pytest.raises(ValueError, match="origin must be three"):
        CTVolume(hu, (1, 1, 1), (0, 0), np.eye(3), None, "x")
    with pytest.raises(ValueError, match="3x3"):
        CTVolume(hu, (1, 1, 1), (0, 0, 0), np.eye(2), None, "x")
    with pytest.raises(ValueError, match="one header per slice: 1 headers for 2 slices"):
        CTVolume(hu, (1, 1, 1), (0, 0, 0), np.eye(3), [object()], "x")  # type: ignore[list-item]
    volume = CTVolume(hu, [1, 2, 3], [4, 5, 6], np.eye(3).tolist(), None, "x")  # type: ignore[arg-type]
    assert volume.spacing == (1.0, 2.0, 3.0) and volume.shape == (2, 3, 4)
    assert isinstance(volume.direction, np.ndarray) and volume.source == Path("x")
