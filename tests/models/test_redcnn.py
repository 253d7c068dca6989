"""RED-CNN: official layout and parameter count, shape preservation, each shortcut and the final ReLU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ldct_clip.models.redcnn import MIN_SIZE, RedCNN, RedCNNSettings

OFFICIAL_PARAMETERS = 1_848_865
"""Official RED_CNN(out_ch=96) (Conv2D read as Conv2d) counted with torch."""


@pytest.fixture(scope="module")
def small() -> RedCNN:
    torch.manual_seed(0)
    return RedCNN(channels=6).eval()


def test_default_network_matches_the_official_count_and_layout() -> None:
    model = RedCNN()
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS
    names = [name for name, _ in model.named_children()]
    assert names == [f"conv{i}" for i in range(1, 6)] + [f"tconv{i}" for i in range(1, 6)] + ["relu"]
    for i in range(1, 6):
        conv, tconv = getattr(model, f"conv{i}"), getattr(model, f"tconv{i}")
        assert type(conv) is nn.Conv2d and type(tconv) is nn.ConvTranspose2d
        for layer in (conv, tconv):
            assert layer.kernel_size == (5, 5) and layer.padding == (0, 0) and layer.stride == (1, 1)
    assert model.conv1.in_channels == 1 and model.tconv5.out_channels == 1 and model.conv3.out_channels == 96


@pytest.mark.parametrize("size", [(MIN_SIZE, MIN_SIZE), (22, 64), (37, 21), (64, 64)])
def test_output_shape_equals_input_shape(small: RedCNN, size: tuple[int, int]) -> None:
    x = torch.rand(2, 1, *size)
    out = small(x)
    assert out.shape == x.shape and (out >= 0).all()


@pytest.mark.parametrize("shape", [(1, 1, 20, 32), (1, 1, 32, 20), (1, 2, 32, 32), (1, 32, 32)])
def test_bad_inputs_raise_one_line(small: RedCNN, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError) as info:
        small(torch.rand(shape))
    assert "\n" not in str(info.value)


def test_shortcuts_join_where_the_official_network_adds_them(small: RedCNN) -> None:
    outputs: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name in [f"conv{i}" for i in range(1, 6)] + [f"tconv{i}" for i in range(1, 6)]:
        module = getattr(small, name)
        hooks.append(module.register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, out)))
        hooks.append(module.register_forward_pre_hook(lambda m, a, name=name: inputs.__setitem__(name, a[0])))
    x = torch.randn(1, 1, 30, 26)  # negative values too, so the final ReLU shows
    try:
        with torch.no_grad():
            out = small(x)
    finally:
        for hook in hooks:
            hook.remove()
    relu = torch.relu
    exact = {"rtol": 0, "atol": 0}
    torch.testing.assert_close(inputs["tconv2"], relu(outputs["tconv1"] + relu(outputs["conv4"])), **exact)
    torch.testing.assert_close(inputs["tconv3"], relu(outputs["tconv2"]), **exact)
    torch.testing.assert_close(inputs["tconv4"], relu(outputs["tconv3"] + relu(outputs["conv2"])), **exact)
    torch.testing.assert_close(inputs["tconv5"], relu(outputs["tconv4"]), **exact)
    torch.testing.assert_close(out, relu(outputs["tconv5"] + x), **exact)
    assert (outputs["tconv5"] + x).min() < 0  # the final ReLU did something


def test_settings_round_trip_and_validation() -> None:
    settings = RedCNNSettings(channels=12)
    assert RedCNNSettings(**settings.to_dict()) == settings
    assert RedCNN(**settings.to_dict()).settings == settings
    for bad in (0, -3, True, 2.0):
        with pytest.raises(ValueError) as info:
            RedCNNSettings(channels=bad)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
