"""CT data: HU <-> model scale, Mayo discovery and manifests, split presets, transforms and datasets.

``hu``, ``mayo`` and ``splits`` load eagerly. ``transforms`` and ``datasets`` need MONAI, whose import
takes seconds, so their names load on first use (``from ldct_clip.data import TrainingPatches`` works).
"""

from __future__ import annotations

import importlib
from typing import Any

from ldct_clip.data.hu import HU_MAX, HU_MIN, WINDOWS, hu_to_model, model_to_hu, window
from ldct_clip.data.mayo import Manifest, ManifestRow, PairingSummary, scan_mayo
from ldct_clip.data.splits import MAYO_PATIENTS, Split, get_split, preset_names

_LAZY: dict[str, str] = {
    "AddGaussianNoised": "ldct_clip.data.transforms",
    "evaluation_transforms": "ldct_clip.data.transforms",
    "training_transforms": "ldct_clip.data.transforms",
    "EvaluationPairs": "ldct_clip.data.datasets",
    "TrainingPatches": "ldct_clip.data.datasets",
    "AdjacentSlicePairs": "ldct_clip.data.adjacent_slices",
    "PairedPatches": "ldct_clip.data.paired_patches",
}

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "MAYO_PATIENTS",
    "WINDOWS",
    "Manifest",
    "ManifestRow",
    "PairingSummary",
    "Split",
    "get_split",
    "hu_to_model",
    "model_to_hu",
    "preset_names",
    "scan_mayo",
    "window",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Import the MONAI-based modules only when one of their names is first used."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
