"""CLIPDenoising (Cheng, Liang, Tan; CVPR 2024): the toolkit's own method.

Network: :class:`~ldct_clip.models.denoiser.CLIPDenoiser` (frozen CLIP RN50 trunk, learned decoder).
Training batch: full-dose patches with online Gaussian noise of ``data.noise_sigma``/255 on the model scale
(:func:`ldct_clip.training_data.gaussian_noise_data`; natural-image and sRGB folders too). Loss: L1.
Inference: one forward pass on ``(HU + 1024) / 4096``. For inference the network runs on a copy in
channels-last memory format with the frozen encoder's BatchNorm folded into its convolutions (the same
arithmetic, fewer passes over memory; see :mod:`ldct_clip.inference` for the measured speed).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse as fuse_conv_bn

from ldct_clip.methods.base import Method, register
from ldct_clip.models.denoiser import SIZE_MULTIPLE, CLIPDenoiser, DenoiserConfig
from ldct_clip.models.encoder import FROM_CHECKPOINT

if TYPE_CHECKING:
    from ldct_clip.config import ExperimentConfig
    from ldct_clip.training_data import TrainingData


def build(settings: DenoiserConfig) -> CLIPDenoiser:
    """The network of ``settings`` (the encoder weights are loaded from ``settings.encoder_weights``)."""
    return CLIPDenoiser(in_channels=settings.in_channels, encoder_weights=settings.encoder_weights,
                        bn=settings.bn, pfa_gamma=settings.pfa_gamma)


def skeleton(settings: DenoiserConfig) -> CLIPDenoiser:
    """A network of ``settings`` whose trunk a checkpoint fills: the recorded encoder source is not read."""
    model = CLIPDenoiser(in_channels=settings.in_channels, encoder_weights=FROM_CHECKPOINT, bn=settings.bn,
                         pfa_gamma=settings.pfa_gamma)
    model.config = settings
    return model


def training_data(config: ExperimentConfig, run_dir: Path) -> TrainingData:
    """Clean images with online Gaussian noise (:func:`ldct_clip.training_data.gaussian_noise_data`)."""
    from ldct_clip.training_data import gaussian_noise_data  # MONAI-based: imported when training starts

    return gaussian_noise_data(config, run_dir)


def l1_loss(network: nn.Module, model: nn.Module, batch: Mapping[str, torch.Tensor],
            generator: torch.Generator) -> torch.Tensor:
    """L1 between the denoised noisy patch and its clean target (released configs)."""
    return F.l1_loss(network(batch["noisy"]).float(), batch["clean"])


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """An eval-mode copy on ``device`` in channels-last format with BatchNorm folded into the encoder's convs."""
    prepared = copy.deepcopy(model).eval().requires_grad_(False)
    prepared.add_module("encoder", fuse_conv_bn(prepared.encoder, inplace=True))
    if prepared.adapter is not None:
        prepared.adapter.register_forward_hook(_to_channels_last)
    return prepared.to(device).to(memory_format=torch.channels_last)


def _to_channels_last(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the adapter's 3-channel output in channels-last layout.

    A 1-channel input is both channels-first and channels-last, so the 1x1 adapter conv returns
    channels-first; the decoder's last concat then mixes layouts and takes a slow copying path (about
    a fifth of the bf16 run time at 512x512).
    """
    return output.contiguous(memory_format=torch.channels_last)


METHOD = register(Method(
    name="clipdenoising",
    title="CLIPDenoising",
    settings_type=DenoiserConfig,
    build=build,
    training_data=training_data,
    loss=l1_loss,
    paper_preset="clipdenoising",
    trains_on_added_noise=True,
    size_multiple=1,  # the network pads to SIZE_MULTIPLE itself
    supervision=f"full-dose images with online Gaussian noise (any size; pads to {SIZE_MULTIPLE} inside)",
    prepare_fn=prepare_for_inference,
    skeleton_fn=skeleton,
))
