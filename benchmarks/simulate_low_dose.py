"""Slices per second of the low-dose simulation at 512×512: the scikit-image reference against the fast projectors.

The slice is pydicom-data's real CT slice (693_UNCR.dcm), repeated ``--slices`` times (each copy gets its own
noise stream). Every projector runs the same parallel-beam geometry and view count (⌈π/2 · size⌉, about 810
views) through :func:`ldct_clip.simulate.simulate_low_dose`: ``skimage`` slice by slice in one process per
core (``--workers``), ``nufft`` and ``torch`` in batches with ``--workers`` threads. Prints a table with
slices/s, the ratio to scikit-image, and the added noise's SD over the central 256 × 256 pixels relative to
scikit-image's (same seed, so the same photon draws), plus the load average before and after: the machine may
be shared, so compare ratios within one run. The GPU row appears when CUDA is present (``torch`` on CUDA).

    python benchmarks/simulate_low_dose.py [--dose 0.25] [--slices 4] [--workers 2] [--projectors skimage nufft torch]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from pydicom.data import get_testdata_file

from ldct_clip.io import read_slice_header, read_slice_hu
from ldct_clip.projectors import resolve_projector
from ldct_clip.projectors.geometry import ParallelGeometry
from ldct_clip.simulate import simulate_low_dose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dose", type=float, default=0.25)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--projectors", nargs="+", default=["skimage", "nufft", "torch"])
    args = parser.parse_args()

    file = get_testdata_file("693_UNCR.dcm")
    hu = np.repeat(read_slice_hu(file)[None], args.slices, axis=0)
    pixel_mm = read_slice_header(file).pixel_spacing[1]
    centre = (slice(None), slice(128, 384), slice(128, 384))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    print(f"{args.slices} slices {hu.shape[1]}x{hu.shape[2]}, {pixel_mm:g} mm, dose {args.dose:g}, "
          f"workers {args.workers}; load average before: {os.getloadavg()}")
    rows, reference = [], None
    for name in args.projectors:
        resolve_projector(name, ParallelGeometry(512, pixel_mm, 805))  # a clear error for an unusable projector
        simulate_low_dose(hu[:1, :64, :64], pixel_mm, args.dose, workers=args.workers, projector=name)  # warm-up
        start = time.perf_counter()
        low = simulate_low_dose(hu, pixel_mm, args.dose, workers=args.workers, projector=name)
        seconds = time.perf_counter() - start
        sd = float((low - hu)[centre].std())
        if reference is None:
            reference = (args.slices / seconds, sd)
        device = "cuda" if name == "torch" and torch.cuda.is_available() else "cpu"
        rows.append((name, device, args.slices / seconds, args.slices / seconds / reference[0], sd / reference[1]))
    print(f"load average after: {os.getloadavg()}")
    print(f"| projector | device | slices/s | x {args.projectors[0]} | noise SD / {args.projectors[0]} |")
    print("|---|---|---|---|---|")
    for name, device, rate, ratio, sd_ratio in rows:
        print(f"| {name} | {device} | {rate:.3f} | {ratio:.1f} | {sd_ratio:.4f} |")


if __name__ == "__main__":
    main()
