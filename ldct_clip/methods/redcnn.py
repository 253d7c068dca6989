"""RED-CNN (Chen et al. 2017), as the SSinyu/RED-CNN code trains it: the supervised reference.

Network: :class:`~ldct_clip.models.redcnn.RedCNN` (5 conv + 5 transposed conv, 96 channels, shortcuts).
Training batch: random 64×64 patch pairs of quarter- and full-dose slices of the training patients, 10 per
slice pair (:func:`ldct_clip.training_data.paired_patch_data`). Loss: MSE. Scale: ``(HU + 1024) / 4096``.
Inference: one forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ldct_clip.data.hu import MODEL_SCALE
from ldct_clip.methods.base import Method, register
from ldct_clip.models.redcnn import RedCNN as _RedCNN
from ldct_clip.models.redcnn import RedCNNSettings

if TYPE_CHECKING:
    from ldct_clip.config import ExperimentConfig
    from ldct_clip.training_data import TrainingData


class RedCNN(_RedCNN):
    """RED-CNN as the ``redcnn`` method's network (same tensors as :class:`ldct_clip.models.redcnn.RedCNN`)."""

    method = "redcnn"
    in_channels = 1

    def __init__(self, settings: RedCNNSettings = RedCNNSettings()) -> None:
        super().__init__(settings.channels)


def mse_loss(network: nn.Module, model: nn.Module, batch: Mapping[str, torch.Tensor],
             generator: torch.Generator) -> torch.Tensor:
    """Mean squared error between the denoised quarter-dose patch and its full-dose patch."""
    return F.mse_loss(network(batch["noisy"]).float(), batch["clean"])


def _training_data(config: ExperimentConfig, run_dir: Path) -> TrainingData:
    from ldct_clip.training_data import paired_patch_data

    return paired_patch_data(config, run_dir, MODEL_SCALE)


METHOD = register(Method(
    name="redcnn",
    title="RED-CNN",
    settings_type=RedCNNSettings,
    build=RedCNN,
    training_data=_training_data,
    loss=mse_loss,
    paper_preset="redcnn",
    supervision="quarter/full-dose patch pairs of the training patients (supervised)",
))
