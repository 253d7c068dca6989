"""Step-seeded randomness: the per-step seeds, the step batch sampler and mixup.

Everything random in a step is drawn from generators seeded by ``(seed, step, rank, stream)``, so a resumed
run computes exactly the steps an uninterrupted run would, whatever the number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def step_seed(seed: int, step: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, step, rank, stream)."""
    return int(np.random.SeedSequence([seed, step, rank, stream]).generate_state(2, dtype=np.uint64)[0] >> 1)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yield, for each step from ``start_step`` to ``total_steps``, a batch of ``(index, item_seed)`` keys.

    Indices are drawn with replacement in proportion to ``weights`` (patient-balanced for CT) from a
    generator seeded by the step, so a step's batch never depends on what came before it.
    """

    def __init__(self, weights: torch.Tensor, batch_size: int, seed: int, start_step: int, total_steps: int,
                 rank: int = 0) -> None:
        self.weights = weights.double()
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.start_step, self.total_steps = start_step, total_steps

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            g = torch.Generator().manual_seed(step_seed(self.seed, step, self.rank, stream=1))
            indices = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=g)
            seeds = torch.randint(0, 2**31 - 1, (self.batch_size,), generator=g)
            yield list(zip(indices.tolist(), seeds.tolist()))


def mixup(
    noisy: torch.Tensor, clean: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix the batch with a permutation of itself, with the same ``lam`` for noisy and clean alike.

    >>> x = torch.tensor([[0.0], [1.0]])
    >>> mixup(x, x, 0.25, torch.tensor([1, 0]))[0].flatten().tolist()
    [0.75, 0.25]
    """
    perm = perm.to(noisy.device)
    return lam * noisy + (1 - lam) * noisy[perm], lam * clean + (1 - lam) * clean[perm]
