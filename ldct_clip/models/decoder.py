"""The learnable decoder: four levels of upsample + concat skip + conv block, bias-free 3x3 convs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldct_clip.models.encoder import FEATURE_CHANNELS

#: Output channels of the decoder levels 4, 3, 2, 1b, 1a (released code).
LEVEL_CHANNELS = (512, 256, 128, 64, 64)
IMAGE_CHANNELS = 3  # the (adapted) noisy image concatenated at the last level is always RGB


class ConvBlock(nn.Sequential):
    """conv3x3 -> LeakyReLU(0.2) -> conv3x3 -> LeakyReLU(0.2), no bias."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        )


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 with ``align_corners=True``, as in the released code."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Decoder(nn.Module):
    """Decode F1..F4 and the 3-channel noisy image into the clean image.

    level 4 (H/16): block(1024 -> 512); level 3: up, concat F3, block(1024 -> 256); level 2: up, concat F2,
    block(512 -> 128); level 1b: up, concat F1, block(192 -> 64); level 1a: up, concat image,
    block(67 -> 64); output conv3x3(64 -> out_channels), no residual and no output activation.

    Args:
        out_channels: 1 for CT, 3 for RGB.

    >>> sum(p.numel() for p in Decoder(1).parameters())
    10987776
    """

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        c1, c2, c3, c4 = FEATURE_CHANNELS
        d4, d3, d2, d1b, d1a = LEVEL_CHANNELS
        self.level4 = ConvBlock(c4, d4)
        self.level3 = ConvBlock(d4 + c3, d3)
        self.level2 = ConvBlock(d3 + c2, d2)
        self.level1b = ConvBlock(d2 + c1, d1b)
        self.level1a = ConvBlock(d1b + IMAGE_CHANNELS, d1a)
        self.output = nn.Conv2d(d1a, out_channels, 3, padding=1, bias=False)

    def forward(self, image: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3, f4 = features
        x = self.level4(f4)
        x = self.level3(torch.cat([upsample2x(x), f3], dim=1))
        x = self.level2(torch.cat([upsample2x(x), f2], dim=1))
        x = self.level1b(torch.cat([upsample2x(x), f1], dim=1))
        x = self.level1a(torch.cat([upsample2x(x), image], dim=1))
        return self.output(x)
