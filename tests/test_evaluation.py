"""ldct_clip.evaluation: hand-computable scores, rows equal to the metrics on each method's output, pairing rules."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ldct_clip import CLIPDenoiser, read_series, write_nifti
from ldct_clip.data.mayo import scan_mayo
from ldct_clip.errors import InputError
from ldct_clip.evaluation import (
    PUBLISHED_ROWS,
    PairedSlices,
    SlicePair,
    bm3d_available,
    ct_presets,
    default_baselines,
    denoise_bm3d,
    denoise_tv,
    evaluate,
    load_manifest,
    pairs_from_manifest,
    pairs_from_series,
    published_rows,
    resolve_baselines,
)
from ldct_clip.inference import denoise_volume
from ldct_clip.metrics import roi_stats, score_slices

SIZE = 48


@pytest.fixture(scope="module")
def model() -> CLIPDenoiser:
    return CLIPDenoiser(encoder_weights="random").eval()


@pytest.fixture(scope="module")
def mayo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """L333 and L506 (the noise2sim test patients), three 48x48 slices each; L506 alone is the clipdenoising test."""
    from dicom_factory import make_mayo_tree

    return make_mayo_tree(tmp_path_factory.mktemp("mayo"), ("L333", "L506"), 3, SIZE)


def _constant_pairs(offset: float, n: int = 2) -> PairedSlices:
    """n 32x32 slices: full-dose 40 HU everywhere, low-dose 40 + offset HU."""
    full = np.full((32, 32), 40.0, np.float32)
    slices = tuple(SlicePair("P1", float(i), f"low[{i}]", f"full[{i}]", (32, 32)) for i in range(n))
    return PairedSlices(slices, lambda i: (full + offset, full), "constant test slices")


def test_published_rows_are_the_papers_and_only_under_clipdenoising() -> None:
    table = {(r.method, r.psnr, r.ssim) for r in published_rows("clipdenoising")}
    assert table == {("TV", 44.81, 0.972), ("ScoreSDE", 45.36, 0.972), ("Noise2Sim", 45.98, 0.978),
                     ("CLIPDenoising", 45.88, 0.976)}
    assert all("CLIPDenoising" in r.source and "L506" in r.source for r in PUBLISHED_ROWS)
    assert published_rows("redcnn") == () and published_rows("noise2sim") == ()


def test_scores_and_hu_fidelity_on_hand_computable_slices(model: CLIPDenoiser) -> None:
    result = evaluate(model, _constant_pairs(5.0), presets=["clipdenoising", "redcnn", "noise2sim"],
                      baselines=(), rois=[(1, 4, 4, 8, 8)], device="cpu", figure_slices=0)
    low = {p.name: result.summary(p.name, "low_dose") for p in result.presets}
    assert low["clipdenoising"].psnr_mean == pytest.approx(20 * math.log10(4096 / 5))
    assert low["redcnn"].psnr_mean == pytest.approx(20 * math.log10(400 / 5))
    assert low["noise2sim"].psnr_mean == pytest.approx(20 * math.log10(400 / 5))  # 5 HU of a 400 HU window
    mu_p, mu_t, c1 = 205 / 400, 200 / 400, 0.01**2  # valid-window SSIM of constants: luminance term only
    assert low["noise2sim"].ssim_mean == pytest.approx((2 * mu_p * mu_t + c1) / (mu_p**2 + mu_t**2 + c1))
    assert low["noise2sim"].psnr_std == 0.0 and low["noise2sim"].n == 2
    [measured] = [r for r in result.rois if r.method == "low_dose"]
    assert measured.roi == (1, 4, 4, 8, 8) and not measured.auto
    assert measured.stats.bias == pytest.approx(5.0) and measured.stats.pred_std == 0.0
    assert result.roi_summary("low_dose")["abs_bias_hu"] == pytest.approx(5.0)
    assert [m.key for m in result.methods] == ["model", "low_dose"]
    assert result.encoder_is_random and result.method("model").label.endswith("[random encoder]")


def test_rows_equal_the_metrics_of_each_methods_output(model: CLIPDenoiser, mayo_root: Path) -> None:
    manifest = scan_mayo(mayo_root, workers=2)
    pairs = pairs_from_manifest(manifest, "noise2sim")
    assert [s.patient for s in pairs.slices] == ["L333"] * 3 + ["L506"] * 3
    result = evaluate(model, pairs, presets=["clipdenoising", "redcnn"], baselines=["tv"], device="cpu")
    for patient in ("L333", "L506"):
        indices = [i for i, s in enumerate(pairs.slices) if s.patient == patient]
        low = np.stack([pairs.read_pair(i)[0] for i in indices])
        full = np.stack([pairs.read_pair(i)[1] for i in indices])
        expected = {"low_dose": low, "model": denoise_volume(model, low, device="cpu"), "tv": denoise_tv(low)}
        for preset in ("clipdenoising", "redcnn"):
            for key, pred in expected.items():
                reference = score_slices(pred, full, preset)
                for metric in ("psnr", "ssim"):
                    np.testing.assert_allclose(result.scores[preset][key][metric][indices], reference[metric],
                                               rtol=1e-6)
                summary = result.summary(preset, key, patient)
                assert summary.psnr_mean == pytest.approx(reference["psnr"].mean())
                assert summary.psnr_std == pytest.approx(reference["psnr"].std())
        for r in (r for r in result.rois if r.method == "tv" and r.roi[0] in indices):
            index, y0, x0, h, w = r.roi
            local = indices.index(index)
            box = full[local, y0:y0 + h, x0:x0 + w]
            assert r.auto and np.all((box >= -100) & (box <= 200))
            assert r.stats == roi_stats(expected["tv"][local], full[local], [(y0, x0, h, w)])[0]
    assert result.summary("clipdenoising", "tv").n == 6
    assert sorted(result.figure_images) == [1, 3, 5]  # spread over the slices
    assert set(result.figure_images[3]) == {"model", "low_dose", "tv", "full_dose"}
    assert {r.roi[0] // 3 for r in result.rois} == {0, 1}  # one automatic ROI per patient chunk
    assert result.published_comparable is False


def test_a_split_needs_its_test_patients_not_its_training_patients(mayo_root: Path) -> None:
    manifest = scan_mayo(mayo_root, workers=2)
    pairs = pairs_from_manifest(manifest, "clipdenoising")  # no training patient of the preset is present
    assert {s.patient for s in pairs.slices} == {"L506"} and pairs.published_comparable
    with pytest.raises(InputError, match="L067") as info:
        pairs_from_manifest(manifest, "loo-L067")
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="unknown preset"):
        pairs_from_manifest(manifest, "nosuchsplit")
    with pytest.raises(InputError, match="3 mm|thickness"):
        pairs_from_manifest(manifest, "clipdenoising", thickness_mm=3.0)


def test_the_manifest_cache_is_reused_only_for_the_same_root(mayo_root: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    scan_mayo(mayo_root, workers=2).save(tmp_path / "manifest.csv")
    monkeypatch.setattr("ldct_clip.data.mayo.scan_mayo", lambda root: pytest.fail("scanned again"))
    assert len(load_manifest(mayo_root, cache_dir=tmp_path)) == 12
    assert len(load_manifest(tmp_path / "manifest.csv")) == 12
    with pytest.raises(InputError, match="not found"):
        load_manifest(tmp_path / "missing")


def test_series_pairs_check_counts_sizes_and_positions(tmp_path: Path) -> None:
    from dicom_factory import make_ct_series

    make_ct_series(tmp_path / "low", 3, 32, 32, spacing=(1.0, 0.7, 0.7), patient_id="P7")
    make_ct_series(tmp_path / "full", 3, 32, 32, spacing=(1.0, 0.7, 0.7))
    pairs = pairs_from_series(tmp_path / "low", tmp_path / "full")
    assert len(pairs) == 3 and pairs.slices[0].patient == "P7"
    assert [s.position_mm for s in pairs.slices] == [100.0, 101.0, 102.0]
    volume = read_series(tmp_path / "full")
    write_nifti(volume, volume.hu, tmp_path / "full.nii.gz")
    low, full = pairs_from_series(tmp_path / "low", tmp_path / "full.nii.gz").read_pair(2)
    np.testing.assert_array_equal(full, volume.hu[2])

    make_ct_series(tmp_path / "short", 2, 32, 32, spacing=(1.0, 0.7, 0.7))
    make_ct_series(tmp_path / "shifted", 3, 32, 32, spacing=(1.0, 0.7, 0.7), origin=(-24.0, -24.0, 101.0))
    make_ct_series(tmp_path / "small", 3, 16, 16, spacing=(1.0, 0.7, 0.7))
    for other, message in (("short", "2 slices"), ("shifted", "slice 0 lies at 101.00 mm.*at 100.00 mm"),
                           ("small", "16x16")):
        with pytest.raises(InputError, match=message) as info:
            pairs_from_series(tmp_path / other, tmp_path / "full")
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="not a DICOM series folder"):
        pairs_from_series(tmp_path / "low" / "nothing.txt", tmp_path / "full")


def test_evenly_spaced_keeps_first_and_last() -> None:
    pairs = _constant_pairs(1.0, n=10)
    picked = pairs.evenly_spaced(3)
    assert [s.position_mm for s in picked.slices] == [0.0, 4.0, 9.0] and not picked.published_comparable
    assert picked.read_pair(2)[0][0, 0] == 41.0
    assert pairs.evenly_spaced(20) is pairs
    with pytest.raises(InputError, match="max_slices"):
        pairs.evenly_spaced(0)


def test_bad_arguments_are_one_line_errors(model: CLIPDenoiser) -> None:
    with pytest.raises(InputError, match="clipdenoising, redcnn, noise2sim"):
        ct_presets(["natural"])
    with pytest.raises(InputError, match="'psnr42'"):
        ct_presets(["redcnn", "psnr42"])
    with pytest.raises(InputError, match="unknown"):
        resolve_baselines(["nlm"])
    pairs = _constant_pairs(5.0)
    for kwargs, message in (({"rois": [(2, 0, 0, 4, 4)]}, "outside 0..1"), ({"rois": [(0, 30, 0, 4, 4)]}, "outside"),
                            ({"rois": [(0, 3, 3, 1, 1)]}, "smaller than 2 pixels"),
                            ({"tv_weight": 0.0}, "tv_weight"), ({"roi_size": 40}, "roi_size")):
        with pytest.raises(InputError, match=message):
            evaluate(model, pairs, baselines=(), device="cpu", **kwargs)
    for roi in ((0, 3, 3, 1, 2), (0, 3, 3, 2, 1)):  # a one-pixel-wide line of two is enough for a noise SD
        result = evaluate(model, pairs, baselines=(), rois=[roi], device="cpu")
        assert [r.roi for r in result.rois] == [roi, roi]  # model and low-dose input


def test_tv_removes_noise_and_keeps_the_mean_hu() -> None:
    noisy = 40.0 + np.random.default_rng(1).normal(0.0, 40.0, (2, 48, 48)).astype(np.float32)
    smooth = denoise_tv(noisy)
    assert smooth.dtype == np.float32 and smooth.shape == noisy.shape
    assert smooth.std() < noisy.std() / 3
    assert abs(smooth.mean() - noisy.mean()) < 0.5


def test_without_bm3d_the_default_skips_it_with_a_note(model: CLIPDenoiser, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ldct_clip.evaluation.baselines.find_spec", lambda name: None)
    assert default_baselines() == ("tv",)
    with pytest.raises(InputError, match="pip install bm3d"):
        resolve_baselines(["bm3d"])
    result = evaluate(model, _constant_pairs(5.0), rois=[], device="cpu", figure_slices=0)
    assert [m.key for m in result.methods] == ["model", "low_dose", "tv"]
    assert any("bm3d" in note for note in result.notes)


@pytest.mark.skipif(not bm3d_available(), reason="optional BM3D baseline: the bm3d package is not installed")
def test_bm3d_is_reproducible_run_to_run() -> None:
    """The package's threads sum in varying order; a report must not change when it is run again."""
    noisy = 40.0 + np.random.default_rng(2).normal(0.0, 40.0, (1, 48, 48)).astype(np.float32)
    first = denoise_bm3d(noisy)
    for _ in range(3):
        np.testing.assert_array_equal(denoise_bm3d(noisy), first)


@pytest.mark.skipif(not bm3d_available(), reason="optional BM3D baseline: the bm3d package is not installed")
def test_bm3d_row_equals_the_metrics_of_its_output(model: CLIPDenoiser) -> None:
    rng = np.random.default_rng(2)
    full = np.full((2, 32, 32), 40.0, np.float32)
    low = full + rng.normal(0.0, 35.0, full.shape).astype(np.float32)
    slices = tuple(SlicePair("P1", float(i), "l", "f", (32, 32)) for i in range(2))
    pairs = PairedSlices(slices, lambda i: (low[i], full[i]), "noisy constant slices")
    result = evaluate(model, pairs, rois=[], device="cpu", figure_slices=0)
    assert [m.key for m in result.methods] == ["model", "low_dose", "tv", "bm3d"]
    expected = score_slices(denoise_bm3d(low), full, "clipdenoising")["psnr"]
    np.testing.assert_allclose(result.scores["clipdenoising"]["bm3d"]["psnr"], expected, rtol=1e-6)
    assert expected.mean() > result.summary("clipdenoising", "low_dose").psnr_mean + 3
