"""``python -m ldct_clip.noise_level``: estimates, the matching σ line, checkpoint comparison, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import make_ct_series
from test_noise_estimation import phantom

from ldct_clip import noise_level
from ldct_clip.cli import EXIT_USER_ERROR, run_cli
from ldct_clip.io import CTVolume, write_nifti
from ldct_clip.noise_estimation import compare_with_training, sigma_line_value

SLICES, SIZE = 3, 128


def noisy_volume(sd: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.repeat(phantom(SIZE)[None], SLICES, axis=0) + sd * rng.standard_normal((SLICES, SIZE, SIZE))


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-slice DICOM series with 25 HU of white noise."""
    folder = tmp_path_factory.mktemp("dicom") / "series"
    make_ct_series(folder, SLICES, SIZE, SIZE, hu=np.rint(noisy_volume(25.0)), spacing=(3.0, 0.7, 0.7))
    return folder


@pytest.fixture(scope="module")
def nifti_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-slice NIfTI volume with 60 HU of white noise."""
    hu = noisy_volume(60.0, seed=1).astype(np.float32)
    volume = CTVolume(hu, (1.0, 0.7, 0.7), (0.0, 0.0, 0.0), np.eye(3), None, "memory")
    return write_nifti(volume, hu, tmp_path_factory.mktemp("nifti") / "scan.nii.gz")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(noise_level.main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_text_output_has_estimate_method_sigma_line_and_note(dicom_series: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([str(dicom_series)], capsys)
    assert code == 0, err
    sd = float(out.split("noise SD: ")[1].split(" HU")[0])
    assert sd == pytest.approx(25.0, rel=0.1)
    assert "(flat-regions)" in out and "3 slices, 3 mm apart" in out
    assert f"matching training noise: data.noise_sigma: {sigma_line_value(sd)}\n" in out
    assert "note: the released LDCT recipe trains at σ = 5 (≈ 80 HU); the CLIPDenoising authors advise a " \
           "smaller σ for 3 mm slices" in out
    assert "WARNING" not in out


def test_json_output_for_several_series(dicom_series: Path, nifti_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([str(dicom_series), str(nifti_file), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    first, second = report["series"]
    assert (first["series"], second["series"]) == (str(dicom_series), str(nifti_file))
    assert first["sd_hu"] == pytest.approx(25.0, rel=0.1) and second["sd_hu"] == pytest.approx(60.0, rel=0.1)
    assert second["config_line"] == f"data.noise_sigma: {sigma_line_value(second['sd_hu'])}"
    assert second["matching_noise_sigma"] == pytest.approx(second["sd_hu"] / 4096 * 255)
    assert first["consistent"] is True and "slice-difference" in first["checks"]
    assert report["checkpoint"] is None and "3 mm slices" in report["note"]


def test_method_option_is_passed_on(dicom_series: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([str(dicom_series), "--method", "slice-difference", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["series"][0]["method"] == "slice-difference"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-encoder checkpoints trained 'at' σ = 5, with no recorded σ, and with a damaged value."""
    from ldct_clip.models import CLIPDenoiser, save_checkpoint

    model = CLIPDenoiser(encoder_weights="random")
    folder = tmp_path_factory.mktemp("checkpoints")
    extras = {"sigma5": {noise_level.TRAINING_NOISE_KEY: "5.0"}, "none": {},
              "bad": {noise_level.TRAINING_NOISE_KEY: "five"}}
    return {name: save_checkpoint(model, folder / f"{name}.safetensors", extra=extra) for name, extra in extras.items()}


@pytest.mark.slow
def test_checkpoint_trained_far_above_the_series_noise_warns(dicom_series: Path, checkpoints: dict[str, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([str(dicom_series), "--checkpoint", str(checkpoints["sigma5"])], capsys)
    assert code == 0
    sd = float(out.split("noise SD: ")[1].split(" HU")[0])
    assert f"  WARNING: {compare_with_training(sd, 5.0)}\n" in out
    assert "trained at σ = 5/255 (≈ 80 HU)" in out
    code, out, _ = run([str(dicom_series), "--checkpoint", str(checkpoints["sigma5"]), "--json"], capsys)
    report = json.loads(out)
    assert report["checkpoint"]["training_noise_sigma"] == 5.0
    assert report["series"][0]["warning"] == compare_with_training(report["series"][0]["sd_hu"], 5.0)


@pytest.mark.slow
def test_checkpoint_without_or_with_a_damaged_sigma(dicom_series: Path, checkpoints: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([str(dicom_series), "--checkpoint", str(checkpoints["none"])], capsys)
    assert code == 0 and "records no training noise" in out and "WARNING" not in out
    code, out, err = run([str(dicom_series), "--checkpoint", str(checkpoints["bad"])], capsys)
    assert code == EXIT_USER_ERROR and out == ""
    assert err.count("\n") == 1 and "bad.safetensors" in err and "'five'" in err


def test_bad_inputs_give_one_line_and_exit_2(tmp_path: Path, dicom_series: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    air = tmp_path / "air"
    make_ct_series(air, 2, 64, 64, hu=np.full((2, 64, 64), -1000.0))
    not_a_checkpoint = tmp_path / "x.safetensors"
    not_a_checkpoint.write_bytes(b"not safetensors")
    cases = [
        ([str(tmp_path / "missing")], "missing"),
        ([str(dicom_series), str(air)], "air"),
        ([str(dicom_series), "--checkpoint", str(not_a_checkpoint)], "x.safetensors"),
    ]
    for argv, named in cases:
        code, out, err = run(argv, capsys)
        assert code == EXIT_USER_ERROR and out == "", argv
        assert err.startswith("error: ") and err.count("\n") == 1 and named in err, err
