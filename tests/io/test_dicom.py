"""DICOM reading and writing: values, ordering, geometry, errors and write-back identity."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import make_ct_series, phantom_hu
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

from ldct_clip.errors import InputError
from ldct_clip.io import (
    CTVolume,
    SliceInfo,
    read_series,
    read_slice_header,
    read_slice_hu,
    write_dicom_series,
)
from ldct_clip.io.dicom import AIR_HU


def _edit(path: Path, **changes: object) -> None:
    """Rewrite one file with tags set (value) or deleted (None)."""
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- single-slice helpers --------------------------------------------------------------------------------


def test_read_slice_header_real_slice(real_uncompressed: Path) -> None:
    info = read_slice_header(real_uncompressed)
    assert isinstance(info, SliceInfo)
    assert info.path == real_uncompressed
    assert (info.modality, info.rows, info.columns) == ("CT", 512, 512)
    assert info.pixel_spacing == pytest.approx((0.478516, 0.478516))
    assert info.image_position == pytest.approx((-122.5, -112.4, 47.0))
    assert info.image_orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert info.position_along_normal == pytest.approx(47.0)
    assert info.slice_thickness == 5.0
    assert info.instance_number == 21
    assert info.patient_id == "CQ500-CT-310"
    assert info.series_description == "5/5mm Plain"
    assert info.sop_instance_uid.startswith("1.2.276.0.7230010.3.1.4")


def test_read_slice_hu_real_slice_padding_and_rescale(real_uncompressed: Path, real_j2k: Path) -> None:
    stored = pydicom.dcmread(real_uncompressed).pixel_array
    hu = read_slice_hu(real_uncompressed)
    assert hu.dtype == np.float32 and hu.shape == (512, 512)
    padding = stored == -2000
    assert AIR_HU == -1024.0  # bottom of the model scale
    assert padding.sum() > 1000  # the real slice has a padded border
    assert np.all(hu[padding] == AIR_HU)
    np.testing.assert_array_equal(hu[~padding], stored[~padding].astype(np.float32) - 1024)
    np.testing.assert_array_equal(read_slice_hu(real_j2k), hu)  # JPEG 2000 lossless decodes identically


def test_read_slice_header_oblique_normal(tmp_path: Path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    files = make_ct_series(tmp_path, n_slices=3, orientation=(1, 0, 0, 0, c, s), shuffle_names=False)
    along = [read_slice_header(f).position_along_normal for f in files]
    assert np.diff(along) == pytest.approx([2.5, 2.5], abs=1e-3)


@pytest.mark.parametrize("signed", [False, True])
def test_bits_above_bits_stored_are_ignored(tmp_path: Path, signed: bool) -> None:
    """Garbage in the unused high bits is masked (unsigned) or replaced by the sign (signed), like pydicom."""
    hu = np.clip(phantom_hu(1), -1024, 1000)
    file = make_ct_series(tmp_path, n_slices=1, hu=hu, signed=signed, bits_stored=12, shuffle_names=False)[0]
    ds = pydicom.dcmread(file)
    words = np.frombuffer(ds.PixelData, "<u2").copy()
    words[::3] |= 0xA000  # set bits 13 and 15
    ds.PixelData = words.tobytes()
    ds.save_as(file)
    np.testing.assert_array_equal(read_slice_hu(file), hu[0])
    np.testing.assert_array_equal(read_slice_hu(file), pydicom.dcmread(file).pixel_array - 1024.0)


def test_big_endian_read_and_written_little_endian(tmp_path: Path) -> None:
    for file in make_ct_series(tmp_path / "in", n_slices=3):
        source = pydicom.dcmread(file)
        big_endian = source.pixel_array.astype(">i2").tobytes()
        ds = Dataset()  # a fresh dataset: pydicom refuses to re-encode a read one as big endian
        ds.update(source)
        ds.file_meta = source.file_meta
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        ds.PixelData = big_endian
        ds.save_as(file, little_endian=False, implicit_vr=False, enforce_file_format=True)
    volume = read_series(tmp_path / "in")
    np.testing.assert_array_equal(volume.hu, phantom_hu(3))
    out = write_dicom_series(volume, volume.hu, tmp_path / "out")
    assert {pydicom.dcmread(f).file_meta.TransferSyntaxUID for f in out.iterdir()} == {ExplicitVRLittleEndian}
    np.testing.assert_array_equal(read_series(out).hu, phantom_hu(3))


def test_helpers_refuse_non_dicom(tmp_path: Path) -> None:
    text = tmp_path / "readme.txt"
    text.write_text("not an image\n")
    for read in (read_slice_header, read_slice_hu):
        with pytest.raises(InputError, match="readme.txt: not a DICOM image file"):
            read(text)


# --- reading series ----------------------------------------------------------------------------------------


SERIES_VARIANTS = {
    "signed": {},
    "unsigned-12bit": {"signed": False, "bits_stored": 12},
    "signed-14bit": {"bits_stored": 14},
    "slope-0.5": {"slope": 0.5, "intercept": -1024.0},
    "implicit-vr": {"implicit_vr": True},
    "rle": {"compress": "rle"},
    "j2k": {"compress": "j2k", "signed": False},
}


@pytest.mark.parametrize("variant", SERIES_VARIANTS)
def test_read_series_values_and_geometry(tmp_path: Path, variant: str) -> None:
    files = make_ct_series(tmp_path, **SERIES_VARIANTS[variant])
    volume = read_series(tmp_path)
    assert isinstance(volume, CTVolume)
    assert volume.hu.dtype == np.float32
    np.testing.assert_array_equal(volume.hu, phantom_hu())
    assert volume.spacing == pytest.approx((2.5, 0.75, 0.7))
    assert volume.origin == pytest.approx((-24.0, -24.0, 100.0))
    np.testing.assert_allclose(volume.direction, np.eye(3))
    assert volume.source == tmp_path
    assert volume.slice_headers is not None
    assert [h.SOPInstanceUID for h in volume.slice_headers] == [pydicom.dcmread(f).SOPInstanceUID for f in files]
    assert all("PixelData" not in h for h in volume.slice_headers)


def test_shuffled_names_with_mixed_extensions_are_ordered_by_position(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path, n_slices=9)
    assert {f.suffix for f in files} == {".dcm", ".IMA", ""}
    assert sorted(files) != files  # name order is not slice order
    for index, file in enumerate(files):  # InstanceNumber disagrees with position: position wins
        _edit(file, InstanceNumber=100 - index)
    volume = read_series(tmp_path)
    np.testing.assert_array_equal(volume.hu, phantom_hu(9))
    assert [int(h.InstanceNumber) for h in volume.slice_headers] == list(range(100, 91, -1))


def test_oblique_series_geometry(tmp_path: Path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    make_ct_series(tmp_path, orientation=(1, 0, 0, 0, c, s))
    volume = read_series(tmp_path)
    np.testing.assert_allclose(volume.direction, [[1, 0, 0], [0, c, s], [0, -s, c]], atol=1e-9)
    assert volume.spacing[0] == pytest.approx(2.5, abs=1e-3)  # positions are stored with 4 decimals
    np.testing.assert_array_equal(volume.hu, phantom_hu())


def test_missing_positions_fall_back_to_instance_number(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path, with_positions=False)
    for index, file in enumerate(files):
        _edit(file, InstanceNumber=len(files) - index)  # reversed: slice 0 now comes last
    volume = read_series(tmp_path)
    np.testing.assert_array_equal(volume.hu, phantom_hu()[::-1])
    assert volume.spacing[0] == 2.5  # from SliceThickness
    assert volume.origin == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(volume.direction, np.eye(3))


def test_missing_positions_and_instance_numbers_is_an_error(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path, with_positions=False)
    _edit(files[2], InstanceNumber=None)
    with pytest.raises(InputError, match="cannot be ordered"):
        read_series(tmp_path)


def test_gap_in_series_warns_and_uses_median_spacing(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path, n_slices=6)
    files[3].unlink()
    with pytest.warns(UserWarning, match="slice gaps vary from 2.5 to 5 mm.*median 2.5 mm"):
        volume = read_series(tmp_path)
    assert volume.spacing[0] == pytest.approx(2.5)
    np.testing.assert_array_equal(volume.hu, phantom_hu(6)[[0, 1, 2, 4, 5]])


def test_non_dicom_files_are_skipped(series_dir: Path) -> None:
    (series_dir / "readme.txt").write_text("exported by a PACS\n")
    (series_dir / ".DS_Store").write_bytes(b"\x00\x01binary")
    dicomdir = Dataset()
    dicomdir.file_meta = FileMetaDataset()
    dicomdir.file_meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    dicomdir.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dicomdir.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dicomdir.FileSetID = "TEST"
    dicomdir.save_as(series_dir / "DICOMDIR", enforce_file_format=True)
    (series_dir / "sub").mkdir()
    np.testing.assert_array_equal(read_series(series_dir).hu, phantom_hu())


def test_raw_dataset_without_preamble_is_read(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path, n_slices=3, implicit_vr=True)
    for file in files:
        raw = Dataset()
        raw.update(pydicom.dcmread(file))  # no preamble, no file meta: an old-style raw dataset
        pydicom.dcmwrite(file, raw, implicit_vr=True, little_endian=True)
        assert file.read_bytes()[:2] == b"\x08\x00"
    np.testing.assert_array_equal(read_series(tmp_path).hu, phantom_hu(3))


def test_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here\n")
    with pytest.raises(InputError, match="no DICOM image files among 1 files"):
        read_series(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        read_series(tmp_path / "readme.txt")


def test_two_series_listed_and_chosen_by_uid(tmp_path: Path) -> None:
    first, second = generate_uid(), generate_uid()
    make_ct_series(tmp_path, n_slices=4, series_uid=first, series_description="Abdomen 1mm", seed=1)
    make_ct_series(tmp_path, n_slices=3, series_uid=second, series_description="Abdomen 3mm", seed=2)
    with pytest.raises(InputError) as error:
        read_series(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "2 series found" in message and "pass series_uid" in message
    assert f"{first} CT 'Abdomen 1mm' (4 slices)" in message
    assert f"{second} CT 'Abdomen 3mm' (3 slices)" in message
    assert read_series(tmp_path, series_uid=first).shape == (4, 64, 64)
    assert read_series(tmp_path, series_uid=second).shape == (3, 64, 64)
    with pytest.raises(InputError, match="no series with SeriesInstanceUID 1.2.3"):
        read_series(tmp_path, series_uid="1.2.3")


@pytest.mark.parametrize(
    ("keyword", "shown"),
    [("RescaleSlope", "RescaleSlope (0028,1053)"), ("PixelSpacing", "PixelSpacing (0028,0030)")],
)
def test_missing_required_tag(tmp_path: Path, keyword: str, shown: str) -> None:
    files = make_ct_series(tmp_path)
    _edit(files[3], **{keyword: None})
    with pytest.raises(InputError, match=f"{files[3]}: missing tag {shown.replace('(', '.').replace(')', '.')}"):
        read_series(tmp_path)


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.999])
def test_truncated_file_is_called_truncated(tmp_path: Path, keep: float) -> None:
    files = make_ct_series(tmp_path)
    data = files[2].read_bytes()
    header_end = data.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data
    cut = int(header_end * keep) if keep < 0.5 else header_end + int((len(data) - header_end) * keep)
    files[2].write_bytes(data[:cut])
    with pytest.raises(InputError, match=f"{files[2]}: .*truncated") as info:
        read_series(tmp_path)
    assert "\n" not in str(info.value)


def test_non_ct_refused_unless_allowed(tmp_path: Path) -> None:
    make_ct_series(tmp_path, modality="MR", series_description="T1")
    with pytest.raises(InputError, match="no CT series.*MR 'T1'.*allow_non_ct=True"):
        read_series(tmp_path)
    np.testing.assert_array_equal(read_series(tmp_path, allow_non_ct=True).hu, phantom_hu())


def test_non_ct_series_chosen_by_uid_still_refused(tmp_path: Path) -> None:
    uid = generate_uid()
    make_ct_series(tmp_path, modality="MR", series_uid=uid)
    with pytest.raises(InputError, match="Modality is MR, not CT"):
        read_series(tmp_path, series_uid=uid)


@pytest.mark.parametrize("damage", ["truncated-pixels", "garbage-header"])
def test_corrupt_file(tmp_path: Path, damage: str) -> None:
    files = make_ct_series(tmp_path)
    data = files[2].read_bytes()
    if damage == "truncated-pixels":
        files[2].write_bytes(data[:-1000])
    else:
        files[2].write_bytes(data[:132] + bytes(range(256)) * 8)  # keeps the DICM prefix
    with pytest.raises(InputError, match=str(files[2])):
        read_series(tmp_path)


@pytest.mark.parametrize("implicit_vr", [False, True])
def test_pixel_padding_value_becomes_air(tmp_path: Path, implicit_vr: bool) -> None:
    hu = phantom_hu()
    hu[:, :, :5] = -3024.0  # stored -2000 with intercept -1024
    make_ct_series(tmp_path, hu=hu, pixel_padding_value=-2000, implicit_vr=implicit_vr)
    volume = read_series(tmp_path)
    expected = hu.copy()
    expected[:, :, :5] = AIR_HU
    np.testing.assert_array_equal(volume.hu, expected)


def test_pixel_padding_range_limit(tmp_path: Path) -> None:
    hu = phantom_hu()
    hu[:, :, :2] = -3024.0  # stored -2000
    hu[:, :, 2:4] = -2524.0  # stored -1500, inside [-2000, -1500]
    files = make_ct_series(tmp_path, hu=hu, pixel_padding_value=-2000)
    for file in files:
        ds = pydicom.dcmread(file)
        ds.add_new(0x00280121, "SS", -1500)  # PixelPaddingRangeLimit
        ds.save_as(file)
    assert np.all(read_series(tmp_path).hu[:, :, :4] == AIR_HU)


@pytest.mark.parametrize(("manufacturer", "outside_hu"), [("SIEMENS", AIR_HU), ("OTHERVENDOR", -3024.0)])
def test_siemens_minus_2000_without_padding_tag(tmp_path: Path, manufacturer: str, outside_hu: float) -> None:
    hu = phantom_hu()
    hu[:, -3:, :] = -3024.0  # stored -2000, no PixelPaddingValue
    make_ct_series(tmp_path, hu=hu, manufacturer=manufacturer)
    volume = read_series(tmp_path)
    assert np.all(volume.hu[:, -3:, :] == outside_hu)
    np.testing.assert_array_equal(volume.hu[:, :-3, :], hu[:, :-3, :])


def test_inconsistent_pixel_spacing_names_file(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path)
    _edit(files[4], PixelSpacing=[0.9, 0.9])
    with pytest.raises(InputError, match=f"{files[4]}: PixelSpacing"):
        read_series(tmp_path)


def test_inconsistent_orientation_names_file(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path)
    _edit(files[1], ImageOrientationPatient=[0, 1, 0, 1, 0, 0])
    with pytest.raises(InputError, match=f"{files[1]}: ImageOrientationPatient"):
        read_series(tmp_path)


def test_duplicate_position_is_an_error(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path)
    copy = tmp_path / "copy.dcm"
    shutil.copy(files[2], copy)
    _edit(copy, SOPInstanceUID=generate_uid())
    with pytest.raises(InputError, match="same position along the slice normal.*duplicate"):
        read_series(tmp_path)


def test_multi_frame_refused(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path)
    _edit(files[0], NumberOfFrames=6)
    with pytest.raises(InputError, match="multi-frame"):
        read_series(tmp_path)


def test_real_slice_series_compressed_matches_uncompressed(
    tmp_path: Path, real_series_dir: Path, real_j2k: Path
) -> None:
    j2k_dir = tmp_path / "j2k"
    j2k_dir.mkdir()
    shutil.copy(real_j2k, j2k_dir / "slice.dcm")
    plain, compressed = read_series(real_series_dir), read_series(j2k_dir)
    assert plain.shape == (1, 512, 512)
    assert plain.spacing == pytest.approx((20.0, 0.478516, 0.478516))  # one slice: SpacingBetweenSlices
    assert plain.origin == pytest.approx((-122.5, -112.4, 47.0))
    np.testing.assert_array_equal(compressed.hu, plain.hu)
    assert plain.hu.min() == AIR_HU and plain.hu.max() == 2492 - 1024


# --- writing ---------------------------------------------------------------------------------------------------


WRITE_VARIANTS = {
    "signed": {},
    "unsigned-12bit": {"signed": False, "bits_stored": 12},
    "slope-0.5": {"slope": 0.5},
    "implicit-vr-input": {"implicit_vr": True},
    "j2k-input": {"compress": "j2k"},
}


@pytest.mark.parametrize("variant", WRITE_VARIANTS)
def test_write_round_trip_within_half_slope(tmp_path: Path, variant: str) -> None:
    options = WRITE_VARIANTS[variant]
    make_ct_series(tmp_path / "in", **options)
    volume = read_series(tmp_path / "in")
    rng = np.random.default_rng(0)
    denoised = volume.hu + rng.uniform(-30, 30, volume.shape).astype(np.float32)
    out = write_dicom_series(volume, denoised, tmp_path / "out")
    assert out == tmp_path / "out"
    again = read_series(out)
    slope, bits, signed = options.get("slope", 1.0), options.get("bits_stored", 16), options.get("signed", True)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    expected = np.clip(denoised, low * slope - 1024, high * slope - 1024)  # clipped to the stored range
    assert np.abs(again.hu - expected).max() <= slope / 2 + 1e-3
    assert again.spacing == pytest.approx(volume.spacing)
    assert again.origin == pytest.approx(volume.origin)
    for file in sorted(out.iterdir()):
        ds = pydicom.dcmread(file)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert not ds["PixelData"].is_undefined_length  # not encapsulated


def test_write_identity_tags(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "in", signed=False, bits_stored=12, slope=0.5)
    volume = read_series(tmp_path / "in")
    out = write_dicom_series(volume, volume.hu, tmp_path / "out", derivation="CLIPDenoising RN50 ckpt-40k")
    written = [pydicom.dcmread(f) for f in sorted(out.iterdir())]
    sources = volume.slice_headers
    assert sources is not None and len(written) == len(sources)
    series_uids = {ds.SeriesInstanceUID for ds in written}
    assert len(series_uids) == 1 and series_uids.isdisjoint({s.SeriesInstanceUID for s in sources})
    sop_uids = [ds.SOPInstanceUID for ds in written]
    assert len(set(sop_uids)) == len(sop_uids)
    assert set(sop_uids).isdisjoint({s.SOPInstanceUID for s in sources})
    for ds, source in zip(written, sources):
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == source.SOPClassUID
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName",
                        "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                        "RescaleSlope", "RescaleIntercept", "PixelRepresentation", "BitsStored",
                        "BitsAllocated", "InstanceNumber"):
            assert ds[keyword].value == source[keyword].value, keyword
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert ds.SeriesDescription == "Test abdomen 2.5mm [denoised]"
        assert ds.DerivationDescription == "CLIPDenoising RN50 ckpt-40k"
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert ds.HighBit == 11
    np.testing.assert_array_equal(read_series(out).hu, volume.hu)
    reference = tmp_path / "made-by-mkdir"
    reference.mkdir()
    assert out.stat().st_mode == reference.stat().st_mode  # usual permissions, not a private temp folder


def test_write_clips_to_stored_range(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "in", signed=False, bits_stored=12)
    volume = read_series(tmp_path / "in")
    hu = np.full(volume.shape, 5000.0, dtype=np.float32)
    hu[:, :, :10] = -3000.0
    again = read_series(write_dicom_series(volume, hu, tmp_path / "out"))
    assert np.all(again.hu[:, :, 10:] == 4095 - 1024)
    assert np.all(again.hu[:, :, :10] == -1024)


def test_write_real_slice(tmp_path: Path, real_series_dir: Path) -> None:
    volume = read_series(real_series_dir)
    again = read_series(write_dicom_series(volume, volume.hu, tmp_path / "out"))
    np.testing.assert_array_equal(again.hu, volume.hu)
    header = again.slice_headers[0]
    assert "PixelPaddingValue" not in header  # padding is air now
    assert header.SeriesDescription == "5/5mm Plain [denoised]"


def test_inputs_untouched(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "in", compress="rle")
    before = _hashes(tmp_path / "in")
    volume = read_series(tmp_path / "in")
    sop_uids = [h.SOPInstanceUID for h in volume.slice_headers]
    hu = volume.hu.copy()
    write_dicom_series(volume, volume.hu + 5, tmp_path / "out")
    assert _hashes(tmp_path / "in") == before
    assert [h.SOPInstanceUID for h in volume.slice_headers] == sop_uids
    assert all("PixelData" not in h for h in volume.slice_headers)
    np.testing.assert_array_equal(volume.hu, hu)


def test_existing_output_refused_then_replaced(tmp_path: Path, series_dir: Path) -> None:
    volume = read_series(series_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    with pytest.raises(InputError, match="already exists.*overwrite=True"):
        write_dicom_series(volume, volume.hu, out)
    assert (out / "old.txt").exists()
    write_dicom_series(volume, volume.hu, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [f"IM{i:05d}.dcm" for i in range(1, 7)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "series"]  # no temp or old folders left


@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_no_partial_output(
    tmp_path: Path, series_dir: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    volume = read_series(series_dir)
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "keep.txt").write_text("previous run")
    real_write = pydicom.dcmwrite
    calls = []

    def failing_write(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        real_write(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmwrite", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_series(volume, volume.hu, out, overwrite=True)
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out", "series"] if existing else ["series"])
    if existing:
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_write_needs_dicom_headers(tmp_path: Path) -> None:
    volume = CTVolume(np.zeros((2, 4, 4), np.float32), (1, 1, 1), (0, 0, 0), np.eye(3), None, tmp_path / "a.nii")
    with pytest.raises(InputError, match="no DICOM headers.*write_nifti"):
        write_dicom_series(volume, volume.hu, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_write_rejects_bad_hu(tmp_path: Path, series_dir: Path) -> None:
    volume = read_series(series_dir)
    with pytest.raises(InputError, match="shape"):
        write_dicom_series(volume, volume.hu[:-1], tmp_path / "out")
    bad = volume.hu.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_dicom_series(volume, bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- corrupt headers and values (issue 12: adversarial inputs) ------------------------------------------------


@pytest.mark.parametrize("compress", [None, "rle"])
def test_huge_declared_size_refused_before_allocating(tmp_path: Path, compress: str | None) -> None:
    """Rows = Columns = 65535 over 64x64 pixel data: refused naming the file, without allocating 48 GiB."""
    import tracemalloc

    files = make_ct_series(tmp_path, n_slices=3, compress=compress)
    for file in files:
        _edit(file, Rows=65535, Columns=65535)
    held = len(pydicom.dcmread(files[0]).PixelData)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=rf"declares 65535x65535 pixels.* but holds {held} bytes") as info:
            read_series(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value) and "corrupt" in str(info.value)
    assert any(str(f) in str(info.value) for f in files)
    assert peak < 50e6  # not even one slice of the declared size
    with pytest.raises(InputError, match="declares 65535x65535 pixels"):
        read_slice_hu(files[0])


def test_compressed_size_mismatch_below_the_limit_is_refused(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path, n_slices=3, compress="rle")
    for file in files:
        _edit(file, Rows=2000, Columns=2000)
    with pytest.raises(InputError, match="cannot decode pixel data") as info:
        read_series(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("slope", "intercept"), [(1e38, 0.0), (1e30, -1024.0), (1.0, 1e7)])
def test_rescale_overflowing_hu_is_refused(tmp_path: Path, slope: float, intercept: float) -> None:
    """RescaleSlope 1e38 makes HU overflow float32 to inf (and 1e30 far beyond any CT): named, not passed on."""
    files = make_ct_series(tmp_path, n_slices=3)
    _edit(files[1], RescaleSlope=slope, RescaleIntercept=intercept)
    expected = re.escape(f"{files[1]}: RescaleSlope {slope:g} / RescaleIntercept {intercept:g} give HU")
    with pytest.raises(InputError, match=f"{expected}.*corrupt") as info:
        read_series(tmp_path)
    assert "\n" not in str(info.value)


def test_non_ct_refusal_speaks_to_api_and_cli_users(tmp_path: Path) -> None:
    uid = generate_uid()
    make_ct_series(tmp_path, modality="MR", series_uid=uid)
    for call in (lambda: read_series(tmp_path), lambda: read_series(tmp_path, series_uid=uid)):
        with pytest.raises(InputError) as info:
            call()
        message = str(info.value)
        assert "this toolkit denoises CT" in message and "(API: read_series(..., allow_non_ct=True)" in message
        assert "pass allow_non_ct" not in message  # no CLI flag has that name


def test_is_dicom_file(tmp_path: Path, real_uncompressed: Path) -> None:
    from ldct_clip.io import is_dicom_file

    preamble = make_ct_series(tmp_path / "a", n_slices=1)[0]
    raw = tmp_path / "raw"
    dataset = Dataset()
    dataset.update(pydicom.dcmread(preamble))
    pydicom.dcmwrite(raw, dataset, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(preamble.read_bytes()[:132] + bytes(range(256)) * 4)
    text = tmp_path / "readme.txt"
    text.write_text("not dicom\n")
    starts_like_dicom = tmp_path / "binary"
    starts_like_dicom.write_bytes(b"\x08\x00" + bytes(200))
    dicomdir = tmp_path / "DICOMDIR"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(dicomdir, enforce_file_format=True)
    assert raw.read_bytes()[:2] == b"\x08\x00"
    assert [is_dicom_file(p) for p in (preamble, raw, corrupt, real_uncompressed)] == [True] * 4
    assert [is_dicom_file(p) for p in (text, starts_like_dicom, dicomdir, tmp_path, tmp_path / "missing")] == [
        False
    ] * 5
    assert is_dicom_file(str(raw))
