"""Projection-domain low-dose CT simulation: a matched reduced-dose copy of a normal-dose scan.

Method (noise insertion in the projection domain, after Yu et al. 2012 and Zeng et al. 2015), per slice:

1. HU → linear attenuation μ = μ_water · (1 + HU/1000), clipped at 0 (nothing attenuates less than
   vacuum), with μ_water = :data:`MU_WATER_PER_MM` = 0.0192 /mm. The NIST X-ray mass attenuation
   coefficient tables (Hubbell & Seltzer, NIST Standard Reference Database 126) list water μ/ρ =
   0.2059 cm²/g at 60 keV and 0.1837 cm²/g at 80 keV; log-log interpolation gives 0.0194 /mm at 70 keV
   and 0.0192 /mm at 72 keV, about the effective energy of a filtered 120 kVp beam. Pixel size comes from
   the volume's in-plane spacing.
2. Forward projection (:mod:`ldct_clip.projectors`): by default parallel beam over ⌈π/2 · S⌉ views in
   [0°, 180°) (angular Nyquist sampling for an object S pixels across), one detector bin per pixel, the
   operator of scikit-image ``radon``; or (``geometry="fan"``) the fan beam of the Siemens SOMATOM
   Definition AS+ of the AAPM-Mayo data (1152 views over 360°, 736 equiangular channels). Line integrals
   p = ∫ μ dl in mm · 1/mm. ``projector`` picks the implementation: ``skimage`` (the reference, one slice
   at a time), ``nufft`` (the same operators in Fourier space, batched) or ``torch`` (ray-driven, batched,
   CPU or CUDA; the only one for fan beam).
3. Noise of the reduced dose (:func:`add_dose_reduction_noise`). The normal-dose scan already holds the
   noise of I0 incident photons per ray (``photons``) and of the detector electronics (σ_e counts,
   ``electronic_noise``). At dose fraction d the expected reading is λ = d · I0 · e^(−p); a reading of the
   normal-dose scan scaled to that level has variance d·λ + d²σ_e², a real reduced-dose reading
   λ + σ_e². Only the difference is added: a centred Poisson draw with mean (1 − d)·λ (photon noise; it
   keeps Poisson's skew better than a Gaussian when few photons arrive) plus Gaussian electronic noise of
   variance (1 − d²)·σ_e². In line integrals the added variance is, to first order,

       Var Δp = (1/d − 1) · e^p / I0 + (1/d² − 1) · σ_e² · e^(2p) / I0²,

   zero at d = 1. Readings below :data:`MIN_COUNTS` photon (or below λ when λ is smaller) are raised to
   that floor before the log: non-positive readings happen once electronic noise dominates a
   photon-starved ray, the log must stay finite, and a ray without added noise must stay unchanged.
4. −log back to line integrals, and filtered back-projection with the same projector (parallel beam:
   ``iradon``'s linear interpolation; fan beam: equiangular fan-beam FBP), :data:`DEFAULT_FILTER` ramp
   filter: it adds no smoothing of its own, so the added noise has the finest texture the pixel grid
   holds; ``filter_name`` offers skimage's smoother windows, e.g. ``"hann"``, for noise closer to soft
   clinical kernels).
5. The projector's round trip FBP(radon(x)) is not the identity (interpolation blur, edge ringing), so
   only the noise is reconstructed: low = original + 1000/μ_water · (FBP(noisy p) − FBP(noiseless p)),
   computed as FBP of the difference (FBP is linear). The low-dose image therefore keeps the original's
   resolution and mean, and dose 1.0 returns the original exactly. The round trip's own error is
   reported separately by :func:`project_roundtrip_error`; it never enters the output.

Consequences, checked by the tests: the added noise std in a flat region grows like √(1/d − 1) (with
negligible electronic noise), so the total low-dose noise √(σ_full² + σ_added²) grows like 1/√d; the
mean HU does not move (the −log bias is of order Var Δp / 2, far below 1 HU except in photon-starved rays).

Geometry: the slice is projected inside the smallest centred circle that holds every pixel above
:data:`AIR_CONTENT_HU` (at least the circle inscribed in the square of the slice's longer side, which is
the scanner's reconstruction circle for square CT slices); pixels outside that circle are air, are not
projected and are returned unchanged. Slices are independent: each gets its own random stream spawned
from ``seed`` and its slice index, so the noise drawn does not depend on ``workers`` or ``batch_size``
(the fast projectors' thread count only reorders floating-point sums: below 1e-3 HU).

``photons`` is an effective count per ray and view, to calibrate against a real scanner (e.g. until the
simulated quarter dose of an AAPM-Mayo patient shows the noise of its real quarter dose): the image
noise also depends on the number of views, the detector bin size and the filter. Defaults follow common
simulation practice: I0 = 1e5 and σ_e = 10 counts (the TIGRE toolbox's "clinical" example, Biguri et al.
2016); Ma et al. 2012 report an electronic-noise variance of about 10 (σ_e ≈ 3.2) for a clinical scanner.

References:
    L. Yu, M. Shiung, D. Jondal, C. H. McCollough, "Development and validation of a practical
    lower-dose-simulation tool for optimizing computed tomography scan protocols", J. Comput. Assist.
    Tomogr. 36(4):477-487, 2012.
    D. Zeng, J. Huang, Z. Bian, S. Niu, H. Zhang, Q. Feng, Z. Liang, J. Ma, "A simple low-dose x-ray CT
    simulation from high-dose scan", IEEE Trans. Nucl. Sci. 62(5):2226-2233, 2015.
    J. Ma et al., "Variance analysis of x-ray CT sinograms in the presence of electronic noise
    background", Med. Phys. 39(7):4051-4065, 2012.
    A. Biguri, M. Dosanjh, S. Hancock, M. Soleimani, "TIGRE: a MATLAB-GPU toolbox for CBCT image
    reconstruction", Biomed. Phys. Eng. Express 2(5):055010, 2016.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid
from tqdm import tqdm

from ldct_clip.atomic import move_into_place, partial_path
from ldct_clip.errors import InputError
from ldct_clip.io import CTVolume, read_volume, write_dicom_series
from ldct_clip.projectors import (
    DEFAULT_FILTER,
    DEFAULT_GEOMETRY,
    DEFAULT_PROJECTOR,
    FILTERS,
    GEOMETRIES,
    PROJECTORS,
    Geometry,
    Projector,
    get_projector,
    make_geometry,
    resolve_projector,
)
from ldct_clip.projectors.geometry import VIEWS_PER_PIXEL, default_views

__all__ = [
    "AIR_CONTENT_HU",
    "DEFAULT_BATCH",
    "DEFAULT_ELECTRONIC_NOISE",
    "DEFAULT_FILTER",
    "DEFAULT_GEOMETRY",
    "DEFAULT_PHOTONS",
    "DEFAULT_PROJECTOR",
    "FILTERS",
    "FULL_DOSE_FOLDER",
    "GEOMETRIES",
    "LOW_DOSE_FOLDER",
    "MIN_COUNTS",
    "MU_WATER_PER_MM",
    "PROJECTORS",
    "RECORD_NAME",
    "ROUNDTRIP_SLICES",
    "VIEWS_PER_PIXEL",
    "add_dose_reduction_noise",
    "ct_headers_for_volume",
    "default_views",
    "dose_folders",
    "project_roundtrip_error",
    "simulate_low_dose",
    "simulate_series",
]

MU_WATER_PER_MM = 0.0192
"""Linear attenuation of water (1/mm) at about 70 keV, from NIST SRD 126 (see the module docstring)."""
DEFAULT_PHOTONS = 1e5
"""Incident photons per ray and view of the normal-dose scan."""
DEFAULT_ELECTRONIC_NOISE = 10.0
"""Standard deviation of the detector's electronic noise, in photon counts."""
MIN_COUNTS = 1.0
"""Floor (photons) for a reduced-dose reading before the log; rays expecting fewer keep their expectation."""
AIR_CONTENT_HU = -500.0
"""Pixels above this HU must lie inside the projected circle; pixels at or below it may be left out as air."""
DEFAULT_BATCH = 8
"""Slices per call of the fast projectors (``nufft``, ``torch``): their sampling is computed once per batch."""
ROUNDTRIP_SLICES = 8
"""Evenly spaced slices on which :func:`simulate_series` measures the projector's round-trip error."""
FULL_DOSE_FOLDER = "full_1mm"
"""Folder of the normal-dose copy of a 1 mm series in the AAPM-Mayo layout ``<root>/<patient>/``."""
LOW_DOSE_FOLDER = "quarter_1mm"
"""Folder of the simulated reduced dose of a 1 mm series (the layout's "quarter" slot, whatever the dose)."""
RECORD_NAME = "simulation.json"
"""File in ``<root>/<patient>/`` recording the settings and the projector's round-trip error."""

_PATIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_T = TypeVar("_T")
_R = TypeVar("_R")


# --- projection-domain noise -----------------------------------------------------------------------------


def add_dose_reduction_noise(
    line_integrals: np.ndarray,
    dose: float,
    photons: float = DEFAULT_PHOTONS,
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Line integrals of a normal-dose scan with the extra noise of ``dose`` times fewer photons.

    Vectorised over the whole sinogram (all views and detector bins at once). Step 3 of the module
    docstring: the expected reduced-dose reading λ = dose · photons · e^(−p) gets a centred Poisson draw of
    mean (1 − dose)·λ plus Gaussian noise of variance (1 − dose²)·electronic_noise², is floored at
    min(λ, :data:`MIN_COUNTS`) and turned back into a line integral. Added variance ≈
    (1/dose − 1)·e^p/photons + (1/dose² − 1)·σ_e²·e^(2p)/photons²; ``dose`` = 1 returns ``p`` unchanged.

    Args:
        line_integrals: noiseless line integrals p (dimensionless, any shape, finite).
        dose: reduced dose as a fraction of the normal dose, in (0, 1].
        photons: incident photons per ray of the normal-dose scan.
        electronic_noise: electronic noise std in photon counts.
        rng: random generator (a fresh unseeded one when None).

    >>> p = np.full(100_000, 2.0)
    >>> noisy = add_dose_reduction_noise(p, 0.25, 1e4, 0.0, np.random.default_rng(0))
    >>> round(float(noisy.var() / ((1 / 0.25 - 1) * np.exp(2.0) / 1e4)), 1)
    1.0
    """
    _check_dose(dose)
    _check_photons(photons, electronic_noise)
    p = np.asarray(line_integrals, dtype=np.float64)
    if not np.isfinite(p).all():
        raise InputError("line_integrals: contains NaN or infinite values; pass finite line integrals")
    generator = rng if rng is not None else np.random.default_rng()
    expected = dose * photons * np.exp(-p)
    lost = (1.0 - dose) * expected
    counts = expected + (generator.poisson(lost) - lost)
    counts += generator.normal(0.0, electronic_noise * math.sqrt(1.0 - dose * dose), size=p.shape)
    counts = np.maximum(counts, np.minimum(expected, MIN_COUNTS))
    return p + np.log(expected / counts)


# --- where slices sit in the projected square -------------------------------------------------------------


@dataclass(frozen=True)
class _Placement:
    """Where Y × X slices sit in the size × size square that is projected."""

    size: int
    offset: tuple[int, int]
    shape: tuple[int, int]

    def embed(self, image: np.ndarray) -> np.ndarray:
        """``image`` (Y × X) centred in the size × size square, zero outside the projected circle."""
        square = np.zeros((self.size, self.size), dtype=np.float64)
        (oy, ox), (rows, columns) = self.offset, self.shape
        square[oy : oy + rows, ox : ox + columns] = image
        square[~self.circle()] = 0.0
        return square

    def crop(self, square: np.ndarray) -> np.ndarray:
        """The Y × X slice(s) back out of the square(s) (last two axes)."""
        (oy, ox), (rows, columns) = self.offset, self.shape
        return square[..., oy : oy + rows, ox : ox + columns]

    def circle(self) -> np.ndarray:
        """Mask of the projected circle in the square (scikit-image's reconstruction circle)."""
        centre = self.size // 2
        y, x = np.ogrid[: self.size, : self.size]
        return (y - centre) ** 2 + (x - centre) ** 2 <= centre**2

    def field_of_view(self) -> np.ndarray:
        """Slice pixels inside both the disc inscribed in the slice and the projected circle."""
        rows, columns = self.shape
        y, x = np.ogrid[:rows, :columns]
        inscribed = (y - (rows - 1) / 2) ** 2 + (x - (columns - 1) / 2) ** 2 <= (min(rows, columns) / 2) ** 2
        return inscribed & self.crop(self.circle())


def _placement(hu: np.ndarray) -> _Placement:
    """Smallest projected square whose circle holds every non-air pixel of every slice of ``hu`` (Z×Y×X)."""
    _, rows, columns = hu.shape
    size = max(rows, columns)
    y, x = np.nonzero((hu > AIR_CONTENT_HU).any(axis=0))

    def offset(side: int) -> tuple[int, int]:
        return (side - rows) // 2, (side - columns) // 2

    def outside(side: int, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        oy, ox = offset(side)
        centre = side // 2
        return (y + oy - centre) ** 2 + (x + ox - centre) ** 2 > centre**2

    beyond = outside(size, y, x)
    y, x = y[beyond], x[beyond]
    while y.size and outside(size, y, x).any():
        size += 1
    return _Placement(size, offset(size), (rows, columns))


def _attenuation(hu: np.ndarray) -> np.ndarray:
    """μ (1/mm) of HU values, clipped at 0."""
    return np.maximum(MU_WATER_PER_MM * (1.0 + hu.astype(np.float64) / 1000.0), 0.0)


@dataclass(frozen=True)
class _Setup:
    """Everything but the slices that a batch of work needs (picklable, for process pools)."""

    placement: _Placement
    geometry: Geometry
    projector: str
    filter_name: str
    threads: int

    def build(self) -> Projector:
        return _projector(self.projector, self.geometry, self.filter_name, self.threads)


@lru_cache(maxsize=4)
def _projector(name: str, geometry: Geometry, filter_name: str, threads: int) -> Projector:
    """One projector per setting and process: the fast ones precompute their sampling."""
    return get_projector(name, geometry, filter_name, threads)


def _setup(volume: np.ndarray, spacing_mm: float, geometry: str, n_angles: int | None, projector: str,
           filter_name: str, threads: int) -> _Setup:
    placement = _placement(volume)
    scan = make_geometry(geometry, placement.size, spacing_mm, _check_angles(n_angles))
    return _Setup(placement, scan, resolve_projector(projector, scan), _check_filter(filter_name), threads)


# --- batches of slices (module level, so process pools can pickle the work) ---------------------------------


@dataclass(frozen=True, eq=False)
class _NoiseTask:
    hu: np.ndarray
    dose: float
    photons: float
    electronic_noise: float
    seeds: tuple[np.random.SeedSequence, ...]
    setup: _Setup


def _noise_hu(task: _NoiseTask) -> np.ndarray:
    """HU noise of a batch of slices: 1000/μ_water · FBP(noisy p − p), each slice with its own stream."""
    s = task.setup
    projector = s.build()
    mu = np.stack([s.placement.embed(_attenuation(image)) for image in task.hu])
    p = projector.forward(mu)
    difference = np.stack([
        add_dose_reduction_noise(sinogram, task.dose, task.photons, task.electronic_noise,
                                 np.random.default_rng(seed)) - sinogram
        for sinogram, seed in zip(p, task.seeds)
    ])
    return (1000.0 / MU_WATER_PER_MM * s.placement.crop(projector.fbp(difference))).astype(np.float32)


def _roundtrip_squares(task: tuple[np.ndarray, _Setup]) -> tuple[float, int]:
    """Sum of squared HU round-trip errors inside the field of view of a batch of slices, and the pixel count."""
    hu, s = task
    projector = s.build()
    mu = np.stack([s.placement.embed(_attenuation(image)) for image in hu])
    error_hu = 1000.0 / MU_WATER_PER_MM * s.placement.crop(projector.fbp(projector.forward(mu)) - mu)
    fov = s.placement.field_of_view()
    return float(np.sum(error_hu[:, fov] ** 2)), int(fov.sum()) * len(hu)


def _map(function: Callable[[_T], _R], tasks: Sequence[_T], sizes: Sequence[int], processes: int, progress: bool,
         what: str) -> list[_R]:
    """``function`` over ``tasks`` (batches of ``sizes`` slices) in order, here or in ``processes`` processes."""
    results: list[_R] = []
    with tqdm(total=sum(sizes), desc=what, unit="slice", disable=not progress) as bar:
        if processes == 1 or len(tasks) == 1:
            for task, size in zip(tasks, sizes):
                results.append(function(task))
                bar.update(size)
            return results
        with ProcessPoolExecutor(max_workers=min(processes, len(tasks))) as pool:
            for result, size in zip(pool.map(function, tasks), sizes):
                results.append(result)
                bar.update(size)
    return results


def _batches(count: int, batch_size: int) -> list[slice]:
    return [slice(start, min(count, start + batch_size)) for start in range(0, count, batch_size)]


def _plan(setup: _Setup, workers: int, batch_size: int | None) -> tuple[int, int]:
    """(batch size, processes): scikit-image works slice by slice in ``workers`` processes; the fast projectors
    take batches of :data:`DEFAULT_BATCH` in this process, with ``workers`` threads."""
    if setup.projector == "skimage":
        return batch_size or 1, workers
    return batch_size or DEFAULT_BATCH, 1


# --- public API on arrays -----------------------------------------------------------------------------------


def simulate_low_dose(
    hu: np.ndarray,
    spacing_mm: float,
    dose: float,
    photons: float = DEFAULT_PHOTONS,
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
    n_angles: int | None = None,
    filter_name: str = DEFAULT_FILTER,
    projector: str = DEFAULT_PROJECTOR,
    geometry: str = DEFAULT_GEOMETRY,
    batch_size: int | None = None,
) -> np.ndarray:
    """Reduced-dose version (float32 HU, same shape) of a normal-dose slice or volume; see the module docstring.

    Only the extra noise of the reduced dose is added, so ``dose`` = 1 returns the input unchanged and
    the added noise std grows like √(1/dose − 1). Reproducible: the same ``seed`` gives the same noise draws
    for any ``workers`` and ``batch_size`` (each slice has its own stream), and the same output up to
    floating-point rounding of the projector (bitwise with ``skimage``).

    Args:
        hu: HU values, one slice (Y × X) or a volume (Z × Y × X) of axial slices.
        spacing_mm: in-plane pixel size in mm (square pixels).
        dose: reduced dose as a fraction of the normal dose, in (0, 1] (0.25 = quarter dose).
        photons: incident photons per ray and view of the normal-dose scan (typically 1e5 to 1e6; lower
            values simulate noisier normal-dose scans).
        electronic_noise: std of the detector's electronic noise in photon counts (typically 3 to 10).
        seed: seed of the noise; slice ``i`` uses the ``i``-th stream spawned from it.
        workers: CPU cores to use (None: all): processes for ``skimage``, threads for ``nufft``.
        progress: show a tqdm progress bar over slices.
        n_angles: views over 180° (parallel; None: :func:`default_views` of the projected square's side) or
            over 360° (fan; None: the scanner's 1152).
        filter_name: FBP filter, one of :data:`FILTERS`.
        projector: one of :data:`~ldct_clip.projectors.PROJECTORS` (``skimage`` is the reference).
        geometry: ``parallel`` or ``fan`` (:data:`~ldct_clip.projectors.GEOMETRIES`).
        batch_size: slices per projector call (None: 1 for ``skimage``, :data:`DEFAULT_BATCH` otherwise).

    Raises:
        InputError: ``hu`` not 2-D/3-D or not finite, or an argument out of range.

    >>> phantom = np.full((32, 32), -1000.0, np.float32)
    >>> phantom[8:24, 8:24] = 0.0
    >>> low = simulate_low_dose(phantom, 1.0, dose=0.25, workers=1)
    >>> low.shape, bool(np.array_equal(simulate_low_dose(phantom, 1.0, dose=1.0), phantom))
    ((32, 32), True)
    """
    volume = _check_hu(hu)
    _check_positive("spacing_mm", spacing_mm)
    _check_dose(dose)
    _check_photons(photons, electronic_noise)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed={seed!r}: must be an integer >= 0")
    pool_size = _check_workers(workers)
    setup = _setup(volume, float(spacing_mm), geometry, n_angles, projector, filter_name, pool_size)
    size, processes = _plan(setup, pool_size, _check_batch(batch_size))
    if dose == 1.0:  # the added noise is exactly zero: skip the projections
        return np.array(hu, dtype=np.float32)
    seeds = np.random.SeedSequence(int(seed)).spawn(volume.shape[0])
    parts = _batches(volume.shape[0], size)
    tasks = [_NoiseTask(volume[b], float(dose), float(photons), float(electronic_noise), tuple(seeds[b]), setup)
             for b in parts]
    noise = np.concatenate(_map(_noise_hu, tasks, [len(seeds[b]) for b in parts], processes, progress,
                                f"simulating {dose * 100:g}% dose"))
    return (volume + noise).reshape(np.shape(hu))


def project_roundtrip_error(
    hu: np.ndarray,
    n_angles: int | None = None,
    filter_name: str = DEFAULT_FILTER,
    workers: int | None = None,
    progress: bool = False,
    projector: str = DEFAULT_PROJECTOR,
    geometry: str = DEFAULT_GEOMETRY,
    spacing_mm: float = 1.0,
    batch_size: int | None = None,
) -> float:
    """RMS HU of FBP(forward(x)) − x inside the field of view, with the projector :func:`simulate_low_dose` uses.

    x is the attenuation of ``hu`` (clipped at 0 as for the simulation); the field of view is the disc
    inscribed in the slice. The simulation never adds this error to its output (it reconstructs only the
    noise); the number says how faithful the projector pair is for this image, i.e. how far from the
    original a low-dose image would be if it were reconstructed in full. ``spacing_mm`` matters for the fan
    geometry only (parallel beam is scale-free).

    >>> phantom = np.full((32, 32), -1000.0, np.float32)
    >>> phantom[8:24, 8:24] = 0.0
    >>> 0.0 < project_roundtrip_error(phantom, workers=1) < 100.0
    True
    """
    volume = _check_hu(hu)
    _check_positive("spacing_mm", spacing_mm)
    pool_size = _check_workers(workers)
    setup = _setup(volume, float(spacing_mm), geometry, n_angles, projector, filter_name, pool_size)
    return _roundtrip_rms(volume, setup, pool_size, _check_batch(batch_size), progress)


def _roundtrip_rms(volume: np.ndarray, setup: _Setup, workers: int, batch_size: int | None, progress: bool) -> float:
    size, processes = _plan(setup, workers, batch_size)
    parts = _batches(volume.shape[0], size)
    results = _map(_roundtrip_squares, [(volume[b], setup) for b in parts], [b.stop - b.start for b in parts],
                   processes, progress, "projector round trip")
    return math.sqrt(sum(total for total, _ in results) / max(1, sum(count for _, count in results)))


# --- DICOM headers for volumes without them -------------------------------------------------------------------


def ct_headers_for_volume(volume: CTVolume, patient_id: str, series_description: str = "") -> list[Dataset]:
    """Minimal CT Image Storage headers (one per slice, no pixel data) describing ``volume``'s geometry.

    For writing a volume that did not come from DICOM (e.g. NIfTI) with
    :func:`~ldct_clip.io.write_dicom_series`. Slice ``z`` sits at origin + z · spacing_z · normal, with
    ImageOrientationPatient from the volume's direction rows, PixelSpacing (row, column) = (spacing_y,
    spacing_x) and SliceThickness spacing_z. Pixels are signed 16 bit with RescaleSlope 1 and
    RescaleIntercept −1024 (HU range −33792 to 31743, in steps of 1 HU). All slices share one new
    StudyInstanceUID and FrameOfReferenceUID; the Type 2 tags of the patient, study, series, equipment and
    CT image modules are present (empty where unknown); SOP Instance and Series UIDs are left to the writer.

    >>> v = CTVolume(np.zeros((2, 4, 4), np.float32), (2.0, 0.5, 0.5), (0, 0, 10), np.eye(3), None, "x.nii")
    >>> [h.ImagePositionPatient for h in ct_headers_for_volume(v, "SIM001")]
    [[0.0, 0.0, 10.0], [0.0, 0.0, 12.0]]
    """
    spacing_z, spacing_y, spacing_x = volume.spacing
    rows, columns = volume.shape[1:]
    study, frame = generate_uid(), generate_uid()
    headers = []
    for z in range(volume.shape[0]):
        position = np.asarray(volume.origin) + z * spacing_z * volume.direction[2]
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientName = patient_id
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyInstanceUID = study
        ds.StudyDate = ""
        ds.StudyTime = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = ""
        ds.AccessionNumber = ""
        ds.SeriesNumber = 1
        ds.SeriesDescription = series_description
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = ""
        ds.InstanceNumber = z + 1
        ds.AcquisitionNumber = 1
        ds.KVP = ""
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*volume.direction[0], *volume.direction[1])]
        ds.PixelSpacing = [spacing_y, spacing_x]
        ds.SliceThickness = spacing_z
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
        ds.RescaleType = "HU"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        headers.append(ds)
    return headers


# --- series pipeline -----------------------------------------------------------------------------------------


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


# --- validation ------------------------------------------------------------------------------------------------


def _check_hu(hu: np.ndarray) -> np.ndarray:
    """``hu`` as a float32 Z × Y × X array; InputError unless 2-D/3-D, non-empty and finite."""
    values = np.asarray(hu)
    if values.ndim not in (2, 3) or values.size == 0 or not np.issubdtype(values.dtype, np.number):
        raise InputError(f"hu: array of shape {values.shape} ({values.dtype}); pass HU as Y x X or Z x Y x X numbers")
    if not np.isfinite(values).all():
        raise InputError("hu: contains NaN or infinite values; fix or mask them before simulating")
    return values.reshape((-1, *values.shape[-2:])).astype(np.float32, copy=False)


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name}={value!r}: must be a positive finite number")


def _check_dose(dose: float) -> None:
    if not (isinstance(dose, (int, float, np.number)) and math.isfinite(dose) and 0 < dose <= 1):
        raise InputError(f"dose={dose!r}: must be a fraction of the normal dose in (0, 1], e.g. 0.25 for quarter dose")


def _check_photons(photons: float, electronic_noise: float) -> None:
    _check_positive("photons", photons)
    if not (isinstance(electronic_noise, (int, float, np.number)) and math.isfinite(electronic_noise)
            and electronic_noise >= 0):
        raise InputError(f"electronic_noise={electronic_noise!r}: must be a finite number of counts >= 0")


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return os.cpu_count() or 1
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InputError(f"workers={workers!r}: must be an integer >= 1")
    return workers


def _check_angles(n_angles: int | None) -> int | None:
    if n_angles is not None and (not isinstance(n_angles, int) or isinstance(n_angles, bool) or n_angles < 1):
        raise InputError(f"n_angles={n_angles!r}: must be an integer >= 1 (or None for the default)")
    return n_angles


def _check_batch(batch_size: int | None) -> int | None:
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise InputError(f"batch_size={batch_size!r}: must be an integer >= 1 (or None for the default)")
    return batch_size


def _check_filter(filter_name: str) -> str:
    if filter_name not in FILTERS:
        raise InputError(f"filter_name={filter_name!r}: unknown FBP filter; use one of {', '.join(FILTERS)}")
    return filter_name


def _check_patient(patient: str) -> None:
    if not (isinstance(patient, str) and _PATIENT_NAME.fullmatch(patient)):
        raise InputError(
            f"patient={patient!r}: not a usable folder name; use up to 64 letters, digits, '.', '-' or '_' "
            "starting with a letter or digit (e.g. SIM001)"
        )
