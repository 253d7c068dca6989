"""``python -m ldct_clip.evaluate``: a full report from a tiny Mayo tree or a series pair; bad input is one line."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ldct_clip import CLIPDenoiser, save_checkpoint
from ldct_clip.cli import run_cli
from ldct_clip.evaluate import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--device", "cpu", "--batch-size", "4"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(CLIPDenoiser(encoder_weights="random"), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def mayo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """L067 and L506 in the per-patient Mayo layout, three 48x48 slices per dose; plus a two-slice series."""
    from dicom_factory import make_ct_series, make_mayo_tree

    root = make_mayo_tree(tmp_path_factory.mktemp("mayo"), ("L067", "L506"), 3, 48)
    extra = tmp_path_factory.mktemp("series")
    make_ct_series(extra / "two_slices", 2, 48, 48, spacing=(1.0, 0.7, 0.7))
    make_ct_series(extra / "shifted", 3, 48, 48, spacing=(1.0, 0.7, 0.7), origin=(-24.0, -24.0, 140.0))
    return root


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_a_complete_report_from_a_mayo_tree(checkpoint: Path, mayo_root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before = _snapshot(mayo_root)
    out = tmp_path / "report"
    args = ["--checkpoint", str(checkpoint), "--data-root", str(mayo_root), "--preset", "clipdenoising", "redcnn",
            "--output", str(out), *QUICK]
    assert main([*args, "--baselines", "tv"]) == 0
    assert _snapshot(mayo_root) == before  # nothing written in the data root
    for name in ("report.md", "report.html", "metrics.csv", "summary.json", "manifest.csv"):
        assert (out / name).is_file(), name
    assert len(list((out / "figures").glob("slice_*.png"))) == 3
    printed = capsys.readouterr().out
    assert "preset clipdenoising (window [-1024, 3072] HU, data_range 4096, 3 slices)" in printed
    assert "preset redcnn (window [-160, 240] HU, data_range 400, 3 slices)" in printed
    assert f"report written to {out}" in printed and "randomly initialised" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patients"] == ["L506"] and summary["split"] == "clipdenoising"
    assert [m["key"] for m in summary["methods"]] == ["model", "low_dose", "tv"]
    assert summary["command"].startswith("python -m ldct_clip.evaluate --checkpoint")
    assert summary["model"]["label"] == "CLIPDenoising (tiny.safetensors) [random encoder]"

    # a second run reuses the manifest cached in the report folder instead of scanning again
    monkeypatch.setattr("ldct_clip.data.mayo.scan_mayo", lambda root: pytest.fail("scanned again"))
    assert main([*args, "--overwrite", "--preset", "noise2sim", "--no-baselines", "--max-slices", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["presets"]) == ["clipdenoising", "redcnn", "noise2sim"] and summary["slices"] == 2
    assert summary["published_comparable"] is False


def test_a_series_pair_with_given_rois(checkpoint: Path, mayo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pair"
    assert main(["--checkpoint", str(checkpoint), "--low", str(mayo_root / "L506" / "quarter_1mm"), "--full",
                 str(mayo_root / "L506" / "full_1mm"), "--output", str(out), "--roi", "1,10,10,8,8",
                 "--roi", "2,20,12,6,6", "--no-baselines", *QUICK]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slices"] == 3 and summary["patients"] == ["L506"] and summary["split"] is None
    assert {tuple(r["roi"]) for r in summary["hu_fidelity"]["rois"]} == {(1, 10, 10, 8, 8), (2, 20, 12, 6, 6)}
    assert not (out / "manifest.csv").exists()
    assert "ROIs as given" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "noise2sim"], "test patient(s) L333 not in the data"),
        (["--preset", "clipdenoising", "psnr"], "preset 'psnr': unknown for CT"),
        (["--low", "{series}/two_slices", "--full", "{root}/L506/full_1mm"], "2 slices but"),
        (["--low", "{series}/shifted", "--full", "{root}/L506/full_1mm"], "slice 0 lies at 140.00 mm"),
        (["--low", "{series}/shifted"], "either --data-root ROOT, or both --low"),
        (["--roi", "1,2,3"], "--roi '1,2,3': expected five integers"),
        (["--roi", "9,0,0,8,8"], "slice index 9 is outside 0..2"),
        (["--baselines", "nlm"], "baseline(s) nlm: unknown"),
    ],
)
def test_bad_input_is_one_line(checkpoint: Path, mayo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               extra: list[str], message: str) -> None:
    series = next(p for p in mayo_root.parent.iterdir() if (p / "two_slices").is_dir())
    extra = [arg.format(series=series, root=mayo_root) for arg in extra]
    data = [] if any(arg.startswith("--low") for arg in extra) else ["--data-root", str(mayo_root)]
    out = tmp_path / "report"
    code = run_cli(main, ["--checkpoint", str(checkpoint), *data, "--output", str(out), *extra, *QUICK])
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not out.exists()


def test_an_existing_report_needs_overwrite(checkpoint: Path, mayo_root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "report").mkdir()
    code = run_cli(main, ["--checkpoint", str(checkpoint), "--data-root", str(mayo_root), "--output",
                          str(tmp_path / "report")])
    assert code == 2 and "already exists; choose another --output or pass --overwrite" in capsys.readouterr().err
    code = run_cli(main, ["--checkpoint", str(checkpoint), "--data-root", str(mayo_root), "--output",
                          str(mayo_root / "report")])
    assert code == 2 and "outside the data folder" in capsys.readouterr().err


def test_the_module_runs_as_a_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "ldct_clip.evaluate", "--checkpoint", str(tmp_path / "none.pt"),
                             "--data-root", str(tmp_path), "--preset", "natural"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: preset 'natural': unknown for CT; use one or more of clipdenoising, redcnn, noise2sim"]


def test_several_checkpoints_and_labelled_methods_in_one_report(checkpoint: Path, mayo_root: Path,
                                                                tmp_path: Path) -> None:
    other = tmp_path / "other" / "second.safetensors"
    other.parent.mkdir()
    other.write_bytes(checkpoint.read_bytes())
    out = tmp_path / "report"
    assert main(["--method", "Mine=" + str(other), "--checkpoint", str(checkpoint), "--low",
                 str(mayo_root / "L506" / "quarter_1mm"), "--full", str(mayo_root / "L506" / "full_1mm"),
                 "--output", str(out), "--no-baselines", *QUICK]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(m["key"], m["label"]) for m in summary["methods"]] == [
        ("model", "Mine [random encoder]"), ("clipdenoising", "CLIPDenoising (tiny.safetensors) [random encoder]"),
        ("low_dose", "Low-dose input")]  # in command-line order; the first is the reference
    assert summary["methods"][0]["source"] == str(other)
    assert {(p["method"], p["reference"]) for p in summary["presets"]["clipdenoising"]["paired"]} == {
        ("clipdenoising", "model"), ("low_dose", "model"), ("model", "low_dose"), ("clipdenoising", "low_dose")}
    assert set(summary["seconds_per_slice"]) == {"model", "clipdenoising"}
    with (out / "metrics.csv").open() as handle:
        assert {row["label"] for row in csv.DictReader(handle)} == {m["label"] for m in summary["methods"]}


def test_overwrite_never_deletes_what_the_command_reads(checkpoint: Path, mayo_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12, 3.1: --output C --overwrite with the checkpoint or the series inside C is refused first."""
    folder = tmp_path / "C"
    shutil.copytree(mayo_root / "L506", folder)
    model = folder / "model.safetensors"
    model.write_bytes(checkpoint.read_bytes())
    before = _snapshot(folder)
    series = ["--low", str(folder / "quarter_1mm"), "--full", str(folder / "full_1mm")]
    outside = ["--low", str(mayo_root / "L506" / "quarter_1mm"), "--full", str(mayo_root / "L506" / "full_1mm")]
    for args, named in (([*series, "--checkpoint", str(model)], model),
                        ([*outside, "--checkpoint", str(model)], model),
                        ([*series, "--checkpoint", str(checkpoint)], folder / "quarter_1mm")):
        code = run_cli(main, [*args, "--output", str(folder), "--overwrite", "--no-baselines", *QUICK])
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and f"holds the input {named}" in errors[0], errors
        assert _snapshot(folder) == before  # nothing deleted, nothing written


@pytest.mark.filterwarnings("ignore:.*slice gaps vary")
def test_series_on_other_positions_or_grids_are_refused(checkpoint: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12, 3.2: pair by each slice's own position; refuse other pixel spacings, DICOM or NIfTI."""
    from dicom_factory import make_ct_series
    from evaluation.test_pairs import gapped_pair

    from ldct_clip import CTVolume, read_series, write_nifti

    low, full = gapped_pair(tmp_path / "gap")
    make_ct_series(tmp_path / "half_mm", 4, 32, 32, spacing=(2.0, 0.5, 0.5), origin=(-24.0, -24.0, 0.0))
    make_ct_series(tmp_path / "one_mm", 4, 32, 32, spacing=(2.0, 1.0, 1.0), origin=(-24.0, -24.0, 0.0))
    dicom = read_series(tmp_path / "one_mm")
    nifti = CTVolume(dicom.hu, (2.0, 0.7, 0.7), dicom.origin, dicom.direction, None, "x")
    write_nifti(nifti, nifti.hu, tmp_path / "fine.nii.gz")
    cases = (((low, full), "slice 2 lies at 8.00 mm but slice 2 of"),
             ((tmp_path / "half_mm", tmp_path / "one_mm"), "pixel spacing 0.5x0.5 mm but"),
             ((tmp_path / "fine.nii.gz", tmp_path / "one_mm"), "pixel spacing 0.7x0.7 mm but"))
    for (low_series, full_series), message in cases:
        out = tmp_path / "report"
        code = run_cli(main, ["--checkpoint", str(checkpoint), "--low", str(low_series), "--full", str(full_series),
                              "--output", str(out), *QUICK])
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and message in errors[0], errors
        assert not out.exists()


def test_a_method_needs_a_label_and_a_path(checkpoint: Path, mayo_root: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in ((["--method", str(checkpoint)], "expected LABEL=PATH"),
                          ([], "pass at least one --checkpoint PATH or --method LABEL=PATH")):
        code = run_cli(main, [*args, "--data-root", str(mayo_root), "--output", str(tmp_path / "r")])
        assert code == 2 and message in capsys.readouterr().err
