"""NCSN++ as ScoreSDE-CT configures it: official size, FIR resampling conventions, sigma scaling, input checks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from ldct_clip.models.ncsnpp import (
    AttnBlock,
    NCSNpp,
    NCSNppSettings,
    downsample_2d,
    fir_kernel_2d,
    upsample_2d,
)

TINY = NCSNppSettings(image_size=32, nf=8, ch_mult=(1, 2, 2), attn_resolutions=(8,))

OFFICIAL_PARAMETERS = 75_669_047
"""``sum(p.numel() for p in model.parameters())`` of score_sde_pytorch's ``models/ncsnpp.py`` ``NCSNpp`` built
with score_inverse_problems' ``configs/ve/ldct_512_ncsnpp_continuous.py`` (measured with the official code);
it counts the 16 frozen Fourier frequencies, which are a buffer here."""


def _randomised(settings: NCSNppSettings, seed: int = 0) -> NCSNpp:
    """A network whose weights are all random, so no layer starts at the official near-zero init."""
    torch.manual_seed(seed)
    net = NCSNpp(settings).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return net


def test_official_config_matches_the_official_parameter_count() -> None:
    settings = NCSNppSettings()
    assert (settings.nf, settings.ch_mult, settings.num_res_blocks, settings.attn_resolutions) == (
        16, (1, 2, 4, 8, 16, 32, 32), 1, (16,))
    assert (settings.fir_kernel, settings.fourier_scale, settings.scale_by_sigma, settings.image_size) == (
        (1, 3, 3, 1), 16.0, True, 512)
    net = NCSNpp(settings)
    trainable = sum(p.numel() for p in net.parameters())
    assert trainable + net.fourier.W.numel() == OFFICIAL_PARAMETERS
    assert sum(isinstance(m, AttnBlock) for m in net.modules()) == 3  # down and up at 16 x 16, plus the middle


def test_output_shape_and_every_parameter_is_used() -> None:
    net = NCSNpp(TINY)
    x = torch.rand(2, 1, 32, 32)
    out = net(x, torch.tensor([0.01, 220.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    unused = [name for name, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert unused == []


def test_input_is_centred_before_the_first_convolution() -> None:
    net = NCSNpp(TINY)
    seen = []
    net.conv_in.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    x = torch.rand(1, 1, 32, 32)
    net(x, torch.tensor([1.0]))
    torch.testing.assert_close(seen[0], 2 * x - 1)


def test_scale_by_sigma_divides_the_output_by_sigma() -> None:
    scaled = _randomised(TINY)
    plain = NCSNpp(NCSNppSettings(**{**TINY.to_dict(), "scale_by_sigma": False})).eval()
    plain.load_state_dict(scaled.state_dict())
    x, sigma = torch.rand(3, 1, 32, 32), torch.tensor([0.02, 1.5, 150.0])
    with torch.no_grad():
        a, b = scaled(x, sigma), plain(x, sigma)
    assert b.abs().mean() > 1e-3
    torch.testing.assert_close(a * sigma[:, None, None, None], b, rtol=1e-5, atol=1e-6)


def test_output_depends_on_sigma_and_on_the_image() -> None:
    net = _randomised(NCSNppSettings(**{**TINY.to_dict(), "scale_by_sigma": False}))
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        base = net(x, torch.tensor([1.0]))
        assert (net(x, torch.tensor([10.0])) - base).abs().max() > 1e-3
        assert (net(x.flip(-1), torch.tensor([1.0])) - base).abs().max() > 1e-3


def test_runs_on_other_sizes_than_built_for() -> None:
    net = NCSNpp(TINY)
    assert net(torch.rand(1, 1, 64, 48), torch.tensor([3.0])).shape == (1, 1, 64, 48)


@pytest.mark.parametrize(("x", "sigma", "message"), [
    (torch.rand(1, 1, 30, 32), torch.tensor([1.0]), "multiples of 4"),
    (torch.rand(1, 3, 32, 32), torch.tensor([1.0]), "N x 1 x H x W"),
    (torch.rand(2, 1, 32, 32), torch.tensor([1.0]), "2 noise levels"),
    (torch.rand(1, 1, 32, 32), 1.0, "noise levels"),
])
def test_bad_input_is_refused(x: torch.Tensor, sigma: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NCSNpp(TINY)(x, sigma)


def test_settings_round_trip_through_json() -> None:
    settings = NCSNppSettings(image_size=64, nf=8, ch_mult=(1, 2, 2, 2), attn_resolutions=(16, 8))
    rebuilt = NCSNppSettings(**json.loads(json.dumps(settings.to_dict())))
    assert rebuilt == settings and isinstance(rebuilt.ch_mult, tuple)
    assert settings.size_multiple == 8 and settings.resolutions == (64, 32, 16, 8)


@pytest.mark.parametrize(("changes", "message"), [
    ({"image_size": 500}, "image_size must be a multiple of 64"),
    ({"attn_resolutions": (12,)}, "attn_resolutions must be feature sizes"),
    ({"nf": 9}, "9 channels"),
    ({"nf": True}, "nf must be an integer"),
    ({"ch_mult": ()}, "ch_mult must be a non-empty"),
    ({"fir_kernel": (1, -3)}, "fir_kernel"),
    ({"fourier_scale": 0}, "fourier_scale"),
    ({"num_res_blocks": 0}, "num_res_blocks"),
])
def test_bad_settings_are_refused_in_one_line(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        NCSNppSettings(**changes)
    assert "\n" not in str(info.value)


def test_two_tap_fir_is_nearest_upsampling_and_average_pooling() -> None:
    x = torch.randn(2, 3, 6, 8)
    box = fir_kernel_2d((1, 1))
    torch.testing.assert_close(upsample_2d(x, box), F.interpolate(x, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(downsample_2d(x, box), F.avg_pool2d(x, 2))


def test_official_fir_kernel_resamples_separably_with_zero_borders() -> None:
    a, b, c, d = 1.0, 2.0, 5.0, 3.0
    kernel = fir_kernel_2d((1, 3, 3, 1))
    up_1d = torch.tensor([3 * a, 3 * a + b, a + 3 * b, 3 * b]) / 4
    down_1d = torch.tensor([3 * a + 3 * b + c, b + 3 * c + 3 * d]) / 8
    u, v = torch.tensor([a, b]), torch.tensor([a, b, c, d])
    torch.testing.assert_close(upsample_2d(torch.outer(u, u)[None, None], kernel)[0, 0], torch.outer(up_1d, up_1d))
    torch.testing.assert_close(downsample_2d(torch.outer(v, v)[None, None], kernel)[0, 0],
                               torch.outer(down_1d, down_1d))
