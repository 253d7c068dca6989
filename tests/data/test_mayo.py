"""Mayo discovery: folder-name rules, pairing by position (not file order), mismatch counts, manifest CSV."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import make_ct_series, phantom_hu

from ldct_clip.data.mayo import (
    COLUMNS,
    MANIFEST_MAGIC,
    PAIR_TOLERANCE_FRACTION,
    FolderLabels,
    Manifest,
    folder_labels,
    scan_mayo,
)
from ldct_clip.errors import InputError
from ldct_clip.io.dicom import read_slice_hu

SIZE = 32
QUARTER_OFFSET = 7.0  # quarter-dose slice = full-dose slice + 7 HU, so a wrong pairing shows in the pixels


def _series(folder: Path, hu: np.ndarray, z0: float, thickness: float, seed: int, patient_id: str = "anon") -> None:
    make_ct_series(
        folder, len(hu), SIZE, SIZE, hu=hu, spacing=(thickness, 0.7, 0.7), origin=(-11.0, -11.0, z0),
        patient_id=patient_id, seed=seed,
    )


def build_mayo_tree(root: Path) -> None:
    """Three patients in three layouts, with unpaired slices, two kernels, junk files."""
    full = phantom_hu(4, SIZE, SIZE)
    # L067: the challenge layout; quarter positions 0.04 mm off (within tolerance), other random names
    _series(root / "L067" / "full_1mm", full, 100.0, 1.0, seed=1)
    _series(root / "L067" / "quarter_1mm", full + QUARTER_OFFSET, 100.04, 1.0, seed=2)
    _series(root / "L067" / "full_3mm", full[:3], 100.0, 3.0, seed=3)
    _series(root / "L067" / "quarter_3mm", full[1:3] + QUARTER_OFFSET, 103.0, 3.0, seed=4)  # z=100 has no quarter
    # L096: older download, two kernels; B30 has one extra quarter slice below the full-dose range
    _series(root / "L096" / "1mm B30" / "FD_1mm", full[:3], 50.0, 1.0, seed=5)
    extra = np.concatenate([np.full((1, SIZE, SIZE), -1000.0, np.float32), full[:3] + QUARTER_OFFSET])
    _series(root / "L096" / "1mm B30" / "QD_1mm", extra, 49.0, 1.0, seed=6)
    _series(root / "L096" / "1mm D45" / "FD_1mm", full[:2] - 100, 50.0, 1.0, seed=7)
    _series(root / "L096" / "1mm D45" / "QD_1mm", full[:2] - 100 + QUARTER_OFFSET, 50.0, 1.0, seed=8)
    # no L### folder: the patient comes from the DICOM PatientID
    _series(root / "case3" / "full_1mm", full[:2], 0.0, 1.0, seed=9, patient_id="L143")
    _series(root / "case3" / "quarter_1mm", full[:2] + QUARTER_OFFSET, 0.0, 1.0, seed=10, patient_id="L143")
    (root / "L067" / "full_1mm" / "README.txt").write_text("not a slice")
    (root / "L067" / "full_1mm" / ".DS_Store").write_bytes(b"\0")
    (root / "docs").mkdir()
    (root / "docs" / "notes.txt").write_text("outside dose folders: never read")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mayo")
    build_mayo_tree(root)
    return root


@pytest.fixture(scope="module")
def manifest(tree: Path) -> Manifest:
    return scan_mayo(tree, workers=4)


def test_patients_doses_and_thicknesses(manifest: Manifest, tree: Path) -> None:
    assert manifest.root == tree.resolve()
    assert manifest.patients == ("L067", "L096", "L143")
    assert len(manifest.select(["L067"], "full", 1.0)) == 4
    assert len(manifest.select(["L067"], "quarter", 3.0)) == 2
    assert len(manifest.select(["L096"], "quarter", 1.0, "B30")) == 4
    assert len(manifest.select(["L096"], "full", 1.0, "D45")) == 2
    assert len(manifest) == 4 + 4 + 3 + 2 + 3 + 4 + 2 + 2 + 2 + 2
    assert {row.kernel for row in manifest.select(["L067"])} == {""}
    for row in manifest.rows:
        assert not Path(row.path).is_absolute() and (tree / row.path).is_file()
        assert (row.rows, row.columns) == (SIZE, SIZE)


def test_pairs_match_by_position_not_file_order(manifest: Manifest) -> None:
    pairs = manifest.pairs()
    assert len(pairs) == 4 + 2 + 3 + 2 + 2
    for quarter, full in pairs:
        assert (quarter.dose, full.dose) == ("quarter", "full")
        assert (quarter.patient, quarter.thickness_mm, quarter.kernel) == (full.patient, full.thickness_mm, full.kernel)
        assert abs(quarter.z - full.z) <= PAIR_TOLERANCE_FRACTION * full.thickness_mm
        difference = read_slice_hu(manifest.absolute(quarter)) - read_slice_hu(manifest.absolute(full))
        np.testing.assert_array_equal(difference, QUARTER_OFFSET)
    zs = [full.z for _, full in manifest.pairs(["L067"], 1.0)]
    assert zs == sorted(zs) == [100.0, 101.0, 102.0, 103.0]


def test_mismatches_are_counted(manifest: Manifest) -> None:
    summary = {(g.patient, g.thickness_mm, g.kernel): g for g in manifest.pairing_summary()}
    counts = {key: (g.paired, g.quarter_unpaired, g.full_unpaired) for key, g in summary.items()}
    assert counts == {
        ("L067", 1.0, ""): (4, 0, 0),
        ("L067", 3.0, ""): (2, 0, 1),
        ("L096", 1.0, "B30"): (3, 1, 0),
        ("L096", 1.0, "D45"): (2, 0, 0),
        ("L143", 1.0, ""): (2, 0, 0),
    }
    unpaired = [row for row in manifest.rows if not row.pair]
    assert sorted((r.patient, r.dose, r.z) for r in unpaired) == [("L067", "full", 100.0), ("L096", "quarter", 49.0)]


def test_mismatches_are_logged(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ldct_clip.data.mayo"):
        scan_mayo(tree, workers=1)
    assert "L096 1 mm B30: 1 quarter-dose slice(s) without a full-dose partner, 0 full-dose" in caplog.text
    assert "L067 3 mm: 0 quarter-dose slice(s) without a full-dose partner, 1 full-dose" in caplog.text
    assert "skipped 1 of" in caplog.text


def test_unusable_files_are_skipped_and_listed(manifest: Manifest) -> None:
    assert len(manifest.skipped) == 1
    assert manifest.skipped[0].startswith("L067/full_1mm/README.txt: ")
    assert not any("notes.txt" in row.path or ".DS_Store" in row.path for row in manifest.rows)


def test_worker_count_does_not_change_the_result(manifest: Manifest, tree: Path) -> None:
    assert scan_mayo(tree, workers=1).rows == manifest.rows


def test_save_load_round_trip(manifest: Manifest, tree: Path, tmp_path: Path) -> None:
    before = _snapshot(tree)
    path = manifest.save(tmp_path / "out" / "manifest.csv")
    assert _snapshot(tree) == before  # the data root is never written to
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.csv"]  # no temporary file left
    lines = path.read_text().splitlines()
    assert lines[0] == f"{MANIFEST_MAGIC}{tree.resolve()}"
    assert lines[1] == ",".join(COLUMNS)
    loaded = Manifest.load(path)
    assert loaded.root == manifest.root and loaded.rows == manifest.rows
    assert loaded.pairing_summary() == manifest.pairing_summary()
    moved = Manifest.load(path, root=tmp_path / "moved")
    assert moved.absolute(moved.rows[0]) == tmp_path / "moved" / manifest.rows[0].path


def test_save_refuses_the_data_root(manifest: Manifest, tree: Path) -> None:
    with pytest.raises(InputError, match="inside the data root"):
        manifest.save(tree / "L067" / "manifest.csv")
    assert not (tree / "L067" / "manifest.csv").exists()


def test_load_errors(tmp_path: Path, manifest: Manifest) -> None:
    with pytest.raises(InputError, match="manifest not found"):
        Manifest.load(tmp_path / "missing.csv")
    (tmp_path / "plain.csv").write_text("patient,dose\nL067,full\n")
    with pytest.raises(InputError, match="not an ldct_clip manifest"):
        Manifest.load(tmp_path / "plain.csv")
    (tmp_path / "columns.csv").write_text(f"{MANIFEST_MAGIC}/data\npatient,dose\nL067,full\n")
    with pytest.raises(InputError, match="columns"):
        Manifest.load(tmp_path / "columns.csv")
    good = manifest.save(tmp_path / "good.csv").read_text().splitlines()
    bad_row = good[2].split(",")
    bad_row[COLUMNS.index("z")] = "high"
    (tmp_path / "row.csv").write_text("\n".join([*good[:2], ",".join(bad_row)]) + "\n")
    with pytest.raises(InputError, match="line 3: malformed"):
        Manifest.load(tmp_path / "row.csv")


def test_thickness_and_patient_from_headers(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "site" / "QD", 2, 16, 16, spacing=(2.5, 0.7, 0.7), patient_id="P7", seed=1)
    make_ct_series(tmp_path / "site" / "FD", 2, 16, 16, spacing=(2.5, 0.7, 0.7), patient_id="P7", seed=2)
    found = scan_mayo(tmp_path / "site")
    assert found.patients == ("P7",)
    assert {row.thickness_mm for row in found.rows} == {2.5}
    assert found.pairing_summary()[0].paired == 2


def test_scan_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        scan_mayo(tmp_path / "missing")
    with pytest.raises(InputError, match="no full/quarter-dose folders"):
        scan_mayo(tmp_path)
    make_ct_series(tmp_path / "L067" / "images", 1, 8, 8)
    with pytest.raises(InputError, match="no full/quarter-dose folders"):
        scan_mayo(tmp_path)
    (tmp_path / "L067" / "full_1mm").mkdir()
    (tmp_path / "L067" / "full_1mm" / "a.IMA").write_text("junk")
    with pytest.raises(InputError, match="no usable CT DICOM slices"):
        scan_mayo(tmp_path)
    with pytest.raises(InputError, match="workers"):
        scan_mayo(tmp_path, workers=0)


def test_slices_without_position_are_skipped(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "L067" / "full_1mm", 2, 8, 8, with_positions=False)
    make_ct_series(tmp_path / "L067" / "quarter_1mm", 2, 8, 8)
    found = scan_mayo(tmp_path)
    assert len(found) == 2 and len(found.skipped) == 2
    assert "cannot pair it by position" in found.skipped[0]


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("L067/full_1mm", FolderLabels("L067", "full", 1.0, "")),
        ("L067/quarter_3mm", FolderLabels("L067", "quarter", 3.0, "")),
        ("L096/1mm B30/FD_1mm", FolderLabels("L096", "full", 1.0, "B30")),
        ("L096/3mm D45/QD_3mm", FolderLabels("L096", "quarter", 3.0, "D45")),
        ("quarter/1.5mm/L310", FolderLabels("L310", "quarter", 1.5, "")),
        ("Full Dose Images/L506", FolderLabels("L506", "full", None, "")),
        ("L067/full_1mm/quarter_1mm", FolderLabels("L067", "quarter", 1.0, "")),  # the deepest folder wins
        ("L067", FolderLabels("L067", None, None, "")),
        ("fullness/L0677", FolderLabels(None, None, None, "")),
    ],
)
def test_folder_labels(relative: str, expected: FolderLabels) -> None:
    assert folder_labels(Path(relative)) == expected
