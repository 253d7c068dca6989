"""Turn a config's ``data`` section into training and validation datasets.

Each method's :attr:`~ldct_clip.methods.Method.training_data` is one of the builders here:
:func:`gaussian_noise_data` (CLIPDenoising), :func:`adjacent_slice_data` (Noise2Sim),
:func:`paired_patch_data` (RED-CNN), :func:`clean_slice_data` (ScoreSDE-CT); for CT they share
:func:`mayo_split`. CLIPDenoising's data kinds:

- ``mayo``: ``data.root`` is an AAPM-Mayo tree (scanned once; the manifest is cached in the run folder,
  never in the data root) or a manifest CSV from ``pipelines/prepare_mayo.py``. The split preset decides
  the patients: training patches from full-dose slices of the training patients, validation on the
  quarter/full pairs of the held-out patient(s).
- ``image_folder``: clean images in ``data.root`` with online Gaussian noise; validation images in
  ``data.val_root`` (noise seeded per image).
- ``paired_folder``: ``clean/`` + ``noisy/`` folders in ``data.root`` and ``data.val_root``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ldct_clip.config import ExperimentConfig
from ldct_clip.data.datasets import EvaluationPairs, TrainingPatches
from ldct_clip.data.hu import IntensityScale
from ldct_clip.data.images import ImageFolderPatches, ImagePairs, PairedFolderPatches
from ldct_clip.data.mayo import Manifest, load_manifest
from ldct_clip.data.splits import Split, get_split
from ldct_clip.errors import InputError

logger = logging.getLogger(__name__)



@dataclass
class TrainingData:
    """What the training loop needs: items addressed by ``(index, seed)``, sampling weights, validation pairs."""

    train: Dataset
    weights: torch.Tensor
    validation: Dataset
    channels: int
    split_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.train) == 0:
            raise InputError("the training split is empty; check data.root and data.split")
        if len(self.validation) == 0:
            raise InputError("the validation split is empty; check data.val_root or the split's test patients")


@dataclass(frozen=True)
class MayoSplit:
    """An AAPM-Mayo manifest, the split of ``data.split`` and the validation pairs of the held-out patients."""

    manifest: Manifest
    split: Split
    validation: EvaluationPairs
    info: dict[str, Any]

    def training_data(self, train: Dataset, weights: torch.Tensor) -> TrainingData:
        """:class:`TrainingData` of ``train`` with these validation pairs."""
        return TrainingData(train, weights, self.validation, 1, self.info)


def mayo_split(config: ExperimentConfig, run_dir: Path) -> MayoSplit:
    """The manifest of ``data.root`` (scanned once, cached in ``run_dir``), its split and validation pairs.

    Validation is on ``data.validation_patients`` when given, else on the split's test patients (as the
    released code does, with a warning: ``best`` is then chosen on the test set).
    """
    d = config.data
    if d.kind != "mayo":
        raise InputError(f"method {config.method} trains on CT: set data.kind to mayo (got {d.kind})")
    if d.root is None:
        raise InputError("no training data: pass --data-root DIR (or set data.root in the config)")
    manifest = load_manifest(d.root, cache_dir=run_dir, write_cache=True)
    split = get_split(d.split, available_patients=manifest.patients, validation=d.validation_patients)
    held_out = split.validation or split.test  # the released code validates on the test patient
    if not split.validation:
        logger.warning("validating on the split's test patient(s) %s, as the released code does: best.safetensors "
                       "is then chosen on the test set; set data.validation_patients to hold out training "
                       "patients instead", ", ".join(split.test))
    validation = EvaluationPairs(manifest, held_out, thickness=d.thickness_mm, cache=d.cache)
    info = {"kind": "mayo", "name": split.name, "train": list(split.train), "test": list(split.test),
            "validation": list(held_out), "root": str(manifest.root)}
    return MayoSplit(manifest, split, validation, info)


def adjacent_slice_data(config: ExperimentConfig, run_dir: Path, scale: IntensityScale) -> TrainingData:
    """Noise2Sim's data: nearby low-dose slices of the training patients (and, with
    ``data.train_on_test_low_dose``, of the test patients too: a self-supervised method may), with the mask."""
    from ldct_clip.data.adjacent_slices import AdjacentSlicePairs

    d = config.data
    mayo = mayo_split(config, run_dir)
    patients = mayo.split.train + (mayo.split.test if d.train_on_test_low_dose else ())
    if d.train_on_test_low_dose:
        logger.warning("data.train_on_test_low_dose: Noise2Sim also trains on the low-dose slices of the test "
                       "patient(s) %s (self-supervised; never on their full dose)", ", ".join(mayo.split.test))
    train = AdjacentSlicePairs(mayo.manifest, patients, scale, thickness=d.thickness_mm, neighbor=d.neighbor_slices,
                               threshold_hu=d.mask_threshold_hu, patch_size=d.patch_size, cache=d.cache,
                               seed=config.train.seed)
    info = {**mayo.info, "low_dose_training_patients": list(patients)}
    return TrainingData(train, train.patient_balanced_weights(), mayo.validation, 1, info)


def paired_patch_data(config: ExperimentConfig, run_dir: Path, scale: IntensityScale) -> TrainingData:
    """RED-CNN's data: random quarter/full-dose patch pairs of the training patients."""
    from ldct_clip.data.paired_patches import PairedPatches

    d = config.data
    mayo = mayo_split(config, run_dir)
    train = PairedPatches(mayo.manifest, mayo.split.train, scale, thickness=d.thickness_mm, patch_size=d.patch_size,
                          patches_per_slice=d.patches_per_slice, cache=d.cache, seed=config.train.seed)
    return mayo.training_data(train, train.patient_balanced_weights())


def clean_slice_data(config: ExperimentConfig, run_dir: Path) -> TrainingData:
    """A score model's data: full-dose patches of the training patients, with no noise added."""
    d = config.data
    mayo = mayo_split(config, run_dir)
    train = TrainingPatches(mayo.manifest, mayo.split.train, patch_size=d.patch_size, sigma=0.0,
                            thickness=d.thickness_mm, cache=d.cache, seed=config.train.seed)
    return mayo.training_data(train, train.patient_balanced_weights())


def build_training_data(config: ExperimentConfig, run_dir: Path) -> TrainingData:
    """What ``config.method`` trains on (its :attr:`~ldct_clip.methods.Method.training_data`)."""
    from ldct_clip.methods import get_method

    return get_method(config.method).training_data(config, run_dir)


def gaussian_noise_data(config: ExperimentConfig, run_dir: Path) -> TrainingData:
    """CLIPDenoising's data for ``config.data``: clean images with online Gaussian noise (or sRGB pairs).

    Every problem is one :class:`InputError` line.
    """
    d = config.data
    if d.root is None:
        raise InputError("no training data: pass --data-root DIR (or set data.root in the config)")
    sigma = d.noise_sigma / 255.0
    channels = config.in_channels
    if d.kind == "mayo":
        if channels != 1:
            raise InputError(f"data.kind=mayo is CT (1 channel) but model.in_channels={channels}; set it to 1")
        mayo = mayo_split(config, run_dir)
        train = TrainingPatches(mayo.manifest, mayo.split.train, patch_size=d.patch_size, sigma=sigma,
                                thickness=d.thickness_mm, cache=d.cache, seed=config.train.seed)
        return mayo.training_data(train, train.patient_balanced_weights())
    if d.val_root is None:
        raise InputError(f"data.kind={d.kind} needs data.val_root: a folder of validation images")
    if d.kind == "image_folder":
        train = ImageFolderPatches(d.root, channels=channels, patch_size=d.patch_size, sigma=sigma)
        validation = ImagePairs(d.val_root, channels=channels, sigma=sigma)
    else:
        train = PairedFolderPatches(d.root, channels=channels, patch_size=d.patch_size)
        validation = ImagePairs(d.val_root, channels=channels)
    info = {"kind": d.kind, "train": str(d.root), "validation": str(d.val_root)}
    return TrainingData(train, torch.ones(len(train), dtype=torch.float64), validation, channels, info)
