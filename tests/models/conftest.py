"""Model fixtures: building the trunk takes about a second, so share instances per module."""

from __future__ import annotations

import pytest
import torch

from ldct_clip.models.denoiser import CLIPDenoiser


@pytest.fixture(scope="module")
def ct_model() -> CLIPDenoiser:
    torch.manual_seed(0)
    return CLIPDenoiser(in_channels=1, encoder_weights="random")


@pytest.fixture(scope="module")
def rgb_model() -> CLIPDenoiser:
    torch.manual_seed(0)
    return CLIPDenoiser(in_channels=3, encoder_weights="random")
