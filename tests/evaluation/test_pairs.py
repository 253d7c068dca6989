"""Series pairs: each slice's own position decides, and two series on different grids are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_factory import make_ct_series
from pydicom import dcmread

from ldct_clip import read_series, write_nifti
from ldct_clip.errors import InputError
from ldct_clip.evaluation import pairs_from_series, slice_positions
from ldct_clip.io.volume import CTVolume


def move_slices(files: list[Path], z_mm: dict[int, float]) -> None:
    """Rewrite ImagePositionPatient z of the slices given by index (the factory returns files in slice order)."""
    for index, z in z_mm.items():
        ds = dcmread(files[index])
        x, y, _ = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z]
        ds.save_as(files[index])


def gapped_pair(root: Path) -> tuple[Path, Path]:
    """``low`` at z = 0, 2, 8, 10 mm and ``full`` at 0, 2, 4, 6 mm: equal counts, different positions."""
    low, full = root / "low", root / "full"
    move_slices(make_ct_series(low, 4, 32, 32, spacing=(2.0, 0.7, 0.7), origin=(-24.0, -24.0, 0.0)), {2: 8.0, 3: 10.0})
    make_ct_series(full, 4, 32, 32, spacing=(2.0, 0.7, 0.7), origin=(-24.0, -24.0, 0.0))
    return low, full


@pytest.mark.filterwarnings("ignore:.*slice gaps vary")
def test_a_gap_in_one_series_is_found_although_the_counts_agree(tmp_path: Path) -> None:
    low, full = gapped_pair(tmp_path)
    volume = read_series(low)
    assert slice_positions(volume).tolist() == [0.0, 2.0, 8.0, 10.0]  # each slice's own position
    message = r"slice 2 lies at 8.00 mm but slice 2 of .*full at 4.00 mm \(2 slices"
    with pytest.raises(InputError, match=message) as info:
        pairs_from_series(low, full)
    assert "\n" not in str(info.value)


@pytest.mark.filterwarnings("ignore:.*slice gaps vary")
def test_positions_come_from_each_header_when_the_volume_has_none(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "s", 3, 32, 32, spacing=(2.0, 0.7, 0.7), origin=(0.0, 0.0, 0.0))
    move_slices(files, {2: 7.0})
    volume = read_series(tmp_path / "s")
    without = CTVolume(volume.hu, volume.spacing, volume.origin, volume.direction, volume.slice_headers,
                       volume.source)
    without.positions = None  # as a reader that records no per-slice positions
    assert slice_positions(without).tolist() == [0.0, 2.0, 7.0]
    grid = CTVolume(volume.hu, (2.0, 0.7, 0.7), (0.0, 0.0, 5.0), np.eye(3), None, "x.nii")
    grid.positions = None
    assert slice_positions(grid).tolist() == [5.0, 7.0, 9.0]  # NIfTI: origin + i * spacing * normal


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"spacing": (1.0, 0.5, 0.5)}, r"pixel spacing 0.5x0.5 mm but .* has 1x1 mm"),
        ({"spacing": (1.0, 1.0, 1.0), "origin": (-20.0, -24.0, 100.0)}, r"first pixel lies at \(-20.00, -24.00\)"),
        ({"spacing": (1.0, 1.0, 1.0), "orientation": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)}, "slice orientation"),
    ],
)
def test_another_in_plane_grid_is_refused(tmp_path: Path, other: dict[str, object], message: str) -> None:
    make_ct_series(tmp_path / "full", 3, 32, 32, spacing=(1.0, 1.0, 1.0), origin=(-24.0, -24.0, 100.0))
    make_ct_series(tmp_path / "low", 3, 32, 32, **{"origin": (-24.0, -24.0, 100.0), **other})  # type: ignore[arg-type]
    with pytest.raises(InputError, match=message) as info:
        pairs_from_series(tmp_path / "low", tmp_path / "full")
    assert "\n" not in str(info.value) and "same grid" in str(info.value)


def test_a_nifti_on_another_grid_is_refused_and_on_the_same_grid_accepted(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "full", 3, 32, 32, spacing=(1.0, 1.0, 1.0), origin=(-24.0, -24.0, 100.0))
    dicom = read_series(tmp_path / "full")
    fine = CTVolume(dicom.hu, (1.0, 0.7, 0.7), dicom.origin, dicom.direction, None, "x")
    write_nifti(fine, fine.hu, tmp_path / "fine.nii.gz")
    with pytest.raises(InputError, match=r"fine.nii.gz: pixel spacing 0.7x0.7 mm but .*full has 1x1 mm"):
        pairs_from_series(tmp_path / "fine.nii.gz", tmp_path / "full")
    write_nifti(dicom, dicom.hu, tmp_path / "same.nii.gz")
    pairs = pairs_from_series(tmp_path / "same.nii.gz", tmp_path / "full")
    assert [s.position_mm for s in pairs.slices] == [100.0, 101.0, 102.0]
    assert pairs.sources == (str(tmp_path / "same.nii.gz"), str(tmp_path / "full"))
