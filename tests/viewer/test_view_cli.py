"""``python -m ldct_clip.view``: series of one geometry in, one viewer page out; mismatches refused in one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dicom_factory import make_ct_series, phantom_hu

from ldct_clip.cli import run_cli
from ldct_clip.io import read_volume, write_dicom_series, write_nifti
from ldct_clip.metrics import score_slices
from ldct_clip.view import main
from ldct_clip.viewer import unpack_slice

SHAPE = (4, 32, 32)


def _meta(page: Path) -> dict:
    text = re.search(r'class="ldctv-meta">(.*?)</script>', page.read_text(encoding="utf-8"), re.S)
    assert text is not None
    return json.loads(text.group(1))


def _data(page: Path, shape: tuple[int, int]) -> list[np.ndarray]:
    blocks = re.findall(r'class="ldctv-data">\n(.*?)\n</script>', page.read_text(encoding="utf-8"), re.S)
    return [np.stack([unpack_slice(line, shape) for line in block.split("\n")]) for block in blocks]


@pytest.fixture
def series(tmp_path: Path) -> dict[str, Path]:
    """A low-dose DICOM series, its 'denoised' output as DICOM (as infer writes) and NIfTI, and a full dose."""
    rng = np.random.default_rng(3)
    full_hu = phantom_hu(*SHAPE)
    low_hu = np.rint(full_hu + rng.normal(0, 30, SHAPE))
    low = tmp_path / "L067_quarter"
    full = tmp_path / "L067_full"
    make_ct_series(low, *SHAPE, hu=low_hu, patient_id="L067")
    make_ct_series(full, *SHAPE, hu=full_hu, patient_id="L067", seed=1)
    volume = read_volume(low)
    denoised_hu = (volume.hu * 0.5 + full_hu * 0.5).astype(np.float32)
    denoised = write_dicom_series(volume, denoised_hu, tmp_path / "L067_denoised")
    nifti = write_nifti(volume, denoised_hu, tmp_path / "L067_nifti.nii.gz")
    return {"low": low, "full": full, "denoised": Path(denoised), "nifti": Path(nifti)}


def test_writes_a_page_with_every_series_slice_labels_and_metrics(series: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "viewer.html"
    code = main([str(series["low"]), str(series["denoised"]), str(series["nifti"]), "--full", str(series["full"]),
                 "--preset", "clipdenoising", "redcnn", "--output", str(out)])
    assert code == 0
    meta = _meta(out)
    assert [p["label"] for p in meta["panes"]] == ["L067_quarter", "L067_denoised", "L067_nifti", "L067_full"]
    assert [p["key"] for p in meta["panes"]] == ["low", "method1", "method2", "full"]
    assert meta["reference"] == "full"
    assert [s["z_mm"] for s in meta["slices"]] == [100.0, 102.5, 105.0, 107.5]  # make_ct_series' positions
    assert {s["patient"] for s in meta["slices"]} == {"L067"}
    volumes = [read_volume(series[k]) for k in ("low", "denoised", "nifti", "full")]
    for packed, volume in zip(_data(out, SHAPE[1:]), volumes):
        np.testing.assert_array_equal(packed, np.rint(volume.hu))
    for preset in ("clipdenoising", "redcnn"):
        expected = score_slices(volumes[0].hu, volumes[3].hu, preset)
        assert meta["metrics"][preset]["low"]["psnr"] == [f"{v:.2f}" for v in expected["psnr"]]
        assert meta["metrics"][preset]["low"]["ssim"] == [f"{v:.4f}" for v in expected["ssim"]]
        assert set(meta["metrics"][preset]) == {"low", "method1", "method2"}


def test_labels_from_the_command_line_and_no_metrics_without_full(series: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "v.html"
    assert main([str(series["low"]), str(series["nifti"]), "--label", "quarter dose", "--label", "model",
                 "--output", str(out)]) == 0
    meta = _meta(out)
    assert [p["label"] for p in meta["panes"]] == ["quarter dose", "model"]
    assert meta["metrics"] == {} and meta["reference"] is None


@pytest.mark.parametrize("make_other, message", [
    (lambda folder: make_ct_series(folder, 5, 32, 32), "5 slices but .*L067_quarter has 4"),
    (lambda folder: make_ct_series(folder, 4, 32, 30), "slices of 32x30 pixels but .*L067_quarter has 32x32"),
    (lambda folder: make_ct_series(folder, *SHAPE, spacing=(2.5, 0.8, 0.7)), r"voxel spacing \(z, y, x\)"),
    (lambda folder: make_ct_series(folder, *SHAPE, origin=(-24.0, -24.0, 101.0)), "slice 0 lies at"),
    (lambda folder: make_ct_series(folder, *SHAPE, orientation=(0, 1, 0, 1, 0, 0)), "orientation differs"),
])
def test_mismatched_geometry_is_refused_in_one_line_naming_both(series: dict[str, Path], tmp_path: Path,
                                                                 make_other: Any, message: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "other_series"
    make_other(other)
    out = tmp_path / "v.html"
    assert run_cli(main, [str(series["low"]), str(other), "--output", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {other}: "), lines
    assert re.search(message, lines[0])
    assert not out.exists()


@pytest.mark.slow
def test_python_dash_m_exits_2_with_one_line_and_no_traceback(series: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other_series"
    make_ct_series(other, 5, 32, 32)
    out = tmp_path / "v.html"
    result = subprocess.run([sys.executable, "-m", "ldct_clip.view", str(series["low"]), str(other), "--output",
                             str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.strip().splitlines() == [
        f"error: {other}: 5 slices but {series['low']} has 4; pass series of one geometry "
        "(e.g. an infer output beside its input)"]


@pytest.mark.parametrize("extra, message", [
    (["--label", "only one"], "--label given 1 times for 2 series"),
    (["--preset", "natural"], "unknown for CT"),
])
def test_bad_options_are_refused(series: dict[str, Path], tmp_path: Path, extra: list[str], message: str,
                                 capsys: pytest.CaptureFixture) -> None:
    argv = [str(series["low"]), str(series["nifti"]), "--output", str(tmp_path / "v.html"), *extra]
    assert run_cli(main, argv) == 2
    assert message in capsys.readouterr().err


def test_an_existing_output_is_kept_without_overwrite(series: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "v.html"
    out.write_text("mine")
    assert run_cli(main, [str(series["low"]), "--output", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_text() == "mine"
    assert run_cli(main, [str(series["low"]), "--output", str(out), "--overwrite"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_the_page_shows_the_dicom_hu_under_the_cursor(series: dict[str, Path], tmp_path: Path, watched: Any) -> None:
    """End to end: DICOM on disk -> CLI -> Chromium: the HU shown is the HU that the reader gives for the voxel."""
    out = tmp_path / "v.html"
    assert main([str(series["low"]), str(series["denoised"]), "--full", str(series["full"]),
                 "--output", str(out)]) == 0
    watched.open(out)
    page = watched.page
    page.keyboard.press("End")
    box = page.locator(".ldctv-canvas").first.bounding_box()
    x, y = 11, 17
    page.mouse.move(box["x"] + (x + 0.5) * box["width"] / SHAPE[2], box["y"] + (y + 0.5) * box["height"] / SHAPE[1])
    shown = page.locator(".ldctv-pane:not([hidden]) .ldctv-hu").all_inner_texts()
    volumes = [read_volume(series[k]) for k in ("low", "denoised", "full")]
    assert shown == [f"{int(np.rint(v.hu[3, y, x]))} HU" for v in volumes]
