"""The natural-image and sRGB smoke configs train end to end on scikit-image's bundled photos.

The sRGB pairs are made by the camera pipeline first, as a user would with pipelines/make_srgb_pairs.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from ldct_clip import load_checkpoint
from ldct_clip.data.images import paired_files, read_image
from ldct_clip.data.isp import write_srgb_pairs
from ldct_clip.train import main as train_main

ROOT = Path(__file__).resolve().parent.parent
CROP = 64
SHORT = ["schedule.iterations=2", "schedule.flat_iterations=0", "train.val_every=2", "train.log_every=1",
         "train.checkpoint_every=2"]


def _save_crops(folder: Path, photos: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for name, photo in photos.items():
        y, x = (photo.shape[0] - CROP) // 2, (photo.shape[1] - CROP) // 2
        Image.fromarray(photo[y:y + CROP, x:x + CROP]).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("photos")
    train = _save_crops(base / "train", {"astronaut": skimage.data.astronaut(), "chelsea": skimage.data.chelsea(),
                                         "coffee": skimage.data.coffee()})
    val = _save_crops(base / "val", {"rocket": skimage.data.rocket()})
    return {"train": train, "val": val, "base": base}


def _train(config: str, data_root: Path, val_root: Path, run_dir: Path) -> dict:
    argv = ["--config", str(ROOT / "configs" / f"{config}.yaml"), "--data-root", str(data_root),
            "--output-dir", str(run_dir), "--set", f"data.val_root={val_root}"]
    assert train_main([*argv, *[arg for kv in SHORT for arg in ("--set", kv)]]) == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["config"]["name"] == config and info["encoder_is_random"] is True
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses)
    validation = [r for r in records if "val_psnr" in r]
    assert len(validation) == 1 and math.isfinite(validation[0]["val_psnr"]) and 0 < validation[0]["val_ssim"] <= 1
    model = load_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    assert model.in_channels == 3
    return info


def test_natural_gaussian_smoke_config_trains_on_photos(photos: dict[str, Path], tmp_path: Path) -> None:
    info = _train("natural_gaussian_sigma15_smoke", photos["train"], photos["val"], tmp_path / "run")
    assert info["config"]["data"]["kind"] == "image_folder" and info["config"]["data"]["noise_sigma"] == 15.0


def test_srgb_smoke_config_trains_on_camera_pipeline_pairs(photos: dict[str, Path], tmp_path: Path) -> None:
    train_pairs = write_srgb_pairs(photos["train"], tmp_path / "srgb_train", seed=0, progress=False)
    val_pairs = write_srgb_pairs(photos["val"], tmp_path / "srgb_val", seed=1, progress=False)
    pairs = paired_files(train_pairs)
    assert [c.name for c, _ in pairs] == ["astronaut.png", "chelsea.png", "coffee.png"]
    assert all(np.abs(read_image(n, 3) - read_image(c, 3)).mean() > 3 / 255 for c, n in pairs)
    info = _train("srgb_poisson_gaussian_smoke", train_pairs, val_pairs, tmp_path / "run")
    assert info["config"]["data"]["kind"] == "paired_folder" and info["config"]["model"]["pfa_gamma"] == 0.05
