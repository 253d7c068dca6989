"""The simulation on arrays: :func:`simulate_low_dose` of a slice or volume in HU, and the projector's own
round-trip error (:func:`project_roundtrip_error`), batched over slices in threads or processes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from ldct_clip.errors import InputError
from ldct_clip.projectors import (
    DEFAULT_FILTER,
    DEFAULT_GEOMETRY,
    DEFAULT_PROJECTOR,
    Geometry,
    Projector,
    get_projector,
    make_geometry,
    resolve_projector,
)
from ldct_clip.simulate.checks import (
    _check_angles,
    _check_batch,
    _check_dose,
    _check_filter,
    _check_hu,
    _check_photons,
    _check_positive,
    _check_workers,
)
from ldct_clip.simulate.noise import (
    DEFAULT_ELECTRONIC_NOISE,
    DEFAULT_PHOTONS,
    MU_WATER_PER_MM,
    add_dose_reduction_noise,
)
from ldct_clip.simulate.placement import _Placement, _placement

__all__ = ["DEFAULT_BATCH", "project_roundtrip_error", "simulate_low_dose"]

DEFAULT_BATCH = 8
"""Slices per call of the fast projectors (``nufft``, ``torch``): their sampling is computed once per batch."""

_T = TypeVar("_T")
_R = TypeVar("_R")


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
    """Reduced-dose version (float32 HU, same shape) of a normal-dose slice or volume (:mod:`ldct_clip.simulate`).

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
