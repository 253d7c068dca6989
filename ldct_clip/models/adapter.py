"""The learnable 1x1 grayscale -> RGB adapter in front of the encoder for CT."""

from __future__ import annotations

from torch import nn


class GrayToRGB(nn.Conv2d):
    """``Conv2d(1, 3, kernel_size=1, bias=False)``: three learnable weights that map one CT channel to RGB.

    Its output is the encoder input and also the "noisy image" the decoder's last level concatenates.

    >>> sum(p.numel() for p in GrayToRGB().parameters())
    3
    """

    def __init__(self) -> None:
        super().__init__(1, 3, kernel_size=1, bias=False)
