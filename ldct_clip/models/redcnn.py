"""RED-CNN (Chen et al., 2017): a residual encoder-decoder of unpadded 5x5 convolutions, as officially built.

Official: ``networks.py`` of SSinyu/RED-CNN (``RED_CNN(out_ch=96)``; its ``nn.Conv2D`` is read as
``nn.Conv2d``). Module names follow the official ones, so an official state dict loads with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

KERNEL = 5
"""Kernel side of every (transposed) convolution; unpadded, each conv shrinks H and W by ``KERNEL - 1``."""
DEPTH = 5
"""Convolutions in the encoder (and transposed convolutions in the decoder)."""
MIN_SIZE = DEPTH * (KERNEL - 1) + 1
"""Smallest H and W (21): the five unpadded convs leave at least one pixel."""


@dataclass(frozen=True)
class RedCNNSettings:
    """The architecture choice a checkpoint must reproduce: feature channels of every hidden layer.

    >>> RedCNNSettings().to_dict()
    {'channels': 96}
    """

    channels: int = 96

    def __post_init__(self) -> None:
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"channels must be an integer >= 1, got {self.channels!r}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class RedCNN(nn.Module):
    """RED-CNN on one-channel images N x 1 x H x W, H, W >= 21; the output has the input's shape.

    conv1..conv5 (5x5, no padding, ReLU after each), tconv1..tconv5 (5x5 transposed, no padding);
    shortcuts: conv4's output is added after tconv1, conv2's after tconv3 and the input after tconv5,
    with ReLU before each of tconv2..tconv5 and on the final sum (so the output is >= 0, matching the
    official scale (HU + 1024) / 4096 where air is 0).

    >>> RedCNN(channels=8)(torch.rand(2, 1, 21, 30)).shape
    torch.Size([2, 1, 21, 30])
    """

    def __init__(self, channels: int = 96) -> None:
        super().__init__()
        self.settings = RedCNNSettings(channels=channels)
        widths = [1] + [channels] * DEPTH
        for i in range(DEPTH):
            self.add_module(f"conv{i + 1}", nn.Conv2d(widths[i], widths[i + 1], KERNEL))
        for i in range(DEPTH):
            self.add_module(f"tconv{i + 1}", nn.ConvTranspose2d(widths[DEPTH - i], widths[DEPTH - i - 1], KERNEL))
        self.relu = nn.ReLU()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is N x 1 x H x W with H, W >= 21."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected a tensor N x 1 x H x W, got {shape}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"expected H and W >= {MIN_SIZE}, got {tuple(x.shape[-2:])}; pad the image first")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        out = self.relu(self.conv1(x))
        skip2 = self.relu(self.conv2(out))
        out = self.relu(self.conv3(skip2))
        skip4 = self.relu(self.conv4(out))
        out = self.relu(self.conv5(skip4))
        out = self.tconv1(out) + skip4
        out = self.tconv3(self.relu(self.tconv2(self.relu(out)))) + skip2
        out = self.tconv5(self.relu(self.tconv4(self.relu(out)))) + x
        return self.relu(out)
