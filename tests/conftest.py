"""Shared test settings: quiet, deterministic, CPU-friendly."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
torch.set_num_threads(min(2, os.cpu_count() or 1))
