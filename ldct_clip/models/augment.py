"""Progressive feature augmentation (PFA): multiplicative noise on the encoder features, training only."""

from __future__ import annotations

import torch
from torch import nn


class FeatureAugmentation(nn.Module):
    """Scale each feature element by alpha ~ N(1, (gamma * i)^2) for scale i = 1..4, in training mode only.

    Deeper features get stronger perturbation, so the decoder cannot overfit to any single scale. The
    input image is not perturbed. In eval mode (or with gamma 0) the features pass unchanged.

    Args:
        gamma: base spread; 0.025 for CT and synthetic noise, 0.05 for sRGB.

    >>> aug = FeatureAugmentation(0.025).eval()
    >>> f = [torch.ones(1, 2, 4, 4)]
    >>> torch.equal(aug(f)[0], f[0])
    True
    """

    def __init__(self, gamma: float) -> None:
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"pfa_gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self.training or self.gamma == 0:
            return features
        return [f * (1 + self.gamma * i * torch.randn_like(f)) for i, f in enumerate(features, start=1)]

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"
