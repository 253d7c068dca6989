"""ScoreSDE-CT maths: the VE SDE, its denoising score-matching loss and the predictor-corrector denoiser.

Official: ``sde_lib.py`` (``VESDE``), ``losses.py`` (``get_sde_loss_fn``) and ``sampling.py``
(``ReverseDiffusionPredictor``, ``LangevinCorrector``) of yang-song/score_sde_pytorch, and the projection
sampler of ``cs.py`` in yang-song/score_inverse_problems with ``configs/ve/ldct_512_ncsnpp_continuous.py``
(sigma 0.01..220, N = 1000, eps 1e-5, snr 0.4, coeff 0.72, continuous time, ``reduce_mean = False``,
no likelihood weighting).

A score function here is ``score_fn(x, sigma) -> score`` with ``sigma`` one noise level per image, which is
what the official continuous VE ``get_score_fn`` feeds the network (``model(x, sigma(t))``), so an
:class:`~ldct_clip.models.ncsnpp.NCSNpp` (or its EMA copy) is passed as is.

The predictor/corrector steps are written here rather than taken from diffusers' ``ScoreSdeVeScheduler``
(whose ``step_pred`` / ``step_correct`` give the same numbers for a batch of one): they are a line or two
each, the measurement step between them is not a scheduler step anyway, and the corrector's step size is
computed per slice (see :func:`pc_denoise`), which the scheduler, like the official code, averages over
the batch; so diffusers is not a dependency.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
from tqdm.auto import tqdm

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score_fn(x, sigma)``: x N x C x H x W, sigma N noise levels, returns the score, shaped like x."""

SAMPLING_EPS = 1e-5
"""Smallest time of training and sampling (official ``eps`` of the LDCT config)."""


@dataclass(frozen=True)
class VESDE:
    """Variance-exploding SDE: x(t) = x(0) + sigma(t) z with sigma(t) = sigma_min (sigma_max / sigma_min)^t.

    ``n`` is the number of discrete noise levels the reverse-diffusion predictor steps through.

    >>> round(float(VESDE().sigma(torch.tensor(1.0))), 3)
    220.0
    """

    sigma_min: float = 0.01
    sigma_max: float = 220.0
    n: int = 1000

    def __post_init__(self) -> None:
        for name in ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not self.sigma_max > self.sigma_min:
            raise ValueError(f"sigma_max must exceed sigma_min, got {self.sigma_max!r} <= {self.sigma_min!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n (noise levels) must be an integer >= 1, got {self.n!r}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Marginal standard deviation sigma(t) (official ``marginal_prob`` std)."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def discrete_sigmas(self) -> torch.Tensor:
        """The ``n`` geometric noise levels sigma_min..sigma_max of the SMLD discretisation (float64)."""
        return torch.exp(torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.n,
                                        dtype=torch.float64))

    def diffusion_steps(self, t: torch.Tensor) -> torch.Tensor:
        """G of the reverse-diffusion step at times t: sqrt(sigma_i^2 - sigma_{i-1}^2), i = floor(t (n - 1)).

        The official ``VESDE.discretize`` over :meth:`discrete_sigmas`; sigma_{-1} = 0, so G at t = 0 is
        sigma_min.

        >>> [round(g, 6) for g in VESDE(n=3).diffusion_steps(torch.tensor([0.0, 1.0])).tolist()]
        [0.01, 219.995]
        """
        sigmas = self.discrete_sigmas()
        i = (t.to(torch.float64) * (self.n - 1)).long()
        previous = torch.where(i > 0, sigmas[(i - 1).clamp(min=0)], torch.zeros_like(sigmas[i]))
        return torch.sqrt(sigmas[i] ** 2 - previous**2)


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, drawn from ``generator`` (on its own device) when given."""
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _per_image(value: torch.Tensor) -> torch.Tensor:
    """View N values as N x 1 x 1 x 1 (broadcast over C, H, W)."""
    return value.reshape(-1, 1, 1, 1)


def dsm_loss(score_fn: ScoreFn, x0: torch.Tensor, sde: VESDE, generator: torch.Generator | None = None,
             eps: float = SAMPLING_EPS) -> torch.Tensor:
    """Continuous denoising score matching: mean over images of 0.5 * sum over pixels of (sigma s + z)^2.

    t ~ U(eps, 1), z ~ N(0, I), s = score_fn(x0 + sigma(t) z, sigma(t)): the sigma^2-weighted loss of the
    official ``get_sde_loss_fn(reduce_mean=False, continuous=True, likelihood_weighting=False)``, whose
    ``reduce_mean=False`` reduction is half the sum over pixels. Draws t and z from ``generator`` (the
    global RNG if None).

    >>> x0 = torch.zeros(4, 1, 8, 8)
    >>> float(dsm_loss(lambda x, s: torch.zeros_like(x), x0, VESDE(), torch.Generator().manual_seed(0))) > 0
    True
    """
    t = eps + (1.0 - eps) * torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype,
                                       device=generator.device if generator is not None else x0.device)
    t = t.to(x0.device)
    z = _randn(x0, generator)
    sigma = sde.sigma(t)
    score = score_fn(x0 + _per_image(sigma) * z, sigma)
    per_image = 0.5 * torch.square(score * _per_image(sigma) + z).flatten(1).sum(dim=1)
    return per_image.mean()


def pc_denoise(score_fn: ScoreFn, y: torch.Tensor, sde: VESDE, steps: int | None = None, snr: float = 0.4,
               lam: float = 0.72, eps: float = SAMPLING_EPS, generator: torch.Generator | None = None,
               progress: bool = False) -> torch.Tensor:
    """Denoise ``y`` (N x C x H x W in the network's data scale) by the official CS predictor-corrector loop.

    The adaptation of ``cs.py``'s projection sampler to denoising: identity operator, mask = 1, the
    measurement y itself. From x ~ N(0, sigma_max^2), for t in linspace(1, eps, steps):
    measurement step x <- (1 - lam) x + lam (y + sigma(t) z); one Langevin corrector step (snr);
    measurement step again; one reverse-diffusion predictor step over ``steps`` geometric noise levels
    (the official N; ``steps`` None means ``sde.n``, 1000 officially). The result is the last sample x
    plus the Tweedie step sigma(eps)^2 s(x, sigma(eps)), WITHOUT the official final hard merge with the
    measurement (with a full mask it would return y).
    That is 2 * steps + 1 calls of ``score_fn``.

    One deviation: the Langevin step size 2 (snr ||z|| / ||s||)^2 uses each slice's own norms, where the
    official code averages the norms over the batch; so a slice's result does not depend on which slices
    share its batch (equal to the official code for a batch of one).

    All noise comes from ``generator`` (the global RNG if None): a fixed generator gives a fixed result.
    Runs without autograd; put the network in eval mode first.

    >>> y = torch.full((1, 1, 4, 4), 0.5)
    >>> pc_denoise(lambda x, s: (0.5 - x) / (0.01 + _per_image(s) ** 2), y, VESDE(), steps=5,
    ...            generator=torch.Generator().manual_seed(0)).shape
    torch.Size([1, 1, 4, 4])
    """
    steps = sde.n if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    times = torch.linspace(1.0, eps, steps, dtype=torch.float64)
    sigmas = sde.sigma(times).tolist()
    diffusions = replace(sde, n=steps).diffusion_steps(times).tolist()
    batch = y.shape[0]

    def sigma_vector(value: float) -> torch.Tensor:
        return torch.full((batch,), value, dtype=y.dtype, device=y.device)

    def measure(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return (1.0 - lam) * x + lam * (y + sigma * _randn(y, generator))

    with torch.no_grad():
        x = sde.sigma_max * _randn(y, generator)
        steps_bar = tqdm(zip(sigmas, diffusions), total=steps, desc="ScoreSDE sampling", unit="step",
                         disable=not progress, leave=False)
        for sigma, g in steps_bar:
            x = measure(x, sigma)
            score = score_fn(x, sigma_vector(sigma))
            noise = _randn(x, generator)
            ratio = noise.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1)
            step_size = _per_image(2.0 * (snr * ratio) ** 2)
            x = x + step_size * score + torch.sqrt(2.0 * step_size) * noise
            x = measure(x, sigma)
            x = x + g**2 * score_fn(x, sigma_vector(sigma)) + g * _randn(x, generator)
        sigma = float(sde.sigma(torch.tensor(eps, dtype=torch.float64)))
        return x + sigma**2 * score_fn(x, sigma_vector(sigma))
