"""Argument checks of the simulation: each raises a one-line InputError naming the argument."""

from __future__ import annotations

import math
import os
import re

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.projectors import FILTERS

_PATIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
