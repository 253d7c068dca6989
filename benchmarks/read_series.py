"""Reading speed of a 300-slice 512×512 CT series: ldct_clip's read_series vs MONAI's PydicomReader.

The series is pydicom-data's real CT slice (693_UNCR.dcm) copied 300 times with shifted positions and new
UIDs into a temporary folder, so both readers see the same files (warm in the page cache).

    python benchmarks/read_series.py [--slices 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ct_series import make_series
from monai.transforms import LoadImage

from ldct_clip.io import read_series


def best_times(readers: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, object]]:
    """Fastest of ``repeats`` runs per reader, in seconds, and its result.

    Runs are interleaved (A, B, A, B, ...) so that background load on a shared machine hits both alike.
    """
    best: dict[str, tuple[float, object]] = {}
    for _ in range(repeats):
        for name, read in readers.items():
            start = time.perf_counter()
            result = read()
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, result)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        make_series(folder, args.slices)
        monai_reader = LoadImage(reader="PydicomReader", image_only=True)
        readers: dict[str, Callable[[], object]] = {
            "ldct_clip read_series": lambda: read_series(folder).hu,
            'MONAI LoadImage("PydicomReader")': lambda: monai_reader(str(folder)),
        }
        print(f"{args.slices} slices 512x512, {os.cpu_count()} CPUs, best of {args.repeats} interleaved runs")
        print(f"{'reader':<36}{'seconds':>9}{'slices/s':>10}  output shape")
        for name, (seconds, result) in best_times(readers, args.repeats).items():
            shape = tuple(np.asarray(result).shape)
            print(f"{name:<36}{seconds:>9.2f}{args.slices / seconds:>10.0f}  {shape}")


if __name__ == "__main__":
    main()
