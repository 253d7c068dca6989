"""``python -m ldct_clip.infer``: denoise a CT series (or a folder of series) with a trained checkpoint of any method.

Examples::

    python -m ldct_clip.infer --checkpoint best.safetensors --input /data/L506/quarter_1mm --output out/L506
    python -m ldct_clip.infer --checkpoint best.safetensors --input scan.nii.gz --output den.nii.gz --format nifti
    python -m ldct_clip.infer --checkpoint best.safetensors --input /data/mayo --output out/ --precision bf16

A folder without DICOM files of its own is searched for DICOM series folders (batch mode); each goes to the
same relative place under ``--output``. The exit status is 0 when everything was written, 1 when some series
of a batch failed (each listed on one line at the end), and 2 for a usage problem (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ldct_clip.cli import run_cli
from ldct_clip.device import DEVICES
from ldct_clip.inference import BATCH_SIZES, FORMATS, PRECISIONS, SeriesResult, denoise_series

EXIT_SOME_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldct-clip-infer",
        description="Denoise a CT series (DICOM folder or NIfTI file) or a folder of series with a CLIPDenoiser.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint (.safetensors) written by training")
    parser.add_argument("--input", required=True, type=Path,
                        help="DICOM series folder, NIfTI file, or folder of series folders (batch mode)")
    parser.add_argument("--output", required=True, type=Path,
                        help="output folder (DICOM; NIfTI in batch mode) or .nii/.nii.gz file")
    parser.add_argument("--format", default="dicom", choices=FORMATS, help="output format (default dicom)")
    parser.add_argument("--series-uid", help="SeriesInstanceUID to denoise when the input folder holds several")
    defaults = ", ".join(f"{n} on {device}" for device, n in BATCH_SIZES.items())
    parser.add_argument("--batch-size", type=int, help=f"slices per forward pass (default: {defaults})")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="compute device (default auto)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 (default, full HU fidelity) or bf16 (bfloat16 autocast: about twice as fast on "
                             "CPUs with AVX-512 BF16; its HU cost is measured by benchmarks/infer_throughput.py)")
    parser.add_argument("--steps", type=int, help="sampler steps for methods that sample (ScoreSDE-CT: about "
                                                 "2 x steps + 1 network evaluations per slice; default: the "
                                                 "checkpoint's own, 1000 officially)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def summary_lines(results: Sequence[SeriesResult]) -> list[str]:
    """One line with the counts, then one line per failed series.

    >>> ok = SeriesResult(Path("a"), Path("out/a"), slices=3, seconds=2.0)
    >>> summary_lines([ok, SeriesResult(Path("b"), Path("out/b"), error="b: corrupt DICOM file")])
    ['denoised 1 of 2 series (3 slices); 1 failed:', '  FAILED b: corrupt DICOM file']
    """
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    head = f"denoised {len(done)} of {len(results)} series ({sum(r.slices for r in done)} slices)"
    if not failed:
        return [head]
    return [f"{head}; {len(failed)} failed:", *(f"  FAILED {r.error}" for r in failed)]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run :func:`~ldct_clip.inference.denoise_series`, print a summary; return the exit status."""
    args = _parser().parse_args(argv)
    results = denoise_series(
        args.checkpoint,
        args.input,
        args.output,
        fmt=args.format,
        series_uid=args.series_uid,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        overwrite=args.overwrite,
        progress=True,
        steps=args.steps,
    )
    lines = summary_lines(results)
    print("\n".join(lines), file=sys.stderr if len(lines) > 1 else sys.stdout)
    return EXIT_SOME_FAILED if any(not r.ok for r in results) else 0


def cli() -> int:
    """Console-script entry point (``ldct-clip-infer``): one-line errors, exit status 2 for usage problems."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
