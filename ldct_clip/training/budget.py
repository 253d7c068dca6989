"""Fitting a schedule to a wall-clock budget by timing real training steps of the run itself.

A schedule (ramp-up, cosine or ramped decay, warm-up) only does its work when the run reaches its end: a
run stopped by ``train.max_minutes`` halfway keeps a high learning rate and an unfinished model. How many
steps fit in a budget differs by 15× between methods on the same CPU (CLIPDenoising's decoder against
RED-CNN's full-resolution 96-channel convolutions) and by several times with the machine's load, so a
constant rate cannot size it. :func:`steps_in_budget` times a few steps of the very config, data and device
the run will use, in a scratch folder, and returns how many fit. No library does this for a custom loop
(PyTorch Lightning's ``max_time`` stops a run but does not size its schedule).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
from time import perf_counter

from ldct_clip.config import ExperimentConfig
from ldct_clip.training.loop import Trainer

WARMUP_STEPS = 1
"""Untimed steps first: the first passes at a new size are several times slower (allocation, kernel choice)."""
TIMED_STEPS = 3
"""Timed steps: their median is the step time."""
RESERVE = 0.15
"""Fraction of the budget kept for validation, checkpoints and the data loader's start."""


def steps_in_budget(config: ExperimentConfig, minutes: float, minimum: int = 4) -> int:
    """Training steps of ``config`` that fit in ``minutes`` on this machine now, at least ``minimum``.

    Builds the run's trainer (its data, model and device) in a temporary folder, runs
    :data:`WARMUP_STEPS` + :data:`TIMED_STEPS` steps (batch loading included) and divides the budget, less
    :data:`RESERVE`, by the median step time. The probe's own seconds are not counted against the budget.
    """
    probe_steps = WARMUP_STEPS + TIMED_STEPS
    probe = dataclasses.replace(
        config,
        schedule=dataclasses.replace(config.schedule, iterations=max(probe_steps, config.schedule.iterations)),
        train=dataclasses.replace(config.train, max_minutes=None),
    )
    with tempfile.TemporaryDirectory(prefix="ldct_clip_budget_") as scratch:
        trainer = Trainer(probe, scratch)
        seconds = []
        batches = iter(trainer._loader())
        for _ in range(probe_steps):
            started = perf_counter()
            trainer.train_step(next(batches))
            seconds.append(perf_counter() - started)
    step = statistics.median(seconds[WARMUP_STEPS:])
    return max(minimum, math.floor(60.0 * minutes * (1.0 - RESERVE) / step))
