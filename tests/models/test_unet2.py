"""UNet2 (Noise2Sim): official layout and parameter count, residual output, skip order, size checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldct_clip.models.unet2 import UNet2, UNet2Settings

OFFICIAL_PARAMETERS = 4_191_073
"""Official UNet2(n_channels=1, n_classes=1, residual=True, use_bn=True) counted with torch, same build."""


@pytest.fixture(scope="module")
def small() -> UNet2:
    torch.manual_seed(0)
    return UNet2(in_channels=1, features=(4, 8, 16)).eval()


def test_default_network_matches_the_official_count_and_layout() -> None:
    model = UNet2()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS
    state = model.state_dict()
    assert len(state) == 76  # as official: 13 (transposed) convs x (weight, bias) + 10 BatchNorms x 5 entries
    shapes = {
        "inc.double_conv.0.weight": (96, 1, 3, 3),
        "inc.double_conv.1.running_var": (96,),
        "down1.maxpool_conv.1.double_conv.0.weight": (192, 96, 3, 3),
        "down2.maxpool_conv.1.double_conv.3.weight": (384, 384, 3, 3),
        "up1.up.weight": (384, 192, 2, 2),  # transposed conv 384 -> 192, 2x2 stride 2
        "up1.conv.double_conv.0.weight": (192, 384, 3, 3),  # after concatenating the 192-channel skip
        "up2.up.weight": (192, 96, 2, 2),
        "up2.conv.double_conv.0.weight": (96, 192, 3, 3),
        "outc.conv.weight": (1, 96, 1, 1),
        "outc.conv.bias": (1,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 11 and all(c.bias is not None for c in convs)  # biases even before BatchNorm
    assert all(c.padding == (1, 1) for c in convs if c.kernel_size == (3, 3))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 10
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2


def test_output_is_input_plus_head_of_features(small: UNet2) -> None:
    heads: list[torch.Tensor] = []
    hook = small.outc.register_forward_hook(lambda module, args, out: heads.append(out))
    try:
        x = torch.rand(2, 1, 16, 24)
        with torch.no_grad():
            out = small(x)
    finally:
        hook.remove()
    assert out.shape == x.shape
    assert heads[0].abs().max() > 0  # default init: not the identity at start (as official)
    torch.testing.assert_close(out, x + heads[0], rtol=0, atol=0)


def test_skip_is_concatenated_before_the_upsampled_map() -> None:
    torch.manual_seed(1)
    model = UNet2(features=(4, 8, 16)).eval()
    with torch.no_grad():
        model.up2.conv.double_conv[0].weight[:, 4:] = 0  # channels 4..7 take the upsampled map
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        before = model(x)
        for p in model.down2.parameters():  # the deeper path now cannot reach the output
            p.add_(1.0)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
        model.inc.double_conv[0].bias.add_(1.0)  # the skip path does
        assert not torch.allclose(model(x), before)


def test_any_multiple_of_four_and_several_channels() -> None:
    model = UNet2(in_channels=3, features=(4, 8, 16)).eval()
    for h, w in ((4, 4), (12, 20), (36, 8)):
        assert model(torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


@pytest.mark.parametrize("shape", [(1, 1, 30, 32), (1, 1, 32, 34), (1, 1, 2, 4), (1, 2, 16, 16), (1, 16, 16)])
def test_bad_inputs_raise_one_line(small: UNet2, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError) as info:
        small(torch.rand(shape))
    assert "\n" not in str(info.value)


def test_settings_round_trip_and_validation() -> None:
    settings = UNet2Settings(in_channels=1, features=[8, 16, 32])
    assert settings.features == (8, 16, 32)
    assert UNet2Settings(**settings.to_dict()) == settings
    assert UNet2(**settings.to_dict()).settings == settings
    with pytest.raises(AttributeError):
        settings.in_channels = 2  # type: ignore[misc]
    for bad in ({"in_channels": 0}, {"in_channels": True}, {"features": (8, 16)}, {"features": (8, 0, 32)},
                {"features": (8, 16.0, 32)}, {"features": "abc"}):
        with pytest.raises(ValueError) as info:
            UNet2Settings(**bad)
        assert "\n" not in str(info.value)
