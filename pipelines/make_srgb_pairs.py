"""Make noisy sRGB training pairs from clean images with the CBDNet-style camera pipeline.

    python pipelines/make_srgb_pairs.py --input DIV2K_sub/ --output srgb_pairs/ [--workers 8] [--seed 0]
        [--sigma-s 0.04 --sigma-c 0.03] [--crf 201_CRF_data.mat [--icrf dorfCurvesInv.mat]] [--overwrite]

Writes ``clean/`` and ``noisy/`` folders of 8-bit PNGs with matching names (the layout the
``paired_folder`` configs read) plus ``pairs.json`` with the settings and each image's simulated camera.
Each image is seeded from ``--seed`` and its file name, so reruns and any ``--workers`` give the same
files. Without ``--crf`` the camera responses come from a gamma family (see ``ldct_clip.data.isp``).
Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ldct_clip.cli import run_cli
from ldct_clip.data.isp import CameraPipeline, ResponseLibrary, write_srgb_pairs
from ldct_clip.errors import InputError


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path, help="folder of clean RGB images")
    parser.add_argument("--output", required=True, type=Path, help="new folder for clean/ and noisy/")
    parser.add_argument("--crf", type=Path, help="CBDNet's 201_CRF_data.mat (camera response curves)")
    parser.add_argument("--icrf", type=Path, help="CBDNet's dorfCurvesInv.mat (their inverses); needs --crf")
    parser.add_argument("--sigma-s", type=float, default=0.04, help="signal-dependent raw noise (default 0.04)")
    parser.add_argument("--sigma-c", type=float, default=0.03, help="signal-independent raw noise (default 0.03)")
    parser.add_argument("--seed", type=int, default=0, help="run seed; each image is seeded from it and its name")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the pipeline from the flags and write the pairs; returns the exit status."""
    args = parse_args(argv)
    if args.icrf is not None and args.crf is None:
        raise InputError("--icrf needs --crf: pass both CBDNet curve files, or neither for the gamma family")
    responses = ResponseLibrary.load(args.crf, args.icrf) if args.crf is not None else None
    pipeline = CameraPipeline(sigma_s=args.sigma_s, sigma_c=args.sigma_c, responses=responses)
    out = write_srgb_pairs(args.input, args.output, pipeline, seed=args.seed, workers=args.workers,
                           overwrite=args.overwrite, progress=not args.no_progress)
    print(f"pairs written to {out} ({out / 'clean'}, {out / 'noisy'})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
