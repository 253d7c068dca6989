"""Scan an AAPM-Mayo 2016 data folder once and write the slice manifest the datasets read.

    python pipelines/prepare_mayo.py /data/mayo --output manifest.csv [--workers 8]

Reads DICOM headers only (in parallel threads), pairs quarter/full-dose slices by position, writes the
manifest CSV (never inside the data folder) and prints slices per patient, dose and thickness with the
pairing mismatches. Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ldct_clip.cli import run_cli
from ldct_clip.data.mayo import DEFAULT_WORKERS, Manifest, ensure_outside_root, scan_mayo

SUMMARY_HEADER = ("patient", "thickness", "kernel", "full", "quarter", "pairs", "quarter w/o full", "full w/o quarter")


def format_summary(manifest: Manifest) -> str:
    """Per-patient table: slices per dose and thickness, pairs, and slices without a partner."""
    table = [SUMMARY_HEADER]
    for g in manifest.pairing_summary():
        table.append(
            (
                g.patient,
                f"{g.thickness_mm:g} mm",
                g.kernel or "-",
                str(g.paired + g.full_unpaired),
                str(g.paired + g.quarter_unpaired),
                str(g.paired),
                str(g.quarter_unpaired),
                str(g.full_unpaired),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(SUMMARY_HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.append(f"{len(manifest)} slices of {len(manifest.patients)} patients; {len(manifest.skipped)} files skipped")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="data folder, e.g. the AAPM-Mayo download with one folder per patient")
    parser.add_argument("--output", "-o", required=True, help="manifest CSV to write (outside the data folder)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="threads reading DICOM headers")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Scan, save, summarise; returns the exit status."""
    args = parse_args(argv)
    ensure_outside_root(args.output, args.root)
    manifest = scan_mayo(args.root, workers=args.workers)
    path = manifest.save(args.output)
    print(format_summary(manifest))
    print(f"manifest written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
