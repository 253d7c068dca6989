"""Simulate a reduced-dose copy of a normal-dose CT series and write the pair in the AAPM-Mayo layout.

    python pipelines/simulate_low_dose.py --input SERIES_DIR_OR_NIFTI --output ROOT [--patient SIM001]
        [--dose 0.25 | --photons N] [--full-dose-photons 1e5] [--electronic-noise 10] [--seed 0]
        [--filter ramp] [--views N] [--geometry parallel|fan] [--projector auto|nufft|torch|skimage]
        [--batch-size N] [--roundtrip-slices 8] [--workers N] [--overwrite]

Writes ROOT/<patient>/full_<T>mm (the normal dose as a DICOM series) and ROOT/<patient>/quarter_<T>mm (the
simulated dose), T being the series' slice spacing (full_1mm and quarter_1mm for AAPM-Mayo-like 1 mm data),
plus ROOT/<patient>/simulation.json, then prints where it wrote and the projector's
round-trip error. ``--photons N`` gives the reduced dose as incident photons per ray (dose =
N / --full-dose-photons). The method is documented in ``ldct_clip.simulate``, the projectors and
geometries in ``ldct_clip.projectors``. Bad input (including an input inside the patient folder, or an
output root that cannot be created) prints one line on stderr and exits with status 2 before anything is
computed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ldct_clip.cli import run_cli
from ldct_clip.errors import InputError
from ldct_clip.simulate import (
    DEFAULT_BATCH,
    DEFAULT_ELECTRONIC_NOISE,
    DEFAULT_FILTER,
    DEFAULT_GEOMETRY,
    DEFAULT_PHOTONS,
    DEFAULT_PROJECTOR,
    FILTERS,
    GEOMETRIES,
    PROJECTORS,
    RECORD_NAME,
    ROUNDTRIP_SLICES,
    simulate_series,
)

DEFAULT_DOSE = 0.25
"""Dose fraction when neither --dose nor --photons is given (the AAPM-Mayo quarter dose)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="normal-dose DICOM series folder or .nii/.nii.gz file")
    parser.add_argument("--output", required=True, help="root folder of the Mayo layout to write into")
    parser.add_argument("--patient", default="SIM001", help="patient folder name (default SIM001)")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--dose", type=float, help=f"dose fraction in (0, 1] (default {DEFAULT_DOSE})")
    level.add_argument("--photons", type=float, help="reduced-dose incident photons per ray, instead of --dose")
    parser.add_argument("--full-dose-photons", type=float, default=DEFAULT_PHOTONS,
                        help=f"incident photons per ray of the normal dose (default {DEFAULT_PHOTONS:g})")
    parser.add_argument("--electronic-noise", type=float, default=DEFAULT_ELECTRONIC_NOISE,
                        help=f"electronic noise std in counts (default {DEFAULT_ELECTRONIC_NOISE:g})")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--filter", default=DEFAULT_FILTER, choices=FILTERS,
                        help=f"FBP filter of the added noise (default {DEFAULT_FILTER}: finest noise texture; "
                             "hann or hamming for noise closer to soft clinical kernels)")
    parser.add_argument("--views", type=int, help="projection views over 180 degrees for parallel beam (default: "
                                                  "angular Nyquist, about 1.57 per pixel across the field of view) "
                                                  "or over 360 degrees for fan beam (default 1152)")
    parser.add_argument("--geometry", default=DEFAULT_GEOMETRY, choices=GEOMETRIES,
                        help=f"scan geometry (default {DEFAULT_GEOMETRY}; fan: the Siemens SOMATOM Definition AS+ "
                             "of the AAPM-Mayo data, equiangular detector)")
    parser.add_argument("--projector", default=DEFAULT_PROJECTOR, choices=PROJECTORS,
                        help=f"projector (default {DEFAULT_PROJECTOR}: nufft for parallel beam on a CPU when finufft "
                             "is installed, else torch; skimage is the slow reference)")
    parser.add_argument("--batch-size", type=int,
                        help=f"slices per projector call (default 1 for skimage, {DEFAULT_BATCH} otherwise)")
    parser.add_argument("--roundtrip-slices", type=int, default=ROUNDTRIP_SLICES,
                        help=f"slices on which the projector's round-trip error is measured (default "
                             f"{ROUNDTRIP_SLICES}; each costs about as much as simulating a slice)")
    parser.add_argument("--workers", type=int, help="CPU cores to use: processes for skimage, threads for nufft "
                                                    "(default: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output folders of this patient")
    return parser.parse_args(argv)


def dose_from(args: argparse.Namespace) -> float:
    """Dose fraction from --dose, or --photons / --full-dose-photons."""
    if args.photons is None:
        return DEFAULT_DOSE if args.dose is None else args.dose
    if not 0 < args.photons <= args.full_dose_photons:
        raise InputError(
            f"--photons {args.photons:g}: must be in (0, --full-dose-photons {args.full_dose_photons:g}]; "
            "pass the reduced dose's photons per ray"
        )
    return args.photons / args.full_dose_photons


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate, write, report; returns the exit status."""
    args = parse_args(argv)
    patient_dir = simulate_series(
        args.input,
        args.output,
        patient=args.patient,
        dose=dose_from(args),
        photons=args.full_dose_photons,
        electronic_noise=args.electronic_noise,
        seed=args.seed,
        workers=args.workers,
        n_angles=args.views,
        filter_name=args.filter,
        roundtrip_slices=args.roundtrip_slices,
        overwrite=args.overwrite,
        progress=True,
        projector=args.projector,
        geometry=args.geometry,
        batch_size=args.batch_size,
    )
    record = json.loads((patient_dir / RECORD_NAME).read_text(encoding="utf-8"))
    print(f"normal dose: {patient_dir / record['full_dose_folder']}")
    print(f"simulated {record['dose'] * 100:g}% dose: {patient_dir / record['low_dose_folder']}")
    print(
        f"projector round-trip error: {record['roundtrip_rms_hu']:.1f} HU RMS inside the field of view "
        f"({record['views']} {record['geometry']}-beam views, {record['projector']} projector, {record['filter']} "
        "filter; only the noise is reconstructed, so it is not in the images)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
