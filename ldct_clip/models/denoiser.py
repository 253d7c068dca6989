"""CLIPDenoiser: pad -> adapter -> frozen CLIP trunk -> feature augmentation -> decoder -> crop."""

from __future__ import annotations

import math
import os
import typing
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldct_clip.models.adapter import GrayToRGB
from ldct_clip.models.augment import FeatureAugmentation
from ldct_clip.models.decoder import Decoder
from ldct_clip.models.encoder import OPENAI_TAG, CLIPEncoder

#: Spatial sizes are padded to a multiple of this so the skips line up at every level.
SIZE_MULTIPLE = 32
IN_CHANNELS = (1, 3)
BnMode = Literal["adapt", "frozen"]
BN_MODES: tuple[str, ...] = typing.get_args(BnMode)


@dataclass(frozen=True)
class DenoiserConfig:
    """Settings of a :class:`CLIPDenoiser` (the ``model`` section of a clipdenoising config).

    ``encoder_weights`` records where the frozen trunk came from when the model was built (``openai``, a
    file, ``random``); a checkpoint holds the trunk's tensors, so loading one never reads that source again.
    """

    in_channels: int = 1
    encoder_weights: str = OPENAI_TAG
    bn: BnMode = "adapt"
    pfa_gamma: float = 0.025

    def __post_init__(self) -> None:
        if self.in_channels not in IN_CHANNELS:
            raise ValueError(f"in_channels must be one of {IN_CHANNELS} (1 = CT, 3 = RGB), got {self.in_channels!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, got {self.bn!r}")
        if not (isinstance(self.pfa_gamma, (int, float)) and not isinstance(self.pfa_gamma, bool)
                and math.isfinite(self.pfa_gamma) and self.pfa_gamma >= 0):
            raise ValueError(f"pfa_gamma must be a number >= 0, got {self.pfa_gamma!r}")
        if not isinstance(self.encoder_weights, str):
            object.__setattr__(self, "encoder_weights", os.fspath(self.encoder_weights))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class CLIPDenoiser(nn.Module):
    """The CLIPDenoising network (Cheng et al., CVPR 2024) as in the authors' released code.

    Input and output are images on the model scale ([0, 1] for CT: (HU + 1024) / 4096), N x C x H x W with
    any H, W >= 32: the input is reflect-padded to a multiple of 32 and the output cropped back. No CLIP
    mean/std normalisation is applied, as in the released code.

    Args:
        in_channels: 1 for CT (a learnable 1x1 adapter makes RGB for the encoder), 3 for RGB images.
        encoder_weights: ``"openai"``, a path to ``RN50.pt`` / an open_clip checkpoint, or ``"random"``.
        bn: ``"adapt"`` leaves the frozen encoder's BatchNorm layers in training mode during training, so
            their running statistics adapt to the data (released code); ``"frozen"`` keeps them in eval mode.
        pfa_gamma: progressive feature augmentation strength (0.025 CT/synthetic, 0.05 sRGB).

    >>> model = CLIPDenoiser(in_channels=1, encoder_weights="random").eval()
    >>> model(torch.rand(1, 1, 100, 130)).shape
    torch.Size([1, 1, 100, 130])
    """

    method = "clipdenoising"
    """Registry name of the method (:mod:`ldct_clip.methods`)."""

    def __init__(
        self,
        in_channels: int = DenoiserConfig.in_channels,
        encoder_weights: str | os.PathLike[str] = DenoiserConfig.encoder_weights,
        bn: str = DenoiserConfig.bn,
        pfa_gamma: float = DenoiserConfig.pfa_gamma,
    ) -> None:
        super().__init__()
        self.config = DenoiserConfig(in_channels=in_channels, encoder_weights=os.fspath(encoder_weights), bn=bn,
                                     pfa_gamma=pfa_gamma)
        self.adapter = GrayToRGB() if in_channels == 1 else None
        self.encoder = CLIPEncoder(encoder_weights)
        self.augment = FeatureAugmentation(pfa_gamma)
        self.decoder = Decoder(out_channels=in_channels)

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def settings(self) -> DenoiserConfig:
        """The settings it was built from (the interface every method's network shares)."""
        return self.config

    @property
    def encoder_weight_source(self) -> str:
        return self.encoder.weight_source

    def train(self, mode: bool = True) -> CLIPDenoiser:
        """Set training mode; with ``bn="frozen"`` the encoder stays in eval mode."""
        super().train(mode)
        if self.config.bn == "frozen":
            self.encoder.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The adapter's and decoder's parameters: everything the optimizer should see."""
        return [p for p in self.parameters() if p.requires_grad]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is a finite N x in_channels x H x W tensor with H, W >= 32."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D tensor N x {self.in_channels} x H x W, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} channel(s) (model built with in_channels={self.in_channels}), "
                f"got shape {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < SIZE_MULTIPLE:
            raise ValueError(f"expected H and W >= {SIZE_MULTIPLE}, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("input contains NaN or Inf values; check the image's HU conversion")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        image = self.adapter(x) if self.adapter is not None else x
        if image.requires_grad:
            features = self.encoder(image)
        else:  # nothing upstream learns: skip building the encoder's autograd graph
            with torch.no_grad():
                features = self.encoder(image)
        out = self.decoder(image, self.augment(features))
        return out[..., :h, :w]
