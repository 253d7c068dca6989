"""Learning-rate schedules of the released recipes, built from torch's schedulers."""

from __future__ import annotations

import functools
import math

import torch

from ldct_clip.config import ScheduleConfig


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of ``schedule.kind`` (see :class:`~ldct_clip.config.ScheduleConfig`), stepped
    once per iteration; torch's schedulers, with :class:`~torch.optim.lr_scheduler.LambdaLR` for the two
    shapes torch lacks (Noise2Sim's ramps, ScoreSDE's warm-up)."""
    s, lr = schedule, optimizer.param_groups[0]["lr"]
    if s.kind == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(s.milestones), gamma=s.gamma)
    if s.kind == "warmup":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(_warmup, s.warmup_iterations))
    if s.kind == "ramped":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(_ramped, s.iterations, s.rampup_fraction, s.rampdown_fraction))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.iterations - s.flat_iterations,
                                                        eta_min=min(s.eta_min, lr))
    if s.flat_iterations == 0:
        return cosine
    constant = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=s.flat_iterations)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [constant, cosine], milestones=[s.flat_iterations])


def _warmup(warmup: int, step: int) -> float:
    """Linear warm-up factor (ScoreSDE: ``lr * min(step / warmup, 1)``)."""
    return 1.0 if warmup == 0 else min(1.0, (step + 1) / warmup)


def _ramped(total: int, up: float, down: float, step: int) -> float:
    """Noise2Sim's RampedLR factor: cosine ramp-up over the first ``up`` of the steps, squared-cosine
    ramp-down over the last ``down``, 1 in between.

    >>> [round(_ramped(100, 0.1, 0.3, s), 3) for s in (0, 5, 50, 85, 99)]
    [0.0, 0.5, 1.0, 0.25, 0.0]
    """
    t = step / total
    if up > 0 and t < up:
        return 0.5 - 0.5 * math.cos(math.pi * t / up)
    if down > 0 and t > 1 - down:
        return (0.5 + 0.5 * math.cos(math.pi * (t - (1 - down)) / down)) ** 2
    return 1.0
