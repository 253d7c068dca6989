"""``python -m ldct_clip.view``: an interactive before/after viewer page for series of one geometry.

Example (a series beside its denoised output from ``infer``, with the full dose as reference)::

    python -m ldct_clip.view L067_quarter/ L067_denoised/ --full L067_full/ --output L067.html

Inputs are DICOM series folders or NIfTI files; all must have the same slice count, slice size, voxel
spacing, orientation and slice positions (an ``infer`` output has its input's). With ``--full`` the page
shows per-slice PSNR/SSIM of every other series against it and offers a difference pane.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ldct_clip.cli import run_cli
from ldct_clip.data.mayo import PAIR_TOLERANCE_FRACTION
from ldct_clip.errors import InputError
from ldct_clip.evaluation import CT_PRESETS, ct_presets, slice_positions
from ldct_clip.io import CTVolume, read_volume
from ldct_clip.metrics import score_slices
from ldct_clip.viewer import Pane, SliceLabel, write_viewer

__all__ = ["check_same_geometry", "default_labels", "main"]

_SPACING_TOLERANCE = 1e-3
"""Relative difference in voxel spacing (and absolute in direction cosines) still taken as equal."""
_AGAIN = "pass series of one geometry (e.g. an infer output beside its input)"


def check_same_geometry(first: CTVolume, other: CTVolume) -> None:
    """Raise an :class:`InputError` naming both inputs when ``other`` is not on ``first``'s voxel grid: slice
    count, slice size, voxel spacing, orientation and each slice's own position (x, y, z) must agree."""
    a, b = first.source, other.source
    if first.shape[0] != other.shape[0]:
        raise InputError(f"{b}: {other.shape[0]} slices but {a} has {first.shape[0]}; {_AGAIN}")
    if first.shape[1:] != other.shape[1:]:
        raise InputError(f"{b}: slices of {other.shape[1]}x{other.shape[2]} pixels but {a} has "
                         f"{first.shape[1]}x{first.shape[2]}; {_AGAIN}")
    if not np.allclose(first.spacing, other.spacing, rtol=_SPACING_TOLERANCE, atol=0):
        raise InputError(f"{b}: voxel spacing (z, y, x) {_mm(other.spacing)} mm but {a} has {_mm(first.spacing)} mm; "
                         f"{_AGAIN}")
    if not np.allclose(first.direction, other.direction, rtol=0, atol=_SPACING_TOLERANCE):
        raise InputError(f"{b}: orientation differs from {a}'s (direction cosines); {_AGAIN}")
    distance = np.linalg.norm(np.asarray(first.positions) - np.asarray(other.positions), axis=1)
    off = np.flatnonzero(distance > PAIR_TOLERANCE_FRACTION * min(first.spacing))
    if off.size:
        i = int(off[0])
        at_a, at_b = (_mm(np.asarray(v.positions)[i]) for v in (first, other))
        raise InputError(f"{b}: slice {i} lies at {at_b} mm but slice {i} of {a} at {at_a} mm "
                         f"({off.size} slices differ); {_AGAIN}")


def _mm(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _name(path: Path) -> str:
    """``scan`` for ``scan.nii.gz``, ``scan.nii`` or a folder ``scan``."""
    return path.name.removesuffix(".gz").removesuffix(".nii")


def default_labels(paths: Sequence[Path]) -> list[str]:
    """Folder or file names; ``parent/name`` for all when two names are equal (``a/L067``, ``b/L067``).

    >>> default_labels([Path("low/L067"), Path("out/L067.nii.gz")])
    ['low/L067', 'out/L067']
    >>> default_labels([Path("L067_quarter"), Path("L067_denoised")])
    ['L067_quarter', 'L067_denoised']
    """
    names = [_name(path) for path in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{path.resolve().parent.name}/{name}" for path, name in zip(paths, names)]


def _read(path: Path) -> CTVolume:
    volume = read_volume(path)
    if not np.isfinite(volume.hu).all():
        raise InputError(f"{path}: holds NaN or infinite values; pass a series of finite HU")
    return volume


def _patient(volume: CTVolume) -> str:
    headers = volume.slice_headers
    patient = str(headers[0].get("PatientID", "") or "").strip() if headers else ""
    return patient or _name(volume.source)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ldct_clip.view",
        description="Write one self-contained HTML page to scroll, window, zoom and flip through CT series of one "
                    "geometry side by side (DICOM folders or NIfTI files), with HU under the cursor.",
    )
    parser.add_argument("low", type=Path, metavar="LOW", help="first series (e.g. the low-dose input)")
    parser.add_argument("methods", type=Path, nargs="*", metavar="METHOD", help="more series (e.g. infer outputs)")
    parser.add_argument("--full", type=Path, help="full-dose reference: adds PSNR/SSIM and a difference pane")
    parser.add_argument("--label", action="append", metavar="TEXT",
                        help="pane label, once per series in the order LOW, METHOD..., FULL (default: their names)")
    parser.add_argument("--preset", nargs="+", action="extend", metavar="PRESET",
                        help=f"metric preset(s) with --full: {', '.join(CT_PRESETS)} (default clipdenoising)")
    parser.add_argument("--title", help="title above the panes (default: the first series' name)")
    parser.add_argument("--output", type=Path, required=True, help="HTML file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, read and check the series, compute metrics against ``--full`` and write the page."""
    args = _parser().parse_args(argv)
    paths = [args.low, *args.methods] + ([args.full] if args.full else [])
    labels = args.label or default_labels(paths)
    if len(labels) != len(paths):
        raise InputError(f"--label given {len(labels)} times for {len(paths)} series; give one per series "
                         "(LOW, METHOD..., FULL) or none")
    output: Path = args.output
    if output.exists() and not args.overwrite:
        raise InputError(f"{output}: already exists; pass --overwrite to replace it or choose another --output")
    if output.is_dir():
        raise InputError(f"{output}: is a folder; pass a file name such as viewer.html")
    if not output.parent.is_dir():
        raise InputError(f"{output}: folder {output.parent} does not exist; create it or choose another --output")
    presets = ct_presets(args.preset or ["clipdenoising"])

    volumes = [_read(path) for path in paths]
    for volume in volumes[1:]:
        check_same_geometry(volumes[0], volume)
    keys = ["low"] + [f"method{i}" for i in range(1, len(args.methods) + 1)] + (["full"] if args.full else [])
    panes = [Pane(key, label, volume.hu) for key, label, volume in zip(keys, labels, volumes)]
    patient = _patient(volumes[0])
    slices = [SliceLabel(i, float(z), patient) for i, z in enumerate(slice_positions(volumes[0]))]
    metrics = None
    if args.full:
        target = volumes[-1].hu
        metrics = {preset.name: {pane.key: {name: values.tolist() for name, values in
                                            score_slices(pane.hu, target, preset).items()}
                                 for pane in panes[:-1]}
                   for preset in presets}
    write_viewer(output, panes, slices, metrics, args.title or f"{labels[0]} ({len(slices)} slices)",
                 reference="full" if args.full else None)
    print(f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB): open it in a web browser")
    return 0


def cli() -> int:
    """Console-script entry point (``ldct-clip-view``)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
