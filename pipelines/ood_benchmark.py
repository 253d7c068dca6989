"""Score checkpoints on out-of-distribution noise, like the paper's Tables 1, 2 and 9.

    python pipelines/ood_benchmark.py --checkpoint runs/a/checkpoints/best.safetensors \\
        [--checkpoint other.safetensors ...] --images testsets/CBSD68 \\
        [--noise gaussian:25,50 --noise spatial_gaussian:45,50,55 --noise poisson:2.5,3,3.5 \\
         --noise speckle:0.02,0.03,0.04 --noise salt_pepper:0.012,0.016,0.02] [--output DIR] [--device cpu]

Without ``--noise`` a clean folder gets the paper's 14 OOD cases and a paired real-noise folder (SIDD
blocks, PolyU/CC ``*_real``/``*_mean``, ``clean/`` + ``noisy/``) its stored noisy images (``--noise real``).
A bare noise name (``--noise poisson``) means the paper's levels. Writes ``ood_table.md``,
``ood_table.csv`` and ``ood_per_image.csv`` and prints the Markdown table. Bad input prints one line on
stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ldct_clip.cli import run_cli
from ldct_clip.device import DEVICES
from ldct_clip.ood import PAPER_RESULTS, format_markdown, parse_cases, run_ood_benchmark, write_ood_tables


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True, type=Path,
                        help="model checkpoint (.safetensors); repeat to compare models")
    parser.add_argument("--label", action="append", help="column name for each --checkpoint, in order")
    parser.add_argument("--images", required=True, type=Path, help="test-set folder (clean images or real pairs)")
    parser.add_argument("--noise", action="append", default=[], metavar="NAME[:LEVEL,...]",
                        help="noise cases, e.g. gaussian:25,50 (repeatable); 'real' = stored noisy images")
    parser.add_argument("--output", type=Path, help="folder for the tables (default: ood_<images folder name>)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--seed", type=int, default=0, help="noise seed, the same for every image (default 0)")
    parser.add_argument("--dataset", choices=sorted(PAPER_RESULTS),
                        help="the paper's test set to quote (default: recognised from the folder name)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run the benchmark, write and print the tables; returns the exit status."""
    args = parse_args(argv)
    cases = parse_cases(args.noise)
    result = run_ood_benchmark(args.checkpoint, args.images, cases, labels=args.label, device=args.device,
                               seed=args.seed, dataset=args.dataset, progress=not args.no_progress)
    output = args.output or Path(f"ood_{args.images.resolve().name}")
    paths = write_ood_tables(result, output)
    print(format_markdown(result))
    print("tables written: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
