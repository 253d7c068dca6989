"""Several models on the same slices: rows equal each model's own scores, paired differences, flags and warnings."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_factory import phantom_hu

from ldct_clip import CLIPDenoiser
from ldct_clip.errors import InputError
from ldct_clip.evaluation import (
    EvaluationResult,
    ModelEntry,
    PairedSlices,
    SlicePair,
    evaluate,
    worse_than_input,
    write_report,
)
from ldct_clip.inference import denoise_volume
from ldct_clip.metrics import score_slices
from ldct_clip.noise_estimation import compare_with_training

NOISE_HU = 40.0


def _pairs() -> tuple[PairedSlices, np.ndarray, np.ndarray]:
    """Two patients of three 64x64 phantom slices (enough soft tissue to measure noise); low = full + 40 HU noise."""
    full = phantom_hu(6, 64, 64)
    low = full + np.random.default_rng(0).normal(0.0, NOISE_HU, full.shape).astype(np.float32)
    slices = tuple(SlicePair("L333" if i < 3 else "L506", float(i % 3), f"q{i}", f"f{i}", (64, 64)) for i in range(6))
    return PairedSlices(slices, lambda i: (low[i], full[i]), "phantom pairs"), low, full


def _model(seed: int) -> CLIPDenoiser:
    torch.manual_seed(seed)
    return CLIPDenoiser(encoder_weights="random").eval()


@pytest.fixture(scope="module")
def evaluated() -> tuple[EvaluationResult, list[CLIPDenoiser], np.ndarray, np.ndarray]:
    pairs, low, full = _pairs()
    models = [_model(1), _model(2)]
    entries = [ModelEntry("First", models[0], training_noise_sigma=10.0), ("Second", models[1])]
    result = evaluate(entries, pairs, presets=["clipdenoising", "redcnn"], baselines=["tv"], device="cpu",
                      figure_slices=2, viewer_slices=3, bootstrap_resamples=2000)
    return result, models, low, full


def test_every_model_is_scored_on_the_same_slices(evaluated: tuple) -> None:
    result, models, low, full = evaluated
    assert [m.key for m in result.methods] == ["model", "clipdenoising", "low_dose", "tv"]
    assert [m.label for m in result.models] == ["First [random encoder]", "Second [random encoder]"]
    for key, model in (("model", models[0]), ("clipdenoising", models[1])):
        expected = score_slices(denoise_volume(model, low, device="cpu"), full, "redcnn")
        np.testing.assert_allclose(result.scores["redcnn"][key]["psnr"], expected["psnr"], rtol=1e-6)
    assert set(result.seconds) == {"model", "clipdenoising", "low_dose", "tv"}
    assert all(result.seconds[key] > 0 for key in ("model", "clipdenoising", "tv"))
    assert result.figure_indices == (1, 4) and result.viewer_indices == (1, 3, 5)  # bin centres
    assert set(result.images) == {1, 3, 4, 5}  # kept once for both
    assert set(result.images[4]) == {"model", "clipdenoising", "low_dose", "tv", "full_dose"}


def test_paired_differences_against_the_first_model_and_the_input(evaluated: tuple) -> None:
    result, *_ = evaluated
    scores = result.scores["clipdenoising"]
    second = result.comparison("clipdenoising", "psnr", "clipdenoising", "model").difference
    assert second.mean == pytest.approx(np.mean(scores["clipdenoising"]["psnr"] - scores["model"]["psnr"]))
    assert second.resampled == "patients" and second.units == 2 and second.n == 6
    tv = result.comparison("clipdenoising", "ssim", "tv", "low_dose").difference
    assert tv.mean == pytest.approx(np.mean(scores["tv"]["ssim"] - scores["low_dose"]["ssim"]))
    assert tv.ci_low <= tv.mean <= tv.ci_high and tv.p_value is not None
    references = {(c.method, c.reference) for c in result.comparisons}
    assert ("low_dose", "model") in references and ("model", "low_dose") in references
    assert not any(c.method == c.reference for c in result.comparisons)


def test_methods_worse_than_their_input_are_flagged_everywhere(evaluated: tuple, tmp_path: Path) -> None:
    result, *_ = evaluated
    lines = worse_than_input(result)
    low = result.summary("clipdenoising", "low_dose")
    first = result.summary("clipdenoising", "model")
    assert first.psnr_mean < low.psnr_mean  # a random network is worse than its input
    expected = (f"First [random encoder] is worse than the low-dose input under preset clipdenoising overall: "
                f"PSNR {first.psnr_mean - low.psnr_mean:+.2f} dB ({first.psnr_mean:.2f} vs {low.psnr_mean:.2f})")
    assert lines[0].startswith(expected)
    assert any("under preset redcnn for patient L506" in line for line in lines)
    assert not any(line.startswith("TV") for line in lines)  # TV removes 40 HU noise: better than its input
    assert result.worse_metrics("clipdenoising", "tv") == ()

    folder = write_report(result, tmp_path / "report")
    markdown = (folder / "report.md").read_text()
    top = markdown[: markdown.index("\n## ")]  # everything before the first section
    assert all(f"> **Warning:** {line}" in top for line in lines)
    assert "| TV (Chambolle) |" in markdown and "worse than input (PSNR, SSIM) |" in markdown
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["worse_than_input"] == lines
    methods = summary["presets"]["clipdenoising"]["methods"]
    assert methods["model"]["worse_than_input"] == ["psnr", "ssim"] and methods["tv"]["worse_than_input"] == []
    assert methods["model"]["per_patient"]["L333"]["worse_than_input"] == ["psnr", "ssim"]
    paired = summary["presets"]["redcnn"]["paired"]
    assert {(p["method"], p["reference"]) for p in paired} >= {("clipdenoising", "model"), ("tv", "low_dose")}
    assert all(p["confidence"] == 0.95 and p["resampled"] == "patients" for p in paired)
    assert "### Paired differences, preset redcnn" in markdown and "| Second [random encoder] | First" in markdown


def test_noise_level_per_patient_and_the_training_noise_warning(evaluated: tuple, tmp_path: Path) -> None:
    result, *_ = evaluated
    assert [level.patient for level in result.noise] == ["L333", "L506"]
    for level in result.noise:
        assert level.low_dose.sd_hu == pytest.approx(NOISE_HU, rel=0.25)
        assert level.full_dose.sd_hu < 5.0  # the phantom itself is noise-free
    expected = compare_with_training(result.noise[0].low_dose.sd_hu, 10.0)  # 160 HU against 40: 4x
    assert expected is not None
    assert result.noise_warnings()[0] == f"First [random encoder], patient L333: {expected}"
    assert len(result.noise_warnings()) == 2  # the second model has no training noise recorded

    folder = write_report(result, tmp_path / "report")
    markdown = (folder / "report.md").read_text()
    assert f"> **Warning:** First [random encoder], patient L333: {expected}" in markdown
    assert "## Noise level" in markdown and "trained with noise sigma 10/255 (≈ 161 HU)" in markdown
    noise = json.loads((folder / "summary.json").read_text())["noise_level"]
    assert noise["patients"]["L506"]["low_dose_sd_hu"] == pytest.approx(result.noise[1].low_dose.sd_hu)
    assert noise["models"]["model"]["training_noise_sigma"] == 10.0
    assert noise["models"]["clipdenoising"]["training_noise_sigma"] is None


def test_figures_have_one_panel_per_method_and_the_viewer_every_method(evaluated: tuple, tmp_path: Path) -> None:
    result, *_ = evaluated
    folder = write_report(result, tmp_path / "report")
    png = (folder / "figures" / "slice_0001.png").read_bytes()
    width, height = struct.unpack(">II", png[16:24])
    assert width == 5 * 260  # low dose, two models, TV, full dose: 2.6 inches at 100 dpi each
    page = (folder / "report.html").read_text()
    assert page.count('class="ldctv"') == 1
    meta = json.loads(page.split('class="ldctv-meta">')[1].split("</script>")[0])
    assert [p["key"] for p in meta["panes"]] == ["low_dose", "model", "clipdenoising", "tv", "full_dose"]
    assert [s["index"] for s in meta["slices"]] == [1, 3, 5] and meta["reference"] == "full_dose"
    shown = [float(value) for value in meta["metrics"]["redcnn"]["tv"]["psnr"]]  # the viewer rounds for display
    assert shown == pytest.approx(result.scores["redcnn"]["tv"]["psnr"][[1, 3, 5]], abs=0.006)
    seconds = (folder / "report.md").read_text().split("## Seconds per slice")[1]
    assert "| Second [random encoder] |" in seconds and "| TV (Chambolle) |" in seconds


def test_a_noise_level_that_cannot_be_measured_is_a_note() -> None:
    full = np.full((2, 32, 32), -1000.0, np.float32)  # air only: no soft tissue to measure noise in
    slices = tuple(SlicePair("P1", float(i), "l", "f", (32, 32)) for i in range(2))
    result = evaluate(_model(1), PairedSlices(slices, lambda i: (full[i] + 5.0, full[i]), "air"), baselines=(),
                      rois=[], device="cpu", figure_slices=0, viewer_slices=0, bootstrap_resamples=100)
    [level] = result.noise
    assert level.low_dose is None and level.note.startswith("low-dose noise of P1 not measured: ")
    assert result.noise_warnings() == []


def test_labels_must_differ_and_a_model_alone_still_works() -> None:
    pairs, *_ = _pairs()
    model = _model(1)
    with pytest.raises(InputError, match="'Same' given more than once"):
        evaluate([("Same", model), ("Same", model)], pairs, baselines=(), device="cpu")
    with pytest.raises(InputError, match="no models"):
        evaluate([], pairs, baselines=(), device="cpu")
    alone = evaluate(model, pairs.evenly_spaced(2), baselines=(), rois=[], device="cpu", figure_slices=0,
                     viewer_slices=0, model_label="Mine")
    assert [m.label for m in alone.methods] == ["Mine [random encoder]", "Low-dose input"] and not alone.images
