"""NIfTI reading/writing, geometry conventions shared with DICOM, and CTVolume validation."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
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


# --- corrupt files and degenerate headers (issue 12: adversarial inputs) ------------------------------------


def _nifti(tmp_path: Path, name: str, data: np.ndarray | None = None, affine: np.ndarray | None = None,
           qform: bool = True) -> nib.Nifti1Image:
    """A small NIfTI image (not yet saved) with an sform (``affine``) and optionally the same qform."""
    values = np.random.default_rng(0).uniform(-1000, 1000, (16, 12, 4)).astype(np.float32) if data is None else data
    matrix = np.diag([0.7, 0.7, 2.5, 1.0]) if affine is None else affine
    image = nib.Nifti1Image(values, None)
    image.set_sform(matrix, code="scanner")
    image.set_qform(matrix if qform else None, code="scanner" if qform else 0)
    return image


def _save(tmp_path: Path, name: str, image: nib.Nifti1Image) -> Path:
    nib.save(image, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_truncated_file_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    file = _save(tmp_path, name, _nifti(tmp_path, name))
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])  # in the middle of the gzip stream / of the voxels
    with pytest.raises(InputError, match=rf"{name}: .*truncated or corrupt.*re-export it") as info:
        read_nifti(file)
    assert "\n" not in str(info.value)
    file.write_bytes(data[:200])  # inside the header
    with pytest.raises(InputError, match=rf"{name}: cannot read as NIfTI.*truncated, corrupt or not NIfTI"):
        read_nifti(file)


def _geometry_case(case: str) -> nib.Nifti1Image:
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    affine[:3, 3] = (10, 20, 30)
    if case == "nan-translation":
        affine[0, 3] = np.nan
    elif case == "singular":
        affine[:3, 2] = affine[:3, 0]
    elif case == "zero-axis":
        affine[2, 2] = 0.0
    elif case == "skewed-rows":
        affine[1, 0] = 0.3
    if case.startswith("pixdim"):
        image = nib.Nifti1Image(np.zeros((16, 12, 4), np.float32), None)
        image.header.set_sform(None, code=0)
        if case == "pixdim-qform-zero":
            image.header.set_qform(affine, code=1)
        else:
            image.header.set_qform(None, code=0)
        image.header["pixdim"][1:4] = (0.0, 0.7, 2.5) if "zero" in case else (np.nan, 0.7, 2.5)
        return image
    return _nifti(Path(), "", np.zeros((16, 12, 4), np.float32), affine, qform=False)


GEOMETRY_CASES = {
    "nan-translation": r"the sform affine \[\[0.7, 0, 0, nan\], .* is not finite",
    "singular": r"the sform affine .* is singular",
    "zero-axis": r"the sform affine .* is singular",
    "skewed-rows": r"the sform affine .* has row and column axes 66.8\d\d° apart, not 90°",
    "pixdim-zero": r"pixdim voxel size \(0.0, .*with no sform or qform it sets the geometry",
    "pixdim-nan": r"pixdim voxel size \(nan, .*with no sform or qform it sets the geometry",
    "pixdim-qform-zero": r"pixdim voxel size \(0.0, .*the qform scales by it",
}


@pytest.mark.parametrize("case", GEOMETRY_CASES)
def test_degenerate_geometry_is_refused_naming_file_and_geometry(tmp_path: Path, case: str) -> None:
    file = _save(tmp_path, f"{case}.nii", _geometry_case(case))
    with pytest.raises(InputError, match=rf"{case}.nii: {GEOMETRY_CASES[case]}.*geometry") as info:
        read_nifti(file)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_voxels_refused(tmp_path: Path, dtype: type) -> None:
    data = (np.ones((8, 8, 3)) + 1j).astype(dtype)
    file = _save(tmp_path, "complex.nii.gz", nib.Nifti1Image(data, np.eye(4)))
    with pytest.raises(InputError, match=r"complex.nii.gz: complex voxels \(complex\d+\); CT volumes are real"):
        read_nifti(file)


def test_rgb_and_vector_voxels_still_refused(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    file = _save(tmp_path, "rgb.nii", nib.Nifti1Image(rgb, np.eye(4)))
    with pytest.raises(InputError, match="rgb.nii: holds a 3-D image with 3 components per voxel"):
        read_nifti(file)
    vector = _save(tmp_path, "vector.nii", nib.Nifti1Image(np.zeros((8, 8, 3, 1, 2), np.float32), np.eye(4)))
    with pytest.raises(InputError, match="vector.nii: holds a 3-D image with 2 components per voxel"):
        read_nifti(vector)
    single = _save(tmp_path, "single.nii", nib.Nifti1Image(np.zeros((8, 8, 3, 1), np.float32), np.eye(4)))
    assert read_nifti(single).shape == (3, 8, 8)  # a trailing axis of size 1 is still one volume


@pytest.mark.parametrize(("slope", "inter"), [(1e38, 0.0), (1e30, -1024.0), (1.0, 2e6)])
def test_scaling_beyond_any_hu_is_refused_naming_scl(tmp_path: Path, slope: float, inter: float) -> None:
    image = nib.Nifti1Image(np.full((8, 8, 3), 3000, np.int16), np.eye(4))
    image.header.set_slope_inter(slope, inter)
    file = _save(tmp_path, "scaled.nii", image)
    with pytest.raises(InputError, match=r"scaled.nii: scl_slope .* / scl_inter .*corrupt: fix scl_slope/scl_inter"):
        read_nifti(file)
    header = bytearray(file.read_bytes())
    header[112:116] = np.float32(np.inf).tobytes()  # scl_slope; nibabel alone would read the values unscaled
    file.write_bytes(bytes(header))
    with pytest.raises(InputError, match="scaled.nii: scl_slope is inf"):
        read_nifti(file)


def test_huge_unscaled_values_refused(tmp_path: Path) -> None:
    file = _save(tmp_path, "huge.nii", nib.Nifti1Image(np.full((8, 8, 3), 1e30, np.float32), np.eye(4)))
    with pytest.raises(InputError, match="huge.nii: voxels range from 1e.30 to 1e.30, beyond .*not a CT volume"):
        read_nifti(file)


def test_scaled_integer_nifti_reads_as_hu(tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.arange(8 * 8 * 3, dtype=np.int16).reshape(8, 8, 3), np.eye(4))
    image.header.set_slope_inter(0.5, -1024)
    volume = read_nifti(_save(tmp_path, "scaled.nii.gz", image))
    np.testing.assert_array_equal(volume.hu, (np.arange(8 * 8 * 3).reshape(8, 8, 3) * 0.5 - 1024).T)
    assert volume.hu.flags.c_contiguous


def test_geometry_matches_simpleitk_for_a_nibabel_file(tmp_path: Path) -> None:
    """RAS -> LPS and the axis order agree with SimpleITK on a file SimpleITK did not write."""
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0.8, 0, 0], [0, 0.6 * _C, -2.5 * _S], [0, 0.6 * _S, 2.5 * _C]])
    affine[:3, 3] = (-30, 12.5, 40)
    file = _save(tmp_path, "oblique.nii.gz", _nifti(tmp_path, "", affine=affine))
    ours, theirs = read_nifti(file), sitk.ReadImage(str(file))
    assert ours.spacing == pytest.approx(theirs.GetSpacing()[::-1], abs=1e-5)
    assert ours.origin == pytest.approx(theirs.GetOrigin(), abs=1e-4)
    np.testing.assert_allclose(ours.direction, np.reshape(theirs.GetDirection(), (3, 3)).T, atol=1e-6)
    np.testing.assert_array_equal(ours.hu, sitk.GetArrayFromImage(theirs))
    assert ours.regular_grid


def test_repeated_round_trips_are_exact(tmp_path: Path) -> None:
    """NIfTI -> NIfTI -> NIfTI keeps spacing and origin bit for bit (no float32 drift from pass to pass)."""
    first = read_nifti(write_nifti(_volume(), _volume().hu, tmp_path / "a.nii.gz"))
    second = read_nifti(write_nifti(first, first.hu, tmp_path / "b.nii.gz"))
    third = read_nifti(write_nifti(second, second.hu, tmp_path / "c.nii"))
    assert first.spacing == second.spacing == third.spacing
    assert first.origin == second.origin == third.origin
    np.testing.assert_allclose(third.direction, first.direction, atol=1e-7)
