"""The network matches SPEC: feature shapes, parameter counts, shapes for any input size."""

from __future__ import annotations

import pytest
import torch

from ldct_clip.models.decoder import Decoder
from ldct_clip.models.denoiser import CLIPDenoiser, DenoiserConfig


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts(ct_model: CLIPDenoiser, rgb_model: CLIPDenoiser) -> None:
    assert _count(ct_model.decoder) == 10_987_776
    assert _count(rgb_model.decoder) == 10_988_928
    assert _count(Decoder(3)) == 10_988_928
    assert _count(ct_model.encoder) == 8_562_528
    assert _count(rgb_model.encoder) == 8_562_528
    assert ct_model.adapter is not None and _count(ct_model.adapter) == 3
    assert rgb_model.adapter is None


def test_layer4_and_attention_pool_are_not_held(ct_model: CLIPDenoiser) -> None:
    names = {name.split(".")[0] for name, _ in ct_model.encoder.named_modules() if name}
    assert "layer4" not in names and "attnpool" not in names
    assert not any(k.startswith(("layer4", "attnpool")) for k in ct_model.encoder.state_dict())


def test_feature_shapes_at_128(ct_model: CLIPDenoiser) -> None:
    features = ct_model.encoder(torch.rand(2, 3, 128, 128))
    assert [tuple(f.shape) for f in features] == [
        (2, 64, 64, 64), (2, 256, 32, 32), (2, 512, 16, 16), (2, 1024, 8, 8),
    ]


def test_f1_is_the_stem_third_conv_bn_relu(ct_model: CLIPDenoiser) -> None:
    enc = ct_model.encoder.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        stem = enc.act3(enc.bn3(enc.conv3(enc.act2(enc.bn2(enc.conv2(enc.act1(enc.bn1(enc.conv1(x)))))))))
        assert torch.equal(enc(x)[0], stem)
        assert (stem >= 0).all()  # after the ReLU, before the average pool


@pytest.mark.parametrize("size", [(100, 130), (128, 128), (64, 96), (33, 47)])
def test_output_keeps_any_input_size(ct_model: CLIPDenoiser, size: tuple[int, int]) -> None:
    x = torch.rand(1, 1, *size)
    with torch.no_grad():
        assert ct_model.eval()(x).shape == x.shape


def test_rgb_output_shape(rgb_model: CLIPDenoiser) -> None:
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        assert rgb_model.eval()(x).shape == x.shape


def test_padding_is_reflect_then_crop(ct_model: CLIPDenoiser) -> None:
    """The 100x130 output equals the crop of the output on the explicitly reflect-padded 128x160 input."""
    model = ct_model.eval()
    x = torch.rand(1, 1, 100, 130)
    padded = torch.nn.functional.pad(x, (0, 30, 0, 28), mode="reflect")
    with torch.no_grad():
        assert torch.allclose(model(x), model(padded)[..., :100, :130], atol=1e-6)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(1, 3, 64, 64), "1 channel"),
        (torch.rand(1, 64, 64), "4-D"),
        (torch.full((1, 1, 64, 64), float("nan")), "NaN"),
        (torch.full((1, 1, 64, 64), float("inf")), "NaN or Inf"),
        (torch.rand(1, 1, 16, 64), ">= 32"),
    ],
)
def test_bad_input_is_a_clear_value_error(ct_model: CLIPDenoiser, x: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ct_model(x)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="in_channels must be one of"):
        DenoiserConfig(in_channels=2)
    with pytest.raises(ValueError, match="bn must be one of"):
        DenoiserConfig(bn="train")
    with pytest.raises(ValueError, match="pfa_gamma"):
        DenoiserConfig(pfa_gamma=-0.1)
