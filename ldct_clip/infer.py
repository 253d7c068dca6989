"""``python -m ldct_clip.infer``: denoise a CT series (or a folder of series) with a trained checkpoint of any method.

Examples::

    python -m ldct_clip.infer --checkpoint best.safetensors --input /data/L506/quarter_1mm --output out/L506
    python -m ldct_clip.infer --checkpoint best.safetensors --input scan.nii.gz --output den.nii.gz --format nifti
    python -m ldct_clip.infer --checkpoint best.safetensors --input /data/mayo --output out/ --precision bf16
    torchrun --nproc-per-node 4 -m ldct_clip.infer --checkpoint best.safetensors --input /data/mayo --output out/

A folder without DICOM files of its own is searched for DICOM series folders (batch mode); each goes to the
same relative place under ``--output``, and a table of the series (also written as
``inference_summary.json`` into ``--output``) ends the run. Under ``torchrun`` the series are shared out
among the processes by slice count (:mod:`ldct_clip.sharding`), one GPU each (``LOCAL_RANK``) or CPU;
``--skip-existing`` resumes a run that was killed. The exit status is 0 when everything was written, 1 when
some series of a batch failed (each listed on one line at the end), and 2 for a usage problem (one line on
stderr); ``torchrun`` itself exits 1 when any process did not exit 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ldct_clip.cli import run_cli
from ldct_clip.device import DEVICES
from ldct_clip.errors import InputError
from ldct_clip.inference import BATCH_SIZES, FORMATS, PRECISIONS, SeriesResult, denoise_series
from ldct_clip.sharding import SeriesRecord, Shard, summary_table, write_summary

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
    parser.add_argument("--skip-existing", action="store_true",
                        help="resume an interrupted run: keep the outputs that are complete, do the missing "
                             "series, and remove the hidden partial outputs the interrupted run left")
    return parser


def summary_lines(results: Sequence[SeriesResult]) -> list[str]:
    """One line with the counts, then one line per failed series.

    >>> ok = SeriesResult(Path("a"), Path("out/a"), slices=3, seconds=2.0)
    >>> summary_lines([ok, SeriesResult(Path("b"), Path("out/b"), error="b: corrupt DICOM file")])
    ['denoised 1 of 2 series (3 slices); 1 failed:', '  FAILED b: corrupt DICOM file']
    >>> summary_lines([ok, SeriesResult(Path("c"), Path("out/c"), skipped=True)])
    ['denoised 1 of 1 series (3 slices), skipped 1 whose output exists']
    """
    skipped = [r for r in results if r.skipped]
    done = [r for r in results if r.ok and not r.skipped]
    failed = [r for r in results if not r.ok]
    head = f"denoised {len(done)} of {len(done) + len(failed)} series ({sum(r.slices for r in done)} slices)"
    if skipped:
        head += f", skipped {len(skipped)} whose output exists"
    if not failed:
        return [head]
    return [f"{head}; {len(failed)} failed:", *(f"  FAILED {r.error}" for r in failed)]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run :func:`~ldct_clip.inference.denoise_series` on this rank's share, gather every rank's
    results, and on rank 0 print (in batch mode also as a table and a JSON file) the summary; return the exit
    status."""
    args = _parser().parse_args(argv)
    if args.overwrite and args.skip_existing:
        raise InputError("--overwrite replaces existing outputs and --skip-existing keeps them; pass only one")
    started = time.perf_counter()
    shard = Shard.from_env(args.device)
    try:
        per_rank = shard.all_gather(_denoise(args, shard))
    finally:
        shard.close()
    results = [result for rank in per_rank for result in rank]
    if shard.rank == 0:
        if any(result.target != args.output for result in results):  # batch mode: not one series into --output
            records = sorted((SeriesRecord.from_result(result, args.input, rank)
                              for rank, share in enumerate(per_rank) for result in share), key=lambda r: r.series)
            print("\n".join(summary_table(records)), file=sys.stderr)
            write_summary(args.output, records, shard.world_size, time.perf_counter() - started)
        lines = summary_lines(results)
        print("\n".join(lines), file=sys.stderr if len(lines) > 1 else sys.stdout)
    return EXIT_SOME_FAILED if any(not r.ok for r in results) else 0


def _denoise(args: argparse.Namespace, shard: Shard) -> list[SeriesResult]:
    return denoise_series(
        args.checkpoint,
        args.input,
        args.output,
        fmt=args.format,
        series_uid=args.series_uid,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        overwrite=args.overwrite,
        progress=shard.rank == 0,  # one progress bar on the terminal, not one per process over each other
        steps=args.steps,
        skip_existing=args.skip_existing,
        shard=shard,
    )


def cli() -> int:
    """Console-script entry point (``ldct-clip-infer``): one-line errors, exit status 2 for usage problems."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
