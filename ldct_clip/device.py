"""Choosing the compute device: CUDA when present, else CPU."""

from __future__ import annotations

import torch

from ldct_clip.errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``"auto"``, ``"cpu"`` or ``"cuda"`` to a torch device; ``"cuda"`` without a GPU is an error.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name not in DEVICES:
        raise InputError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)
