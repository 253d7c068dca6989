"""The series pipeline: a CT series in, the normal and simulated reduced dose out in the AAPM-Mayo layout."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ldct_clip.atomic import move_into_place, partial_path
from ldct_clip.errors import InputError
from ldct_clip.io import CTVolume, read_volume, write_dicom_series
from ldct_clip.projectors import DEFAULT_FILTER, DEFAULT_GEOMETRY, DEFAULT_PROJECTOR
from ldct_clip.simulate.checks import (
    _check_batch,
    _check_dose,
    _check_hu,
    _check_patient,
    _check_photons,
    _check_workers,
)
from ldct_clip.simulate.headers import ct_headers_for_volume
from ldct_clip.simulate.noise import DEFAULT_ELECTRONIC_NOISE, DEFAULT_PHOTONS, MU_WATER_PER_MM
from ldct_clip.simulate.volume import _roundtrip_rms, _setup, simulate_low_dose

__all__ = [
    "FULL_DOSE_FOLDER",
    "LOW_DOSE_FOLDER",
    "RECORD_NAME",
    "ROUNDTRIP_SLICES",
    "dose_folders",
    "simulate_series",
]

ROUNDTRIP_SLICES = 8
"""Evenly spaced slices on which :func:`simulate_series` measures the projector's round-trip error."""
FULL_DOSE_FOLDER = "full_1mm"
"""Folder of the normal-dose copy of a 1 mm series in the AAPM-Mayo layout ``<root>/<patient>/``."""
LOW_DOSE_FOLDER = "quarter_1mm"
"""Folder of the simulated reduced dose of a 1 mm series (the layout's "quarter" slot, whatever the dose)."""
RECORD_NAME = "simulation.json"
"""File in ``<root>/<patient>/`` recording the settings and the projector's round-trip error."""

def simulate_series(
    input_path: str | os.PathLike[str],
    output_root: str | os.PathLike[str],
    patient: str = "SIM001",
    dose: float = 0.25,
    photons: float = DEFAULT_PHOTONS,
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE,
    seed: int = 0,
    workers: int | None = None,
    n_angles: int | None = None,
    filter_name: str = DEFAULT_FILTER,
    roundtrip_slices: int = ROUNDTRIP_SLICES,
    overwrite: bool = False,
    progress: bool = False,
    projector: str = DEFAULT_PROJECTOR,
    geometry: str = DEFAULT_GEOMETRY,
    batch_size: int | None = None,
) -> Path:
    """Simulate a reduced-dose copy of a CT series and write the pair in the AAPM-Mayo layout.

    Reads a DICOM series folder or a NIfTI file and writes ``<output_root>/<patient>/``:

    - ``full_<spacing>mm`` (:func:`dose_folders`; :data:`FULL_DOSE_FOLDER` for 1 mm): the normal dose
      rewritten as a DICOM series (new series and SOP instance UIDs, same geometry, SeriesDescription
      "<original> [normal dose]");
    - ``quarter_<spacing>mm`` (:data:`LOW_DOSE_FOLDER` for 1 mm, whatever the dose):
      :func:`simulate_low_dose` of it, SeriesDescription
      "[simulated 25% dose (ldct_clip, Poisson+Gaussian, I0=1e5)]" and a DerivationDescription with
      every setting and the projector's round-trip error;
    - :data:`RECORD_NAME`: the same settings and the round-trip error (RMS HU inside the field of view
      over up to ``roundtrip_slices`` evenly spaced slices, :data:`ROUNDTRIP_SLICES` by default; each costs
      about as much as simulating a slice) as JSON.

    DICOM input keeps its headers (geometry, slope/intercept, acquisition tags); NIfTI input gets
    :func:`ct_headers_for_volume`. Both series carry PatientID and PatientName ``patient``, because the Mayo
    scan (:func:`ldct_clip.data.mayo.scan_mayo`) files a folder that is not named ``L###`` under its
    PatientID, and share a new StudyInstanceUID and FrameOfReferenceUID: two simulations from one source
    then stay apart, and no study UID ever appears under two patient IDs (which a PACS would reject).
    Slices of the two series share positions, so the scan pairs them. Stored values are rounded and
    clipped to the source's stored range like any DICOM output (with unsigned storage and intercept
    −1024, noise in air below −1024 HU is clipped, as on a scanner). Everything is written into a hidden
    staging folder in ``output_root`` and renamed into place once complete: a new patient folder in one
    rename, into an existing one folder by folder. The input is only read, and may not lie inside the
    patient folder (which ``overwrite`` may replace). The output root is created (and the staging folder
    made in it) before anything is computed, so an unwritable output fails at once. ``projector``,
    ``geometry`` and ``batch_size`` are those of :func:`simulate_low_dose` and are recorded.

    Returns:
        The patient folder ``<output_root>/<patient>``.

    Raises:
        InputError: unreadable input, non-square pixels, a bad argument, an output inside the input
            folder, an input inside the patient folder, an output root that cannot be created or written,
            or existing output folders without ``overwrite``.
    """
    _check_dose(dose)
    _check_photons(photons, electronic_noise)
    _check_patient(patient)
    if isinstance(roundtrip_slices, bool) or not isinstance(roundtrip_slices, int) or roundtrip_slices < 1:
        raise InputError(f"roundtrip_slices={roundtrip_slices!r}: must be a positive integer")
    source = Path(input_path)
    root = Path(output_root)
    patient_dir = root / patient
    if root.exists() and not root.is_dir():
        raise InputError(f"{output_root}: exists and is not a folder; pass a folder for the Mayo layout")
    if source.is_dir() and root.resolve().is_relative_to(source.resolve()):
        raise InputError(f"{output_root}: inside the input folder {source}; write the simulation elsewhere")
    if source.resolve().is_relative_to(patient_dir.resolve()):
        raise InputError(
            f"{input_path}: inside the patient folder {patient_dir} that this run writes (and --overwrite may "
            "replace); choose another output root or --patient, or move the input out of it"
        )
    volume = read_volume(source)
    full_folder, low_folder = dose_folders(volume.spacing[0])
    targets = [patient_dir / full_folder, patient_dir / low_folder, patient_dir / RECORD_NAME]
    for target in targets:
        if target.exists() and not overwrite:
            raise InputError(
                f"{target}: already exists; choose another output root or patient, or pass overwrite=True "
                "(--overwrite)"
            )
    spacing_y, spacing_x = volume.spacing[1:]
    if not math.isclose(spacing_y, spacing_x, rel_tol=1e-3):
        raise InputError(
            f"{source}: pixels are {spacing_y:g} x {spacing_x:g} mm, not square; resample the slices in-plane first"
        )
    _check_hu(volume.hu)

    pool_size = _check_workers(workers)
    setup = _setup(volume.hu, spacing_x, geometry, n_angles, projector, filter_name, pool_size)
    batch = _check_batch(batch_size)
    scan = setup.geometry
    stage, created = _stage_in(root, patient)  # fails now, not after the whole series is computed
    try:
        sample = np.unique(np.linspace(0, volume.shape[0] - 1, roundtrip_slices).round().astype(int))
        roundtrip = _roundtrip_rms(volume.hu[sample], setup, pool_size, batch, progress)
        low = simulate_low_dose(volume.hu, spacing_x, dose, photons, electronic_noise, seed, pool_size, progress,
                                n_angles=scan.views, filter_name=filter_name, projector=setup.projector,
                                geometry=geometry, batch_size=batch)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in created:  # deepest first; only the empty folders this run made
            _remove_if_empty(folder)
        raise

    settings = {
        "source": str(source.resolve()),
        "dose": float(dose),
        "photons": float(photons),
        "electronic_noise": float(electronic_noise),
        "seed": int(seed),
        "views": scan.views,
        "geometry": scan.name,
        "projector": setup.projector,
        "projected_square": scan.size,
        "filter": filter_name,
        "mu_water_per_mm": MU_WATER_PER_MM,
        "pixel_mm": spacing_x,
        "roundtrip_rms_hu": round(roundtrip, 3),
        "roundtrip_slices": [int(z) for z in sample],
        "full_dose_folder": full_folder,
        "low_dose_folder": low_folder,
    }
    description = f"simulated {dose * 100:g}% dose (ldct_clip, Poisson+Gaussian, I0={_compact(photons)})"
    derivation = (
        f"{description}: projection-domain noise insertion (Yu 2012, Zeng 2015) from the normal dose; "
        f"electronic noise {electronic_noise:g} counts, seed {seed}, {scan.views} {scan.name}-beam views "
        f"({setup.projector} projector), {filter_name} FBP of the noise only; projector round trip "
        f"{roundtrip:.1f} HU RMS (not in the image)"
    )
    headers = volume.slice_headers or ct_headers_for_volume(volume, patient)
    study, frame = generate_uid(), generate_uid()  # one new study per simulated patient, shared by both doses
    full = _with_patient(volume, headers, patient, study, frame, keep_description=True)
    reduced = _with_patient(volume, headers, patient, study, frame, keep_description=False)

    try:
        write_dicom_series(full, volume.hu, stage / full_folder, description="normal dose",
                           derivation="Normal-dose source rewritten unchanged by ldct_clip.simulate (new UIDs)")
        write_dicom_series(reduced, low, stage / low_folder, description=description, derivation=derivation)
        (stage / RECORD_NAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        if not patient_dir.exists():  # the usual case: the whole patient appears in one rename
            stage.rename(patient_dir)
        else:  # other folders of this patient stay; ours are replaced one by one
            for target in targets:
                move_into_place(stage / target.name, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return patient_dir


def _stage_in(root: Path, patient: str) -> tuple[Path, list[Path]]:
    """Create ``root`` (and missing parents) and a hidden staging folder for ``patient`` in it.

    Returns the staging folder and the folders created for ``root``, deepest first. Any OS error (a file
    in the path, a read-only or virtual file system, no permission) is an InputError naming ``root``.
    """
    missing = [folder for folder in (root, *root.parents) if not folder.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        stage = partial_path(root / patient)
        stage.mkdir()
    except OSError as err:
        for folder in missing:
            _remove_if_empty(folder)
        reason = err.strerror or type(err).__name__
        raise InputError(f"{root}: cannot create the output folder there ({reason}); pass a writable folder") from None
    return stage, missing


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def dose_folders(slice_spacing_mm: float) -> tuple[str, str]:
    """``(full, quarter)`` folder names for a series ``slice_spacing_mm`` apart, as the Mayo scan reads them.

    The scan takes the slice thickness from the folder name, so a 5 mm series must not be filed as 1 mm.

    >>> dose_folders(1.0), dose_folders(0.625)
    (('full_1mm', 'quarter_1mm'), ('full_0.62mm', 'quarter_0.62mm'))
    """
    thickness = f"{round(slice_spacing_mm, 2):g}mm"
    return f"full_{thickness}", f"quarter_{thickness}"


def _with_patient(volume: CTVolume, headers: list[Dataset], patient: str, study: str, frame: str,
                  keep_description: bool) -> CTVolume:
    """``volume`` with copies of ``headers`` filed under patient ``patient`` in study ``study`` and frame of
    reference ``frame``, with or without the source's SeriesDescription."""
    copies = []
    for header in headers:
        ds = copy.deepcopy(header)
        ds.PatientID = patient
        ds.PatientName = patient
        ds.StudyInstanceUID = study
        ds.FrameOfReferenceUID = frame
        if not keep_description:
            ds.SeriesDescription = ""
        copies.append(ds)
    return CTVolume(volume.hu, volume.spacing, volume.origin, volume.direction, copies, volume.source,
                    positions=volume.positions)


def _compact(value: float) -> str:
    """Short number: 100000 -> '1e5', 150000 -> '1.5e5', 2000 -> '2e3'."""
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa
