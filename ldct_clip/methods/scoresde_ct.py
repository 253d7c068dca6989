"""ScoreSDE-CT (Song et al., ICLR 2022, "Solving inverse problems in medical imaging with score-based
generative models"), adapted to denoising as described in ``shared/COMPARISON-METHODS.md``.

Network: :class:`~ldct_clip.models.ncsnpp.NCSNpp` for one channel, as the official
``configs/ve/ldct_512_ncsnpp_continuous.py`` configures it. SDE: VE, σ_min 0.01, σ_max 220, continuous time.
Training batch: full-dose slices only (:func:`ldct_clip.training_data.clean_slice_data`). Loss: denoising
score matching (:func:`~ldct_clip.models.score_sde.dsm_loss`). Training recipe (configs): Adam lr 2e-4 with
a 5k-step warm-up, gradient clipping 1, batch 16, weight EMA 0.9999 (the EMA weights are saved and sample).

Inference: the official CS predictor-corrector loop with a measurement step of weight λ = 0.72 before each
update, adapted to denoising with the identity operator, mask 1 and the low-dose slice as measurement, and
no final hard merge (:func:`~ldct_clip.models.score_sde.pc_denoise`): about 2·steps + 1 network evaluations
per slice (2001 for the official 1000 steps; ``--steps`` chooses). The sampler's noise comes from a generator
seeded with :data:`SAMPLER_SEED`, so a slice denoises the same way every run.

Deviations, documented in the model card: data on the fixed scale ``(HU + 1024) / 4096`` clipped to [0, 1]
instead of each volume's min-max (a volume-dependent scale would make a slice's result depend on the rest
of the series); the Langevin step size per slice instead of per batch (see ``pc_denoise``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ldct_clip.data.hu import HU_MAX, HU_MIN, IntensityScale
from ldct_clip.methods.base import Method, register
from ldct_clip.models.ncsnpp import NCSNpp, NCSNppSettings
from ldct_clip.models.score_sde import VESDE, dsm_loss, pc_denoise

if TYPE_CHECKING:
    from ldct_clip.config import ExperimentConfig
    from ldct_clip.training_data import TrainingData

SCALE = IntensityScale(HU_MIN, HU_MAX, clip=True)
"""The score model's data scale: the model scale clipped to [0, 1] (the official data are in [0, 1])."""
SAMPLER_SEED = 0
"""Seed of the sampler's noise for every denoised batch."""
SNR = 0.4
"""Official Langevin corrector signal-to-noise ratio."""
LAMBDA = 0.72
"""Official weight of the measurement step (``coeff``)."""


@dataclass(frozen=True)
class ScoreSDESettings:
    """NCSN++ settings, the VE SDE (``n`` = sampler steps) and the sampler's constants; official defaults."""

    image_size: int = NCSNppSettings.image_size
    nf: int = NCSNppSettings.nf
    ch_mult: tuple[int, ...] = NCSNppSettings.ch_mult
    num_res_blocks: int = NCSNppSettings.num_res_blocks
    attn_resolutions: tuple[int, ...] = NCSNppSettings.attn_resolutions
    fir_kernel: tuple[int, ...] = NCSNppSettings.fir_kernel
    fourier_scale: float = NCSNppSettings.fourier_scale
    scale_by_sigma: bool = NCSNppSettings.scale_by_sigma
    sigma_min: float = VESDE.sigma_min
    sigma_max: float = VESDE.sigma_max
    n: int = VESDE.n
    snr: float = SNR
    lam: float = LAMBDA

    def __post_init__(self) -> None:
        self.network()
        self.sde()
        if not (0 < self.snr and 0 < self.lam <= 1):
            raise ValueError(f"snr must be > 0 and lam in (0, 1], got {self.snr!r}, {self.lam!r}")

    def network(self) -> NCSNppSettings:
        return NCSNppSettings(**{f.name: getattr(self, f.name) for f in fields(NCSNppSettings)})

    @property
    def size_multiple(self) -> int:
        """Sizes the network needs (2 ** (len(ch_mult) - 1))."""
        return self.network().size_multiple

    def sde(self) -> VESDE:
        return VESDE(self.sigma_min, self.sigma_max, self.n)

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class ScoreSDECT(NCSNpp):
    """NCSN++ as the ``scoresde_ct`` method's network: ``forward(x, sigma)`` is the score."""

    method = "scoresde_ct"
    in_channels = 1

    def __init__(self, settings: ScoreSDESettings = ScoreSDESettings()) -> None:
        super().__init__(settings.network())
        self.settings = settings


def score_matching_loss(network: nn.Module, model: nn.Module, batch: Mapping[str, torch.Tensor],
                        generator: torch.Generator) -> torch.Tensor:
    """Denoising score matching on the clean full-dose patches, noise levels drawn from ``generator``."""
    return dsm_loss(network, batch["clean"].clamp(0.0, 1.0), model.settings.sde(), generator)


def _denoise(model: nn.Module, x: torch.Tensor, steps: int | None, progress: bool) -> torch.Tensor:
    s = model.settings
    generator = torch.Generator(x.device).manual_seed(SAMPLER_SEED)
    return pc_denoise(model, x.contiguous(), s.sde(), steps=steps or s.n, snr=s.snr, lam=s.lam, generator=generator,
                      progress=progress).clamp(0.0, 1.0)


def _training_data(config: ExperimentConfig, run_dir: Path) -> TrainingData:
    from ldct_clip.training_data import clean_slice_data

    return clean_slice_data(config, run_dir)


METHOD = register(Method(
    name="scoresde_ct",
    title="ScoreSDE-CT",
    settings_type=ScoreSDESettings,
    build=ScoreSDECT,
    training_data=_training_data,
    loss=score_matching_loss,
    paper_preset="clipdenoising",
    size_multiple=2 ** (len(NCSNppSettings.ch_mult) - 1),
    samples=True,
    supervision="full-dose slices only (a prior); denoising by posterior sampling with the low-dose slice",
    scale_of=lambda settings: SCALE,
    denoise_fn=_denoise,
))
