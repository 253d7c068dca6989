"""How CT denoisers degrade across dose, noise kernel and slice thickness, from one normal-dose series.

    python pipelines/ct_generalization.py --checkpoint A.safetensors [B.safetensors ...] \\
        (--data-root MAYO [--split clipdenoising] | --input SERIES) \\
        [--doses 0.5 0.25 0.1 0.05] [--filters ramp hann] [--thickness 1 3] [--preset clipdenoising ...] \\
        [--max-slices N] [--projector auto] [--geometry parallel] [--seed 0] [--device auto] \\
        --output DIR [--overwrite]

Simulates every condition (dose × FBP filter of the added noise × thickness; thick slices are means of
adjacent thin ones) from the normal dose, denoises it with every checkpoint (any method) and TV, and writes
DIR/report.md, report.html, summary.json, table.csv, figures/psnr_vs_dose_<preset>.png, one evaluation
report per condition in DIR/conditions/<key>/, and the simulations in DIR/cache/ (a rerun into the same DIR
with --overwrite and other checkpoints simulates nothing). With --data-root the normal dose is the 1 mm full
dose of the split's test patient(s), and their real quarter dose is a condition of its own. DIR appears
complete or not at all; it may not hold or lie inside an input. Bad input prints one line on stderr and exits
with status 2. See docs/generalization.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ldct_clip.cli import run_cli
from ldct_clip.device import DEVICES
from ldct_clip.evaluation import CT_PRESETS
from ldct_clip.evaluation.run import FIGURE_SLICES
from ldct_clip.generalization import DEFAULT_DOSES, DEFAULT_FILTERS, DEFAULT_THICKNESSES, TABLE_NAME, run_generalization
from ldct_clip.projectors import FILTERS, GEOMETRIES, PROJECTORS
from ldct_clip.simulate import DEFAULT_ELECTRONIC_NOISE, DEFAULT_GEOMETRY, DEFAULT_PHOTONS, DEFAULT_PROJECTOR


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", nargs="+", required=True, type=Path, metavar="PATH",
                        help="checkpoint(s) of any method; the first is the reference of the paired statistics")
    parser.add_argument("--label", nargs="+", metavar="LABEL", help="a row label per checkpoint, in order")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data-root", type=Path, help="AAPM-Mayo folder or manifest CSV (test patients' full dose)")
    data.add_argument("--input", type=Path, help="normal-dose series: DICOM folder or .nii/.nii.gz file")
    parser.add_argument("--split", default="clipdenoising", help="split preset of --data-root (default clipdenoising)")
    parser.add_argument("--doses", nargs="+", type=float, default=list(DEFAULT_DOSES), metavar="D",
                        help=f"dose fractions in (0, 1) (default {' '.join(f'{d:g}' for d in DEFAULT_DOSES)})")
    parser.add_argument("--filters", nargs="+", default=list(DEFAULT_FILTERS), metavar="NAME",
                        help=f"FBP filters of the added noise, among {', '.join(FILTERS)} (default "
                             f"{' '.join(DEFAULT_FILTERS)}: sharp and smooth)")
    parser.add_argument("--thickness", nargs="+", type=float, default=list(DEFAULT_THICKNESSES), metavar="MM",
                        help="slice thicknesses in mm, multiples of the series' slice spacing (default "
                             f"{' '.join(f'{t:g}' for t in DEFAULT_THICKNESSES)})")
    parser.add_argument("--preset", nargs="+", default=["clipdenoising"], metavar="PRESET",
                        help=f"metric preset(s): {', '.join(CT_PRESETS)} (default clipdenoising)")
    parser.add_argument("--max-slices", type=int, help="at most N evaluated slices per patient and condition "
                                                       "(a central block; quick CPU runs)")
    parser.add_argument("--projector", default=DEFAULT_PROJECTOR, choices=PROJECTORS,
                        help=f"simulation projector (default {DEFAULT_PROJECTOR})")
    parser.add_argument("--geometry", default=DEFAULT_GEOMETRY, choices=GEOMETRIES,
                        help=f"simulation geometry (default {DEFAULT_GEOMETRY})")
    parser.add_argument("--photons", type=float, default=DEFAULT_PHOTONS,
                        help=f"incident photons per ray of the normal dose (default {DEFAULT_PHOTONS:g})")
    parser.add_argument("--electronic-noise", type=float, default=DEFAULT_ELECTRONIC_NOISE,
                        help=f"electronic noise std in counts (default {DEFAULT_ELECTRONIC_NOISE:g})")
    parser.add_argument("--seed", type=int, default=0, help="simulation noise seed (default 0)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="compute device of the models")
    parser.add_argument("--batch-size", type=int, help="slices per forward pass of the models")
    parser.add_argument("--figure-slices", type=int, default=FIGURE_SLICES,
                        help=f"slices drawn as figures in each condition's report (default {FIGURE_SLICES})")
    parser.add_argument("--no-baselines", action="store_true", help="leave TV out")
    parser.add_argument("--output", required=True, type=Path, help="benchmark folder to create")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier benchmark folder (its simulations are reused)")
    return parser.parse_args(argv)


def _psnr(value: float | None) -> str:
    """A mean PSNR for the terminal (None: an infinite PSNR, which the summary stores as null)."""
    return "inf" if value is None else f"{value:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table's location and the per-condition PSNR; returns the exit status."""
    args = parse_args(argv)
    command = shlex.join(["python", "pipelines/ct_generalization.py", *(sys.argv[1:] if argv is None else argv)])
    result = run_generalization(
        args.checkpoint, args.output, input_path=args.input, data_root=args.data_root, split=args.split,
        doses=args.doses, filters=args.filters, thicknesses=args.thickness, presets=args.preset, labels=args.label,
        baselines=() if args.no_baselines else ("tv",), max_slices=args.max_slices, seed=args.seed,
        projector=args.projector, geometry=args.geometry, photons=args.photons,
        electronic_noise=args.electronic_noise, device=args.device, batch_size=args.batch_size,
        figure_slices=args.figure_slices, overwrite=args.overwrite, progress=True, command=command,
    )
    preset = result.settings["presets"][0]
    for item in result.conditions:
        scores = item.summary["presets"][preset]["methods"]
        cells = ", ".join(f"{method['label']} {_psnr(scores[method['key']]['psnr_mean'])}"
                          for method in item.summary["methods"])
        print(f"{item.condition.label}: PSNR ({preset}) {cells}")
    print(f"simulations computed: {result.settings['simulations_computed']}, "
          f"from the cache: {result.settings['simulations_from_cache']}")
    print(f"report written to {result.output / 'report.html'} (also report.md, summary.json, {TABLE_NAME})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
