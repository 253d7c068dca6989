"""``python -m ldct_clip.export``: export a trained checkpoint to ONNX or TorchScript, verified before it is written.

Examples::

    python -m ldct_clip.export --checkpoint best.safetensors --format onnx --output model.onnx
    python -m ldct_clip.export --checkpoint best.safetensors --format torchscript --output model.pt

A CT model's graph takes ``hu`` (N×1×H×W float32, Hounsfield units) and gives HU; an RGB model's takes and
gives N×3×H×W in [0, 1]. Batch, height and width are dynamic; padding and cropping are inside the graph.
The command runs the export and the torch model on two 512×512 slices, prints the largest and the RMS
difference, and writes nothing when the largest exceeds the tolerance (0.5 HU). Methods with a sampler
(ScoreSDE-CT) are refused. ONNX needs ``pip install 'ldct_clip[onnx]'``. See docs/deployment.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ldct_clip.cli import run_cli
from ldct_clip.exporting import EXPORT_FORMATS, export_checkpoint


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldct-clip-export",
        description="Export a checkpoint to ONNX or TorchScript (HU in, HU out for CT), verified against torch.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint (.safetensors) written by training")
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS, help="export format (default onnx)")
    parser.add_argument("--output", required=True, type=Path, help="file to write (e.g. model.onnx, model.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, export and verify; print the verification line; return the exit status."""
    args = _parser().parse_args(argv)
    report = export_checkpoint(args.checkpoint, args.output, args.format, overwrite=args.overwrite)
    print(report.summary())
    return 0


def cli() -> int:
    """Console-script entry point (``ldct-clip-export``): one-line errors, exit status 2 for usage problems."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
