"""``python -m ldct_clip.evaluate``: PSNR/SSIM and HU-fidelity report of checkpoints against full-dose CT.

Examples::

    python -m ldct_clip.evaluate --checkpoint best.safetensors --data-root /data/mayo --output reports/L506
    python -m ldct_clip.evaluate --checkpoint clip.safetensors n2s.safetensors redcnn.safetensors \\
        --data-root /data/mayo --output reports/L506-methods
    python -m ldct_clip.evaluate --method "CLIP σ5=runs/clip/last.safetensors" --method N2S=n2s.safetensors \\
        --low L506/quarter_1mm --full L506/full_1mm
    python -m ldct_clip.evaluate --checkpoint best.safetensors --data-root manifest.csv --split noise2sim \\
        --preset clipdenoising redcnn noise2sim --max-slices 40
    python -m ldct_clip.evaluate --checkpoint best.safetensors --low L506/quarter_1mm --full L506/full_1mm \\
        --roi 100,250,200,32,32

Rows: every model (each checkpoint of any method, in the order given; the first is the reference of the
paired statistics), the low-dose input, and the baselines TV and (when the optional ``bm3d`` package is
installed) BM3D on the same slices; under ``--preset clipdenoising`` also the published rows, marked as
quoted. The report folder gets report.md, report.html, metrics.csv, summary.json and figures/. Every file
the command reads (checkpoints, series, data) must lie outside the report folder, which ``--overwrite``
replaces. Exit status 0 on success, 2 for a usage problem (one line on stderr).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ldct_clip.cli import run_cli
from ldct_clip.data.datasets import DEFAULT_THICKNESS_MM
from ldct_clip.device import DEVICES
from ldct_clip.errors import InputError
from ldct_clip.evaluation import (
    BASELINES,
    BM3D_SIGMA_HU,
    CT_PRESETS,
    TV_WEIGHT,
    EvaluationResult,
    check_output,
    ct_presets,
    evaluate,
    load_manifest,
    pairs_from_manifest,
    pairs_from_series,
    resolve_baselines,
    worse_than_input,
    write_report,
)
from ldct_clip.evaluation.run import ModelEntry, load_model_entry
from ldct_clip.inference import BATCH_SIZES, PRECISIONS


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


class _ModelsAction(argparse.Action):
    """Collect ``--checkpoint PATH...`` and ``--method LABEL=PATH`` into one list, in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        found = list(getattr(namespace, self.dest) or [])
        if option_string == "--method":
            found.append(parse_method(str(values)))
        else:
            assert isinstance(values, list)
            found += [(None, Path(value)) for value in values]
        setattr(namespace, self.dest, found)


def parse_method(text: str) -> tuple[str, Path]:
    """``"LABEL=PATH"`` as ``(label, path)``; the label may hold spaces, the path may hold ``=``.

    >>> parse_method("N2S 30 min=runs/n2s/last.safetensors")
    ('N2S 30 min', PosixPath('runs/n2s/last.safetensors'))
    """
    label, sep, path = text.partition("=")
    if not sep or not label.strip() or not path:
        raise InputError(f"--method {text!r}: expected LABEL=PATH, e.g. --method 'Noise2Sim=n2s.safetensors'")
    return label.strip(), Path(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldct-clip-evaluate",
        description="Score checkpoints of any method against full-dose CT beside the low-dose input, TV and BM3D, "
                    "on the same slices under the published metric presets, with paired statistics, and write a "
                    "report folder.",
    )
    parser.add_argument("--checkpoint", nargs="+", dest="models", action=_ModelsAction, metavar="PATH",
                        help="checkpoint(s) (.safetensors) written by training, any method; labelled "
                             "'<method> (<file name>)'")
    parser.add_argument("--method", dest="models", action=_ModelsAction, metavar="LABEL=PATH",
                        help="a checkpoint with its own row label (repeatable); mixes with --checkpoint, in order")
    data = parser.add_argument_group("data (either --data-root, or --low with --full)")
    data.add_argument("--data-root", type=Path, help="AAPM-Mayo folder or manifest CSV from prepare_mayo.py")
    data.add_argument("--split", default="clipdenoising",
                      help="split preset whose test patients are evaluated (default clipdenoising: L506)")
    data.add_argument("--thickness", type=float, default=DEFAULT_THICKNESS_MM, help="slice thickness in mm (default 1)")
    data.add_argument("--kernel", help="reconstruction kernel, needed only when the data holds several")
    data.add_argument("--low", type=Path, help="low-dose series: DICOM folder or NIfTI file")
    data.add_argument("--full", type=Path, help="full-dose series at the same slice positions")
    parser.add_argument("--preset", nargs="+", action="extend", metavar="PRESET",
                        help=f"metric preset(s), one table each: {', '.join(CT_PRESETS)} (default clipdenoising)")
    parser.add_argument("--output", type=Path,
                        help="report folder to create (default <first checkpoint name>_evaluation); it may not hold "
                             "any file the command reads")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="compute device (default auto)")
    defaults = ", ".join(f"{n} on {device}" for device, n in BATCH_SIZES.items())
    parser.add_argument("--batch-size", type=_positive_int, help=f"slices per forward pass (default: {defaults})")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="model precision (default fp32)")
    parser.add_argument("--steps", type=_positive_int,
                        help="sampler steps for ScoreSDE-CT models (2 x steps + 1 network evaluations per slice; "
                             "default: the checkpoint's own, 1000 officially)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--baselines", nargs="+", metavar="NAME",
                       help=f"baselines to run, any of {', '.join(BASELINES)} (default: tv, and bm3d when the "
                            "bm3d package is installed; BM3D takes about 15 s per 512x512 slice on a CPU)")
    which.add_argument("--no-baselines", action="store_true", help="run no baselines")
    parser.add_argument("--tv-weight", type=float, default=TV_WEIGHT,
                        help=f"TV weight on the (HU+1024)/4096 scale (default {TV_WEIGHT:g})")
    parser.add_argument("--bm3d-sigma", type=float, default=BM3D_SIGMA_HU,
                        help=f"BM3D noise standard deviation in HU (default {BM3D_SIGMA_HU:g})")
    parser.add_argument("--max-slices", type=_positive_int,
                        help="evaluate at most N slices, evenly spread (quick looks)")
    parser.add_argument("--roi", action="append", metavar="Z,Y0,X0,H,W", default=None,
                        help="flat region for HU bias and noise, Z = index among the evaluated slices "
                             "(repeatable; default: found automatically)")
    parser.add_argument("--roi-size", type=_positive_int, help="side in pixels of automatically found ROIs")
    return parser


def parse_roi(text: str) -> tuple[int, int, int, int, int]:
    """``"z,y0,x0,h,w"`` as five integers.

    >>> parse_roi("3, 100,120,32,32")
    (3, 100, 120, 32, 32)
    """
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 5:
        raise InputError(f"--roi {text!r}: expected five integers z,y0,x0,h,w (z = index among evaluated slices)")
    return values  # type: ignore[return-value]


def table_lines(result: EvaluationResult) -> list[str]:
    """A short plain-text version of the tables and the warnings, for the terminal."""
    lines = []
    for spec in result.presets:
        lines.append(f"preset {spec.name} (window [{spec.window[0]:g}, {spec.window[1]:g}] HU, "
                     f"data_range {spec.data_range:g}, {len(result.slices)} slices):")
        for method in result.methods:
            s = result.summary(spec.name, method.key)
            lines.append(f"  {method.label:<40} PSNR {s.psnr_mean:7.2f} ± {s.psnr_std:5.2f} dB   "
                         f"SSIM {s.ssim_mean:.4f} ± {s.ssim_std:.4f}")
    for model in result.models:
        if model.encoder_is_random:
            lines.append(f"warning: {model.label}: the encoder was randomly initialised, not CLIP; see the report")
    lines += [f"warning: {line}" for line in worse_than_input(result)]
    return lines


def _distinct_labels(entries: list[ModelEntry], given: Sequence[tuple[str | None, Path]]) -> list[ModelEntry]:
    """Default labels that repeat (``run1/last.safetensors`` and ``run2/last.safetensors``) name the folder too."""
    labels = [entry.label for entry in entries]
    return [replace(entry, label=entry.label.replace(f"({path.name})", f"({path.parent.name}/{path.name})"))
            if label is None and labels.count(entry.label) > 1 else entry
            for entry, (label, path) in zip(entries, given)]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, evaluate, write the report folder, print the tables; return the exit status."""
    args = _parser().parse_args(argv)
    if not args.models:
        raise InputError("pass at least one --checkpoint PATH or --method LABEL=PATH")
    series_mode = args.low is not None or args.full is not None
    if series_mode == (args.data_root is not None) or (series_mode and (args.low is None or args.full is None)):
        raise InputError("pass either --data-root ROOT, or both --low SERIES and --full SERIES")
    presets = ct_presets(args.preset or ["clipdenoising"])
    baselines = () if args.no_baselines else args.baselines  # None: the defaults, noting a missing bm3d
    resolve_baselines(baselines)  # fail before any work
    rois = None if args.roi is None else [parse_roi(text) for text in args.roi]
    checkpoints = [path for _, path in args.models]
    output = args.output or Path(f"{checkpoints[0].stem}_evaluation")
    inputs = [*checkpoints, *([args.low, args.full] if series_mode else [args.data_root])]
    check_output(output, args.overwrite, inputs)  # before anything is read, let alone replaced

    entries = _distinct_labels([load_model_entry(path, label) for label, path in args.models], args.models)
    manifest = None
    if series_mode:
        pairs = pairs_from_series(args.low, args.full)
    else:
        manifest = load_manifest(args.data_root, cache_dir=output if output.is_dir() else None)
        check_output(output, args.overwrite, [*inputs, manifest.root])  # a manifest's slices live elsewhere
        pairs = pairs_from_manifest(manifest, args.split, args.thickness, args.kernel)
    if args.max_slices is not None:
        pairs = pairs.evenly_spaced(args.max_slices)

    result = evaluate(
        entries,
        pairs,
        presets=[p.name for p in presets],
        baselines=baselines,
        rois=rois,
        roi_size=args.roi_size,
        tv_weight=args.tv_weight,
        bm3d_sigma_hu=args.bm3d_sigma,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        steps=args.steps,
        progress=True,
    )
    command = shlex.join(["python", "-m", "ldct_clip.evaluate", *(sys.argv[1:] if argv is None else argv)])
    folder = write_report(result, output, overwrite=args.overwrite, manifest=manifest, command=command)
    print("\n".join(table_lines(result)))
    print(f"report written to {folder}")
    return 0


def cli() -> int:
    """Console-script entry point."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
