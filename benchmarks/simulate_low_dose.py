"""Seconds per 512×512 slice of the low-dose simulation at its default settings, on one CPU core.

The slice is pydicom-data's real CT slice (693_UNCR.dcm; about 810 views at the default ⌈π/2 · size⌉).
Prints the best of ``--repeats`` timings of :func:`ldct_clip.simulate.simulate_low_dose` (one radon and
one iradon per slice) and of :func:`ldct_clip.simulate.project_roundtrip_error`, with its value. A series
of Z slices takes about Z × the first time / workers.

    python benchmarks/simulate_low_dose.py [--dose 0.25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from pydicom.data import get_testdata_file

from ldct_clip.io import read_slice_header, read_slice_hu
from ldct_clip.simulate import (
    DEFAULT_ELECTRONIC_NOISE,
    DEFAULT_FILTER,
    DEFAULT_PHOTONS,
    project_roundtrip_error,
    simulate_low_dose,
)


def best_seconds(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Fastest of ``repeats`` runs in seconds, and its result."""
    best: tuple[float, object] | None = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
        if best is None or seconds < best[0]:
            best = (seconds, result)
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dose", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    file = get_testdata_file("693_UNCR.dcm")
    hu = read_slice_hu(file)
    pixel_mm = read_slice_header(file).pixel_spacing[1]
    print(f"slice {hu.shape[0]}x{hu.shape[1]}, {pixel_mm:g} mm pixels; {DEFAULT_FILTER} filter, "
          f"I0={DEFAULT_PHOTONS:g}, sigma_e={DEFAULT_ELECTRONIC_NOISE:g}")
    seconds, _ = best_seconds(lambda: simulate_low_dose(hu, pixel_mm, args.dose, workers=1), args.repeats)
    print(f"simulate_low_dose ({args.dose:g} dose): {seconds:.2f} s per slice")
    seconds, error = best_seconds(lambda: project_roundtrip_error(hu, workers=1), args.repeats)
    print(f"project_roundtrip_error: {seconds:.2f} s per slice, {error:.1f} HU RMS inside the field of view")


if __name__ == "__main__":
    main()
