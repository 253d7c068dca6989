"""Noise2Sim (Niu et al.), as its official code trains it on AAPM-Mayo (``configs/ldct_mayo_unet2.py``).

Network: :class:`~ldct_clip.models.unet2.UNet2` (96/192/384 channels, output = input + residual).
Training batch: a quarter-dose slice and a nearby quarter-dose slice of the same patient (offset 1..2)
as its target; pixels whose 7×7 mean differs by more than 30 HU between the two are left out of the loss
(:func:`ldct_clip.training_data.adjacent_slice_data`). Loss: 10 × L1 over all pixels of the masked images.
Scale: HU clipped to the window [-160, 240] and mapped to [0, 1].

Inference: one forward pass, output clipped to [0, 1] (official). The network never sees HU outside its
window, so the official output is the window only; here pixels whose low-dose HU lies outside the window
keep their low-dose value, so that full-range metrics (the ``clipdenoising`` preset) score air and bone
sensibly (a deviation for those presets; under the windowed presets the two are identical).
``model.window_hu`` widens the window (e.g. [-1024, 3072] to train on the full range).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ldct_clip.data.hu import WINDOWS, IntensityScale
from ldct_clip.methods.base import Method, register
from ldct_clip.models.unet2 import SIZE_MULTIPLE, UNet2, UNet2Settings

if TYPE_CHECKING:
    from ldct_clip.config import ExperimentConfig
    from ldct_clip.training_data import TrainingData

LOSS_WEIGHT = 10.0
"""The official loss weight of the masked L1."""


@dataclass(frozen=True)
class Noise2SimSettings:
    """UNet2's settings plus the HU window the network works in (official: [-160, 240])."""

    in_channels: int = UNet2Settings.in_channels
    features: tuple[int, ...] = UNet2Settings.features
    window_hu: tuple[float, float] = WINDOWS["abdomen"]

    def __post_init__(self) -> None:
        UNet2Settings(self.in_channels, tuple(self.features))  # its own checks
        IntensityScale(*self.window_hu, clip=True)

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class Noise2Sim(UNet2):
    """UNet2 as the ``noise2sim`` method's network (same tensors as :class:`UNet2`)."""

    method = "noise2sim"

    def __init__(self, settings: Noise2SimSettings = Noise2SimSettings()) -> None:
        super().__init__(settings.in_channels, tuple(settings.features))
        self.settings = settings

    @property
    def in_channels(self) -> int:
        return self.settings.in_channels


def masked_l1(network: nn.Module, model: nn.Module, batch: Mapping[str, torch.Tensor],
              generator: torch.Generator) -> torch.Tensor:
    """10 × mean |(f(x) − y) · w| over all pixels (official: both images masked, then L1Loss, × 10)."""
    weight = batch["weight"]
    return LOSS_WEIGHT * ((network(batch["noisy"]).float() - batch["clean"]) * weight).abs().mean()


def _scale(settings: Noise2SimSettings) -> IntensityScale:
    return IntensityScale(*settings.window_hu, clip=True)


def _denoise(model: nn.Module, x: torch.Tensor, steps: int | None, progress: bool) -> torch.Tensor:
    return model(x).clamp(0.0, 1.0)


def _to_hu(scale: IntensityScale, y: torch.Tensor, hu_in: torch.Tensor) -> torch.Tensor:
    outside = (hu_in < scale.lo) | (hu_in > scale.hi)
    return torch.where(outside, hu_in, scale.to_hu(y))


def _training_data(config: ExperimentConfig, run_dir: Path) -> TrainingData:
    from ldct_clip.training_data import adjacent_slice_data

    return adjacent_slice_data(config, run_dir, _scale(config.model))


METHOD = register(Method(
    name="noise2sim",
    title="Noise2Sim",
    settings_type=Noise2SimSettings,
    build=Noise2Sim,
    training_data=_training_data,
    loss=masked_l1,
    paper_preset="noise2sim",
    size_multiple=SIZE_MULTIPLE,
    supervision="low-dose slices only: nearby slices of the same patient as targets (self-supervised)",
    scale_of=_scale,
    denoise_fn=_denoise,
    to_hu_fn=_to_hu,
))
