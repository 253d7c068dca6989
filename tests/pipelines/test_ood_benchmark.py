"""pipelines/ood_benchmark.py: every noise x level row, reproducible values, quoted paper numbers, clear errors."""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image
from pipeline_scripts import load_pipeline

from ldct_clip import CLIPDenoiser, load_checkpoint, save_checkpoint
from ldct_clip.cli import EXIT_USER_ERROR, run_cli
from ldct_clip.data.images import read_image
from ldct_clip.data.noise import default_cases
from ldct_clip.metrics import score_slices
from ldct_clip.ood import PER_IMAGE_CSV, TABLE_CSV, TABLE_MD, case_label


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_pipeline("ood_benchmark")


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = 0.5 + 0.35 * np.sin(xx / 5)[..., None] * np.cos(yy / 7)[..., None] * np.array([1.0, 0.7, 0.4])
    return (255 * np.clip(smooth + rng.normal(0, 0.02, smooth.shape), 0, 1)).astype(np.uint8)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ood")
    rng = np.random.default_rng(0)
    kodak = base / "Kodak24"
    kodak.mkdir()
    for i, (h, w) in enumerate(((40, 36), (33, 45))):  # not multiples of 32: the model pads
        Image.fromarray(_photo(rng, h, w)).save(kodak / f"kodim{i:02d}.png")
    polyu = base / "PolyU"
    polyu.mkdir()
    for key in ("Canon_a", "Nikon_b"):
        clean = _photo(rng, 36, 36)
        Image.fromarray(clean).save(polyu / f"{key}_mean.png")
        noisy = np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(polyu / f"{key}_real.png")
    checkpoints = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        checkpoints.append(save_checkpoint(CLIPDenoiser(in_channels=3, encoder_weights="random"),
                                           base / f"model{seed}" / "best.safetensors"))
    return {"kodak": kodak, "polyu": polyu, "ckpt1": checkpoints[0], "ckpt2": checkpoints[1], "base": base}


def _run(script: ModuleType, data: dict[str, Path], out: Path, *extra: str) -> list[dict[str, str]]:
    argv = ["--checkpoint", str(data["ckpt1"]), "--checkpoint", str(data["ckpt2"]), "--output", str(out),
            "--device", "cpu", "--no-progress", *extra]
    assert run_cli(script.main, argv) == 0
    with open(out / TABLE_CSV, newline="") as f:
        return list(csv.DictReader(f))


def test_table_has_every_case_is_reproducible_and_quotes_the_paper(script: ModuleType, data: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    rows = _run(script, data, tmp_path / "a", "--images", str(data["kodak"]))
    cases = default_cases()
    assert [(r["noise"], float(r["level"])) for r in rows] == cases
    models = ["model1/best", "model2/best"]
    assert list(rows[0])[2:] == [f"{m} {k}" for m in models for k in ("PSNR", "SSIM")] + [
        "paper CLIPDenoising PSNR (quoted)", "paper CLIPDenoising SSIM (quoted)"]
    gauss50 = rows[cases.index(("gaussian", 50.0))]
    assert gauss50["paper CLIPDenoising PSNR (quoted)"] == "27.39"
    assert gauss50["paper CLIPDenoising SSIM (quoted)"] == "0.723"
    psnrs = np.array([[float(r[f"{m} PSNR"]) for m in models] for r in rows])
    assert np.all((psnrs > 5) & (psnrs < 60)) and not np.array_equal(psnrs[:, 0], psnrs[:, 1])

    again = tmp_path / "b"
    assert _run(script, data, again, "--images", str(data["kodak"])) == rows
    assert (again / PER_IMAGE_CSV).read_text() == (tmp_path / "a" / PER_IMAGE_CSV).read_text()

    table = (tmp_path / "a" / TABLE_MD).read_text()
    assert "# OOD noise benchmark: Kodak24 (2 images)" in table and "CLIPDenoising (paper, quoted)" in table
    body = [line for line in table.splitlines() if line.startswith("| ") and "Level" not in line]
    assert len(body) == len(cases)
    for line, case in zip(body, cases, strict=True):
        noise, level = case_label(case).rsplit(" ", 1)
        assert line.startswith(f"| {noise} | {level} |") and line.count("**") >= 4  # best PSNR and best SSIM


def test_noise_is_seeded_per_image_like_the_released_script(script: ModuleType, data: dict[str, Path],
                                                            tmp_path: Path) -> None:
    _run(script, data, tmp_path, "--images", str(data["kodak"]), "--noise", "gaussian:25", "--seed", "3")
    with open(tmp_path / PER_IMAGE_CSV, newline="") as f:
        per_image = [r for r in csv.DictReader(f) if r["model"] == "model1/best"]
    model = load_checkpoint(data["ckpt1"])
    for row in per_image:
        clean = read_image(data["kodak"] / row["image"], 3)
        h, w = clean.shape[1:]
        noisy = clean + np.random.RandomState(3).normal(0, 25 / 255, (h, w, 3)).transpose(2, 0, 1).astype(np.float32)
        with torch.inference_mode():
            pred = model(torch.from_numpy(noisy)[None]).numpy()
        expected = score_slices(np.clip(pred, 0, 1) * 255, clean[None] * 255, "natural")
        assert float(row["psnr"]) == pytest.approx(float(expected["psnr"][0]), abs=1e-9)
        assert float(row["ssim"]) == pytest.approx(float(expected["ssim"][0]), abs=1e-9)


def test_real_noise_folder_scores_stored_pairs(script: ModuleType, data: dict[str, Path], tmp_path: Path) -> None:
    rows = _run(script, data, tmp_path, "--images", str(data["polyu"]))
    assert [(r["noise"], r["level"]) for r in rows] == [("real", "")]
    assert rows[0]["paper CLIPDenoising PSNR (quoted)"] == "37.54"
    assert rows[0]["paper CLIPDenoising SSIM (quoted)"] == "0.960"
    with open(tmp_path / PER_IMAGE_CSV, newline="") as f:
        assert sorted({r["image"] for r in csv.DictReader(f)}) == ["Canon_a_mean", "Nikon_b_mean"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--noise", "gauss:25"],
         "unknown noise 'gauss' in --noise 'gauss:25'; valid noises: gaussian, spatial_gaussian"),
        (["--noise", "real"], "'real' noise needs a paired folder"),
        (["--noise", "speckle:-1"], "speckle variance must be >= 0, got -1"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(script: ModuleType, data: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    argv = ["--checkpoint", str(data["ckpt1"]), "--images", str(data["kodak"]), "--output", str(tmp_path / "o"),
            "--no-progress", *extra]
    assert run_cli(script.main, argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
