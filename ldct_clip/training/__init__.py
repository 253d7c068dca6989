"""The training loop of every method: optimizer, schedule, optional weight EMA, mixup, validation, resume.

The method (:mod:`ldct_clip.methods`) decides the network, what a batch holds and the loss; this loop is
the same for all of them (CLIPDenoising: AdamW + L1 with gradient clipping, mixup and feature augmentation).

Reproducibility is built on one rule: everything random in a step (which slices, crops, flips, noise,
mixup and feature augmentation) is drawn from generators seeded by ``(seed, step, rank)``. A run that is
stopped and resumed therefore computes exactly the steps an uninterrupted run would, whatever the
number of DataLoader workers.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel; only parameters that
require gradients train (CLIPDenoising: the adapter and decoder), each process draws its own batches, and
rank 0 validates, logs and saves.

Parts: :mod:`~ldct_clip.training.loop` (:class:`Trainer`), :mod:`~ldct_clip.training.sampling` (step seeds,
batches, mixup), :mod:`~ldct_clip.training.schedule`, :mod:`~ldct_clip.training.budget` (a schedule fitted
to a time budget), :mod:`~ldct_clip.training.validation`,
:mod:`~ldct_clip.training.distributed` and :mod:`~ldct_clip.training.records` (run-folder files, curves,
run.json). What each method trains on is :mod:`ldct_clip.training_data`.
"""

from ldct_clip.training.distributed import Distributed
from ldct_clip.training.loop import Trainer
from ldct_clip.training.records import (
    BEST,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVES,
    LAST,
    METRICS_LOG,
    RESUME,
    RUN_INFO,
    plot_curves,
    write_run_info,
)
from ldct_clip.training.sampling import StepBatchSampler, mixup, step_seed
from ldct_clip.training.schedule import build_scheduler
from ldct_clip.training.validation import validate

__all__ = [
    "BEST",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CURVES",
    "LAST",
    "METRICS_LOG",
    "RESUME",
    "RUN_INFO",
    "Distributed",
    "StepBatchSampler",
    "Trainer",
    "build_scheduler",
    "mixup",
    "plot_curves",
    "step_seed",
    "validate",
    "write_run_info",
]
