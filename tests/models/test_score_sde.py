"""ScoreSDE-CT maths on a Gaussian toy whose score is known: the VE SDE, the DSM loss and the PC denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from ldct_clip.models.ncsnpp import NCSNpp, NCSNppSettings
from ldct_clip.models.score_sde import VESDE, dsm_loss, pc_denoise

MU, S = 0.4, 0.1
"""Toy data: every pixel independently N(MU, S^2)."""
SMALL_NET = NCSNppSettings(image_size=16, nf=8, ch_mult=(1, 2), attn_resolutions=(8,))


def gaussian_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact score of the toy data perturbed by N(0, sigma^2): -(x - MU) / (S^2 + sigma^2)."""
    return -(x - MU) / (S**2 + sigma.reshape(-1, 1, 1, 1) ** 2)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_vesde_noise_levels_follow_the_official_schedule() -> None:
    sde = VESDE()
    assert (sde.sigma_min, sde.sigma_max, sde.n) == (0.01, 220.0, 1000)
    torch.testing.assert_close(sde.sigma(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)),
                               torch.tensor([0.01, math.sqrt(0.01 * 220.0), 220.0], dtype=torch.float64))
    sigmas = sde.discrete_sigmas()
    assert sigmas.shape == (1000,) and math.isclose(sigmas[0], 0.01) and math.isclose(sigmas[-1], 220.0)
    ratios = sigmas[1:] / sigmas[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, ratios[0].item()))


def test_reverse_diffusion_steps_telescope_to_sigma_max() -> None:
    sde = VESDE(n=50)
    t = torch.linspace(1.0, 1e-5, 50, dtype=torch.float64)
    g = sde.diffusion_steps(t)
    sigmas = sde.discrete_sigmas()
    assert math.isclose(g[-1], 0.01) and math.isclose(g[0] ** 2, sigmas[-1] ** 2 - sigmas[-2] ** 2)
    assert math.isclose(float(g.square().sum()), 220.0**2, rel_tol=1e-9)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sigma_min": 0.0}, "sigma_min must be a positive"),
    ({"sigma_max": 0.005}, "sigma_max must exceed sigma_min"),
    ({"n": 0}, "n \\(noise levels\\)"),
])
def test_bad_sde_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VESDE(**kwargs)


def test_dsm_loss_is_half_the_pixel_sum_averaged_over_images() -> None:
    x0 = torch.rand(64, 1, 16, 16)
    loss = dsm_loss(lambda x, sigma: torch.zeros_like(x), x0, VESDE(), _generator(0))
    assert loss.ndim == 0
    assert math.isclose(float(loss), 0.5 * 16 * 16, rel_tol=0.05)  # E 0.5 ||z||^2 with a zero score


def test_dsm_loss_of_the_true_score_has_its_analytic_value() -> None:
    sde, s = VESDE(), 1.0
    x0 = MU + s * torch.randn(4096, 1, 4, 4, generator=_generator(1))
    loss = dsm_loss(lambda x, sigma: -(x - MU) / (s**2 + sigma.reshape(-1, 1, 1, 1) ** 2), x0, sde, _generator(2))
    t = torch.linspace(1e-5, 1.0, 20001, dtype=torch.float64)
    expected = 0.5 * 16 * torch.trapezoid(s**2 / (s**2 + sde.sigma(t) ** 2), t) / (1.0 - 1e-5)
    assert math.isclose(float(loss), float(expected), rel_tol=0.08)


@pytest.mark.parametrize("wrong", [
    lambda x, sigma: 1.3 * gaussian_score(x, sigma),
    lambda x, sigma: gaussian_score(x - 0.05, sigma),
    lambda x, sigma: -(x - MU) / (2 * S**2 + sigma.reshape(-1, 1, 1, 1) ** 2),
])
def test_dsm_loss_is_lowest_for_the_true_score(wrong) -> None:  # noqa: ANN001
    x0 = MU + S * torch.randn(512, 1, 8, 8, generator=_generator(3))
    true_loss = dsm_loss(gaussian_score, x0, VESDE(), _generator(4))
    assert true_loss < dsm_loss(wrong, x0, VESDE(), _generator(4))


def test_dsm_loss_trains_the_network() -> None:
    net = NCSNpp(SMALL_NET)
    loss = dsm_loss(net, torch.rand(2, 1, 16, 16), VESDE(), _generator(5))
    loss.backward()
    assert torch.isfinite(loss) and net.conv_in.weight.grad is not None


class CountingScore:
    """The Gaussian score, recording the noise levels it is called with."""

    def __init__(self) -> None:
        self.sigmas: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.sigmas.append(sigma.clone())
        return gaussian_score(x, sigma)


@pytest.mark.parametrize(("steps", "n", "calls"), [(7, 1000, 15), (None, 5, 11), (1000, 1000, 2001)])
def test_sampler_calls_the_score_twice_per_step_plus_tweedie(steps: int | None, n: int, calls: int) -> None:
    score = CountingScore()
    y = torch.full((3, 1, 4, 4), MU)
    pc_denoise(score, y, VESDE(n=n), steps=steps, generator=_generator(0))
    assert len(score.sigmas) == calls
    assert all(s.shape == (3,) for s in score.sigmas)
    assert math.isclose(score.sigmas[0][0], 220.0, rel_tol=1e-6)
    assert math.isclose(score.sigmas[-1][0], float(VESDE().sigma(torch.tensor(1e-5))), rel_tol=1e-6)


def test_sampler_is_deterministic_for_a_generator_and_keeps_its_input() -> None:
    y = MU + S * torch.randn(2, 1, 8, 8, generator=_generator(6))
    kept = y.clone()
    first = pc_denoise(gaussian_score, y, VESDE(), steps=20, generator=_generator(7))
    again = pc_denoise(gaussian_score, y, VESDE(), steps=20, generator=_generator(7))
    other = pc_denoise(gaussian_score, y, VESDE(), steps=20, generator=_generator(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(y, kept)


def test_sampler_moves_a_noisy_measurement_towards_the_posterior_mean() -> None:
    generator = _generator(9)
    x = MU + S * torch.randn(8, 1, 32, 32, generator=generator)
    noise_std = S
    y = x + noise_std * torch.randn(x.shape, generator=generator)
    posterior_mean = MU + S**2 / (S**2 + noise_std**2) * (y - MU)
    out = pc_denoise(gaussian_score, y, VESDE(), steps=100, generator=_generator(10))

    def mse(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).square().mean())

    assert mse(out, x) < 0.95 * mse(y, x)
    assert mse(out, posterior_mean) < 0.9 * mse(y, posterior_mean)


def test_corrector_step_size_is_per_slice() -> None:
    """Slice 0's result does not change when slice 1's score is scaled (the official batch mean would)."""
    y = MU + S * torch.randn(2, 1, 8, 8, generator=_generator(11))

    def scaled(factor: float):  # noqa: ANN202
        return lambda x, sigma: gaussian_score(x, sigma) * torch.tensor([1.0, factor]).reshape(2, 1, 1, 1)

    a = pc_denoise(scaled(1.0), y, VESDE(), steps=10, generator=_generator(12))
    b = pc_denoise(scaled(3.0), y, VESDE(), steps=10, generator=_generator(12))
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_sampler_runs_the_network_and_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    net = NCSNpp(SMALL_NET).eval()
    out = pc_denoise(net, torch.rand(2, 1, 16, 16), VESDE(), steps=2, generator=_generator(13), progress=True)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    assert "ScoreSDE sampling" in capsys.readouterr().err


@pytest.mark.parametrize("steps", [0, 2.5, True])
def test_bad_step_counts_are_refused(steps: object) -> None:
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        pc_denoise(gaussian_score, torch.zeros(1, 1, 4, 4), VESDE(), steps=steps)
