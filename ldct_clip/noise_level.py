"""``python -m ldct_clip.noise_level``: the noise SD of CT series and the training σ that matches it.

Examples::

    python -m ldct_clip.noise_level L067/quarter_3mm
    python -m ldct_clip.noise_level scan1.nii.gz scan2_dicom/ --checkpoint runs/x/checkpoints/last.safetensors
    python -m ldct_clip.noise_level L067/quarter_1mm --json

For each series (a DICOM folder or a NIfTI file) it prints the estimated image noise SD in HU (see
:mod:`ldct_clip.noise_estimation` for the estimator), the method and the ``data.noise_sigma`` line to paste
into a training config. With ``--checkpoint`` it compares each series with the training noise recorded in
the checkpoint and warns when they differ by more than
:data:`~ldct_clip.noise_estimation.NOISE_MISMATCH_FACTOR`. Exit status 0 on success, 2 for a usage problem
(one line on stderr, nothing on stdout).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ldct_clip.cli import run_cli
from ldct_clip.config import DataConfig
from ldct_clip.errors import InputError
from ldct_clip.io import read_volume
from ldct_clip.models.checkpoint import TRAINING_NOISE_KEY, read_checkpoint_metadata
from ldct_clip.noise_estimation import (
    METHODS,
    NoiseEstimate,
    compare_with_training,
    estimate_noise_sd,
    matching_sigma,
    sigma_line_value,
    sigma_to_hu,
)

RELEASED_SIGMA = DataConfig().noise_sigma
"""σ of the released LDCT recipe (configs/ldct_mayo_sigma5.yaml), the config's default."""
NOTE = (
    f"the released LDCT recipe trains at σ = {RELEASED_SIGMA:g} (≈ {sigma_to_hu(RELEASED_SIGMA):.0f} HU); "
    "the CLIPDenoising authors advise a smaller σ for 3 mm slices"
)


def training_noise_sigma(checkpoint: Path) -> float | None:
    """The training σ (1/255 units) recorded in ``checkpoint``, or None when it records none.

    >>> training_noise_sigma(Path("missing.safetensors"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ldct_clip.errors.InputError: missing.safetensors: checkpoint not found; ...
    """
    raw = read_checkpoint_metadata(checkpoint).get(TRAINING_NOISE_KEY)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise InputError(
            f"{checkpoint}: metadata {TRAINING_NOISE_KEY}={raw!r} is not a noise level >= 0; the checkpoint is "
            "damaged or was edited: pass one written by ldct_clip training"
        )
    return value


def _record(series: Path, spacing_z: float, slices: int, estimate: NoiseEstimate,
            training_sigma: float | None) -> dict[str, Any]:
    """Everything printed for one series, as JSON-ready values."""
    return {
        "series": str(series),
        "slices": slices,
        "slice_spacing_mm": spacing_z,
        "sd_hu": estimate.sd_hu,
        "method": estimate.method,
        "range_hu": list(estimate.range_hu),
        "windows": estimate.windows,
        "checks": estimate.checks,
        "consistent": estimate.consistent,
        "description": estimate.description,
        "matching_noise_sigma": matching_sigma(estimate.sd_hu),
        "config_line": f"data.noise_sigma: {sigma_line_value(estimate.sd_hu)}",
        "warning": None if training_sigma is None else compare_with_training(estimate.sd_hu, training_sigma),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ldct_clip.noise_level",
        description="Estimate the image noise SD (HU) of CT series and the training data.noise_sigma that matches.",
    )
    parser.add_argument("series", nargs="+", type=Path, help="DICOM series folder or .nii/.nii.gz file")
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help="estimator (default auto: flat soft-tissue regions, checked by slice differences)")
    parser.add_argument("--checkpoint", type=Path, help="compare with the training noise recorded in this checkpoint")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Estimate every series, then print them all (nothing is printed when any input is bad)."""
    args = _parser().parse_args(argv)
    training_sigma = None if args.checkpoint is None else training_noise_sigma(args.checkpoint)
    records = []
    for series in args.series:
        volume = read_volume(series)
        try:
            estimate = estimate_noise_sd(volume.hu, args.method)
        except InputError as err:
            raise InputError(f"{series}: {err}") from None
        records.append(_record(series, volume.spacing[0], volume.shape[0], estimate, training_sigma))
    checkpoint = None
    if args.checkpoint is not None:
        checkpoint = {"path": str(args.checkpoint), "training_noise_sigma": training_sigma,
                      "training_noise_hu": None if training_sigma is None else sigma_to_hu(training_sigma)}
    if args.json:
        print(json.dumps({"series": records, "checkpoint": checkpoint, "note": NOTE}, indent=2, ensure_ascii=False))
        return 0
    for record in records:
        print(f"{record['series']} ({record['slices']} slices, {record['slice_spacing_mm']:g} mm apart)")
        print(f"  noise SD: {record['sd_hu']:.1f} HU ({record['method']})")
        print(f"  {record['description']}")
        print(f"  matching training noise: {record['config_line']}")
        if record["warning"]:
            print(f"  WARNING: {record['warning']}")
    if checkpoint is not None:
        if training_sigma is None:
            print(f"checkpoint {args.checkpoint}: records no training noise ('{TRAINING_NOISE_KEY}'); "
                  "it was written before ldct_clip recorded it")
        else:
            print(f"checkpoint {args.checkpoint}: trained at σ = {training_sigma:g}/255 "
                  f"(≈ {sigma_to_hu(training_sigma):.0f} HU)")
    print(f"note: {NOTE}")
    return 0


def cli() -> int:
    """Console-script entry point."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
