"""pipelines/simulate_low_dose.py: writes a Mayo pair, reports the round trip, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from dicom_factory import make_ct_series
from pipeline_scripts import load_pipeline

from ldct_clip.cli import EXIT_USER_ERROR, run_cli
from ldct_clip.data.mayo import scan_mayo
from ldct_clip.simulate import FULL_DOSE_FOLDER, LOW_DOSE_FOLDER, RECORD_NAME


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_pipeline("simulate_low_dose")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("normal_dose")
    y, x = np.mgrid[:48, :48]
    hu = np.where(np.hypot(y - 23.5, x - 23.5) < 20, 0.0, -1000.0)
    make_ct_series(folder, 2, 48, 48, hu=np.repeat(hu[None], 2, axis=0), spacing=(1.0, 0.7, 0.7))
    return folder


def test_writes_mayo_pair_and_reports(script: ModuleType, series: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mayo"
    args = ["--input", str(series), "--output", str(out), "--patient", "L900", "--dose", "0.1", "--workers", "1"]
    assert run_cli(script.main, args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"normal dose: {out / 'L900' / FULL_DOSE_FOLDER}"
    assert lines[1] == f"simulated 10% dose: {out / 'L900' / LOW_DOSE_FOLDER}"
    record = json.loads((out / "L900" / RECORD_NAME).read_text())
    assert lines[2].startswith(f"projector round-trip error: {record['roundtrip_rms_hu']:.1f} HU RMS")
    assert record["dose"] == 0.1 and record["photons"] == 1e5 and record["electronic_noise"] == 10.0
    manifest = scan_mayo(out, workers=2)
    assert manifest.patients == ("L900",) and len(manifest.pairs()) == 2


def test_projector_options_and_folders_named_by_slice_spacing(script: ModuleType, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A 2.5 mm series is filed as 2.5 mm, so the Mayo scan does not mistake it for 1 mm data."""
    y, x = np.mgrid[:48, :48]
    hu = np.where(np.hypot(y - 23.5, x - 23.5) < 20, 40.0, -1000.0)
    thick = tmp_path / "thick"
    make_ct_series(thick, 3, 48, 48, hu=np.repeat(hu[None], 3, axis=0), spacing=(2.5, 0.7, 0.7))
    out = tmp_path / "mayo"
    args = ["--input", str(thick), "--output", str(out), "--filter", "hann", "--views", "60",
            "--roundtrip-slices", "1", "--workers", "1"]
    assert run_cli(script.main, args) == 0
    record = json.loads((out / "SIM001" / RECORD_NAME).read_text())
    assert (record["filter"], record["views"], record["roundtrip_slices"]) == ("hann", 60, [0])
    assert sorted(p.name for p in (out / "SIM001").iterdir()) == ["full_2.5mm", "quarter_2.5mm", RECORD_NAME]
    assert capsys.readouterr().out.splitlines()[0] == f"normal dose: {out / 'SIM001' / 'full_2.5mm'}"
    manifest = scan_mayo(out, workers=1)
    assert {row.thickness_mm for row in manifest.select()} == {2.5} and len(manifest.pairs()) == 3


def test_photons_set_the_dose(script: ModuleType, series: Path, tmp_path: Path) -> None:
    args = ["--input", str(series), "--output", str(tmp_path), "--photons", "5000", "--full-dose-photons", "2e4",
            "--electronic-noise", "0", "--seed", "4", "--workers", "1"]
    assert run_cli(script.main, args) == 0
    record = json.loads((tmp_path / "SIM001" / RECORD_NAME).read_text())
    assert (record["dose"], record["photons"], record["electronic_noise"], record["seed"]) == (0.25, 2e4, 0.0, 4)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dose", "1.5"], "error: dose=1.5: must be a fraction of the normal dose in (0, 1]"),
        (["--photons", "2e5"], "error: --photons 200000: must be in (0, --full-dose-photons 100000]"),
        (["--patient", "a/b"], "error: patient='a/b': not a usable folder name"),
    ],
)
def test_bad_arguments_print_one_line(script: ModuleType, series: Path, tmp_path: Path, extra: list[str],
                                      message: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--input", str(series), "--output", str(tmp_path / "out"), *extra]
    assert run_cli(script.main, args) == EXIT_USER_ERROR
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1 and not captured.out
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(script: ModuleType, series: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--input", str(series), "--output", str(tmp_path), "--workers", "1"]
    assert run_cli(script.main, args) == 0
    capsys.readouterr()
    assert run_cli(script.main, args) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "already exists" in err and err.count("\n") == 1
    assert run_cli(script.main, [*args, "--overwrite"]) == 0


def test_missing_input_prints_one_line(script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(script.main, ["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and err.count("\n") == 1


def _digests(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_input_inside_the_patient_folder_is_refused_even_with_overwrite(
        script: ModuleType, series: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12: --input R/SIM001/full_1mm --output R --patient SIM001 --overwrite replaced its own input."""
    root = tmp_path / "R"
    assert run_cli(script.main, ["--input", str(series), "--output", str(root), "--workers", "1",
                                 "--roundtrip-slices", "1"]) == 0
    before = _digests(root)
    capsys.readouterr()
    inside = root / "SIM001" / FULL_DOSE_FOLDER
    for patient_arg in (["--patient", "SIM001"], []):
        args = ["--input", str(inside), "--output", str(root), *patient_arg, "--overwrite", "--workers", "1"]
        assert run_cli(script.main, args) == EXIT_USER_ERROR
        err = capsys.readouterr().err
        assert "inside the patient folder" in err and str(inside) in err and err.count("\n") == 1
    assert _digests(root) == before  # nothing replaced, nothing staged
    assert sorted(p.name for p in root.iterdir()) == ["SIM001"]
    # the same series used as input for another patient is fine: it lies outside SIM002
    assert run_cli(script.main, ["--input", str(inside), "--output", str(root), "--patient", "SIM002",
                                 "--workers", "1", "--roundtrip-slices", "1"]) == 0
    assert _digests(root / "SIM001") == {k.split("/", 1)[1]: v for k, v in before.items()}


@pytest.mark.parametrize("where", ["proc", "file"])
def test_an_unwritable_output_fails_at_once_with_one_line(script: ModuleType, series: Path, tmp_path: Path,
                                                          where: str, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: --output /proc/x and --output some_file/out failed only after the whole series was computed."""
    if where == "file":
        (tmp_path / "some_file").write_text("not a folder")
        output = tmp_path / "some_file" / "out"
    else:
        output = Path("/proc/ldct_clip_test/out")
    import ldct_clip.simulate.series as simulate  # where simulate_series looks both names up

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed before checking the output")

    monkeypatch.setattr(simulate, "simulate_low_dose", must_not_run)
    monkeypatch.setattr(simulate, "_roundtrip_rms", must_not_run)
    assert run_cli(script.main, ["--input", str(series), "--output", str(output), "--workers", "1"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: {output}: cannot create the output folder") and err.count("\n") == 1
    assert (tmp_path / "some_file").is_file() or where == "proc"


def test_geometry_projector_and_batch_options(script: ModuleType, series: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--input", str(series), "--output", str(tmp_path), "--geometry", "fan", "--projector", "torch",
            "--views", "96", "--batch-size", "2", "--roundtrip-slices", "1", "--workers", "1"]
    assert run_cli(script.main, args) == 0
    record = json.loads((tmp_path / "SIM001" / RECORD_NAME).read_text())
    assert (record["geometry"], record["projector"], record["views"]) == ("fan", "torch", 96)
    assert "96 fan-beam views, torch projector" in capsys.readouterr().out
    bad = ["--input", str(series), "--output", str(tmp_path / "x"), "--geometry", "fan", "--projector", "skimage"]
    assert run_cli(script.main, bad) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "projector='skimage': parallel beam only" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
