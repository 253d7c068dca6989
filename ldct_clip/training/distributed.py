"""Process-group facts under ``torchrun`` (a single process is rank 0 of a world of 1)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ldct_clip.sharding import join_process_group, leave_process_group


@dataclass
class Distributed:
    """Process-group facts; a single process is rank 0 of a world of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        join_process_group("nccl" if device_name != "cpu" and torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size())

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (a no-op for a single process)."""
        if self.world_size > 1:
            leave_process_group()
