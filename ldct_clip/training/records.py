"""What a run folder holds: its file names, the training curves and the run record (run.json)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

import torch
from torch import nn

from ldct_clip.atomic import partial_path
from ldct_clip.config import ExperimentConfig
from ldct_clip.models.encoder import RANDOM
from ldct_clip.training_data import TrainingData

CHECKPOINT_DIR = "checkpoints"
LAST, BEST, RESUME = "last.safetensors", "best.safetensors", "resume.safetensors"
METRICS_LOG, CURVES, RUN_INFO, CONFIG_FILE = "metrics.jsonl", "curves.png", "run.json", "config.yaml"
_REPORTED_PACKAGES = ("torch", "torchvision", "open_clip_torch", "monai", "pydicom", "numpy", "safetensors")


def plot_curves(log_path: Path, png_path: Path) -> None:
    """Draw the training loss and validation PSNR against the step into ``png_path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_psnr"]) for r in records if "val_psnr" in r]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.5))
    if train:
        ax_loss.plot(*zip(*train))
    ax_loss.set(xlabel="step", ylabel="L1 loss", title="training loss", yscale="log" if train else "linear")
    if val:
        ax_psnr.plot(*zip(*val), marker="o")
    ax_psnr.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR")
    fig.tight_layout()
    temp = partial_path(png_path, ".png")
    fig.savefig(temp, dpi=100)
    plt.close(fig)
    os.replace(temp, png_path)


def write_run_info(run_dir: Path, config: ExperimentConfig, model: nn.Module, data: TrainingData, world_size: int,
                   device: torch.device) -> None:
    """Record what a run was made of: config, versions, git commit, split patients, weight source."""
    from ldct_clip import __version__

    versions = {}
    for name in _REPORTED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    info = {
        "config": config.to_dict(),
        "ldct_clip_version": __version__,
        "git_commit": _git_commit(),
        "packages": versions,
        "python": platform.python_version(),
        "seed": config.train.seed,
        "split": data.split_info,
        "method": config.method,
        "encoder_weights": getattr(model, "encoder_weight_source", None),
        "encoder_weights_sha256": getattr(getattr(model, "encoder", None), "weight_sha256", None),
        "encoder_is_random": getattr(model, "encoder_weight_source", None) == RANDOM,
        "world_size": world_size,
        "device": str(device),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = run_dir / RUN_INFO
    if path.exists():  # a resumed run keeps its history
        previous = json.loads(path.read_text())
        info["started"] = previous.get("started", info["started"])
        info["resumed"] = [*previous.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")]
    temp = partial_path(path)
    temp.write_text(json.dumps(info, indent=2))
    os.replace(temp, path)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None
