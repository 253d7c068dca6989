"""Noise2Sim's UNet2 (Niu et al.): a two-level residual U-Net, built as in the official code.

Official: ``noise2sim/modeling/networks/unet.py`` (``UNet2``, ``DoubleConv``, ``Down``, ``Up``, ``OutConv``)
with the LDCT config ``configs/ldct_mayo_unet2.py`` (``n_channels = n_classes = 1``, ReLU, BatchNorm,
transposed-conv upsampling, ``residual=True``). Module names follow the official ones, so an official
state dict loads with ``strict=True`` (after removing its ``base_net.`` / ``module.`` key prefixes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

SIZE_MULTIPLE = 4
"""H and W must be multiples of this (two 2x poolings); pad by reflection before the network otherwise."""
LEVELS = 3
"""Feature levels: full, 1/2 and 1/4 resolution (two downsamplings)."""


@dataclass(frozen=True)
class UNet2Settings:
    """The architecture choices a checkpoint must reproduce; ``features`` are the channels per level.

    >>> UNet2Settings().to_dict()
    {'in_channels': 1, 'features': [96, 192, 384]}
    """

    in_channels: int = 1
    features: tuple[int, ...] = (96, 192, 384)

    def __post_init__(self) -> None:
        if isinstance(self.in_channels, bool) or not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise ValueError(f"in_channels must be an integer >= 1, got {self.in_channels!r}")
        features = tuple(self.features) if isinstance(self.features, (list, tuple)) else self.features
        if not (
            isinstance(features, tuple)
            and len(features) == LEVELS
            and all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in features)
        ):
            raise ValueError(f"features must be {LEVELS} integers >= 1 (channels per level), got {self.features!r}")
        object.__setattr__(self, "features", features)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready settings (``features`` as a list); ``UNet2Settings(**d)`` rebuilds them."""
        settings = asdict(self)
        settings["features"] = list(self.features)
        return settings


class DoubleConv(nn.Module):
    """(3x3 conv with bias, padding 1 -> BatchNorm -> ReLU) x 2; official ``DoubleConv(use_bn=True)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """2x2 max-pool, then a :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """2x2 stride-2 transposed conv to the skip's channels, concatenate ``[skip, up]``, :class:`DoubleConv`.

    The official ``Up`` maps ``in -> in // 2`` channels and expects the skip to have ``in // 2``; here the
    transposed conv maps to the skip's channel count, which is the same layer for the official features
    (96, 192, 384). The official code zero-pads the upsampled map to the skip's size when they differ
    (odd sizes); sizes here are multiples of 4, so they never differ.
    """

    def __init__(self, in_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * skip_channels, skip_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class OutConv(nn.Module):
    """1x1 conv head (with bias)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet2(nn.Module):
    """Noise2Sim's denoiser: ``output = input + head(U-Net(input))``, N x C x H x W, H and W multiples of 4.

    Levels of ``features`` channels at full, 1/2 and 1/4 resolution; default initialisation (PyTorch's,
    as the official code), so the network is not the identity at start. Input on Noise2Sim's scale
    (HU clipped to [-160, 240] and mapped to [0, 1]); the official inference clips the output to [0, 1].

    >>> model = UNet2().eval()
    >>> model(torch.rand(1, 1, 32, 40)).shape
    torch.Size([1, 1, 32, 40])
    """

    def __init__(self, in_channels: int = 1, features: tuple[int, ...] = (96, 192, 384)) -> None:
        super().__init__()
        self.settings = UNet2Settings(in_channels=in_channels, features=features)
        f0, f1, f2 = self.settings.features
        self.inc = DoubleConv(in_channels, f0)
        self.down1 = Down(f0, f1)
        self.down2 = Down(f1, f2)
        self.up1 = Up(f2, f1)
        self.up2 = Up(f1, f0)
        self.outc = OutConv(f0, in_channels)

    @property
    def in_channels(self) -> int:
        return self.settings.in_channels

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is N x in_channels x H x W with H, W positive multiples of 4."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected a tensor N x {self.in_channels} x H x W, got {shape}")
        h, w = x.shape[-2:]
        if h < SIZE_MULTIPLE or w < SIZE_MULTIPLE or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(
                f"expected H and W to be multiples of {SIZE_MULTIPLE}, got {h}x{w}; reflect-pad the image first"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features at full resolution (``f0`` channels), the input of the 1x1 head."""
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        return self.up2(self.up1(x3, x2), x1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x + self.outc(self.features(x))
