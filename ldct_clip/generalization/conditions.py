"""The benchmark's conditions: dose × FBP filter × slice thickness, plus the real low dose where it exists.

A simulated condition is a reduced dose (fraction of the normal dose), the FBP filter of the noise the
simulation adds (:data:`ldct_clip.projectors.FILTERS`: ``ramp`` is the sharpest, ``hann`` a smooth kernel)
and a slice thickness. A real condition is the scanner's own low-dose series (the AAPM-Mayo quarter dose),
reconstructed with the scanner's kernel, at a thickness.

Thickness: the series' thin slices (1 mm for AAPM-Mayo) are averaged in non-overlapping groups of
``thickness / slice spacing`` adjacent slices (:func:`average_slabs`), for the normal dose and the low dose
alike, and the low dose of a thick slab is the average of independently simulated thin low-dose slices.
That is what a thick reconstruction does: its noise is the mean of n independent thin-slice noise fields,
√n times lower, while the full-dose reference is averaged the same way. Simulating on the averaged normal
dose instead would need the noise scaled by 1/√n by hand and would misplace the partial-volume blur.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.projectors import FILTERS

__all__ = [
    "DEFAULT_DOSES",
    "DEFAULT_FILTERS",
    "DEFAULT_THICKNESSES",
    "REAL_DOSE",
    "SPACING_TOLERANCE",
    "Condition",
    "average_slabs",
    "build_conditions",
    "check_doses",
    "check_filters",
    "check_thicknesses",
    "slab_size",
]

DEFAULT_DOSES: tuple[float, ...] = (0.5, 0.25, 0.1, 0.05)
"""Dose fractions of the issue: 50, 25, 10 and 5 % of the normal dose."""
DEFAULT_FILTERS: tuple[str, ...] = ("ramp", "hann")
"""A sharp and a smooth FBP filter for the added noise."""
DEFAULT_THICKNESSES: tuple[float, ...] = (1.0, 3.0)
"""Slice thicknesses in mm (3 mm made from 1 mm slices)."""
REAL_DOSE = 0.25
"""Dose fraction of the AAPM-Mayo quarter-dose series (the real condition)."""
SPACING_TOLERANCE = 0.1
"""How far (fraction of one slice) a thickness may lie from a whole number of slice spacings."""


@dataclass(frozen=True)
class Condition:
    """One row group of the benchmark.

    Attributes:
        dose: fraction of the normal dose.
        filter_name: FBP filter of the simulated noise; None for real data (the scanner's own kernel).
        thickness_mm: slice thickness of the evaluated slices.
    """

    dose: float
    filter_name: str | None
    thickness_mm: float

    @property
    def real(self) -> bool:
        """Whether this is the scanner's own low-dose series rather than a simulation."""
        return self.filter_name is None

    @property
    def key(self) -> str:
        """Folder-safe name, e.g. ``dose10_hann_3mm`` or ``real_dose25_1mm``.

        >>> Condition(0.125, "ramp", 0.625).key, Condition(0.25, None, 1.0).key
        ('dose12p5_ramp_0p625mm', 'real_dose25_1mm')
        """
        dose, thickness = _compact(self.dose * 100), _compact(self.thickness_mm)
        return f"real_dose{dose}_{thickness}mm" if self.real else f"dose{dose}_{self.filter_name}_{thickness}mm"

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``simulated 10% dose, hann, 3 mm``.

        >>> Condition(0.25, None, 1.0).label
        'real quarter dose (scanner kernel), 1 mm'
        """
        if self.real:
            return f"real quarter dose (scanner kernel), {self.thickness_mm:g} mm"
        return f"simulated {self.dose * 100:g}% dose, {self.filter_name}, {self.thickness_mm:g} mm"

    @property
    def kernel(self) -> str:
        """The filter, or ``scanner`` for real data (a column of the table)."""
        return self.filter_name or "scanner"


def _compact(value: float) -> str:
    return f"{value:g}".replace(".", "p")


def check_doses(doses: Sequence[float]) -> tuple[float, ...]:
    """Distinct dose fractions in (0, 1), highest first; InputError naming ``--doses`` otherwise.

    The normal dose itself (1) is refused: its "low dose" would equal the reference.

    >>> check_doses([0.1, 0.5, 0.1])
    (0.5, 0.1)
    """
    if not doses:
        raise InputError("--doses: give at least one dose fraction, e.g. --doses 0.5 0.25 0.1")
    for dose in doses:
        if not (isinstance(dose, (int, float)) and math.isfinite(dose) and 0 < dose < 1):
            raise InputError(f"--doses {dose!r}: must be a fraction of the normal dose in (0, 1), e.g. 0.25 for "
                             "quarter dose")
    return tuple(sorted(set(float(d) for d in doses), reverse=True))


def check_filters(filters: Sequence[str]) -> tuple[str, ...]:
    """Distinct FBP filter names of :data:`~ldct_clip.projectors.FILTERS`, in the order given."""
    if not filters:
        raise InputError(f"--filters: give at least one of {', '.join(FILTERS)}")
    unknown = [name for name in filters if name not in FILTERS]
    if unknown:
        raise InputError(f"--filters {unknown[0]!r}: unknown FBP filter; use one of {', '.join(FILTERS)}")
    return tuple(dict.fromkeys(filters))


def check_thicknesses(thicknesses: Sequence[float]) -> tuple[float, ...]:
    """Distinct positive thicknesses in mm, thinnest first."""
    if not thicknesses:
        raise InputError("--thickness: give at least one slice thickness in mm, e.g. --thickness 1 3")
    for value in thicknesses:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError(f"--thickness {value!r}: must be a positive slice thickness in mm")
    return tuple(sorted(set(float(t) for t in thicknesses)))


def slab_size(thickness_mm: float, spacing_mm: float, source: str) -> int:
    """How many adjacent slices ``spacing_mm`` apart make one slab of ``thickness_mm``.

    >>> slab_size(3.0, 1.0, "scan"), slab_size(1.0, 1.0, "scan")
    (3, 1)
    >>> slab_size(2.0, 0.75, "scan")
    Traceback (most recent call last):
    ldct_clip.errors.InputError: --thickness 2: not a whole number of the 0.75 mm slice spacing of scan; pass \
multiples of 0.75 mm (e.g. 0.75, 1.5)
    """
    count = thickness_mm / spacing_mm
    if round(count) < 1 or abs(count - round(count)) > SPACING_TOLERANCE:
        raise InputError(f"--thickness {thickness_mm:g}: not a whole number of the {spacing_mm:g} mm slice spacing "
                         f"of {source}; pass multiples of {spacing_mm:g} mm (e.g. {spacing_mm:g}, {2 * spacing_mm:g})")
    return int(round(count))


def average_slabs(hu: np.ndarray, positions_mm: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of non-overlapping groups of ``size`` adjacent slices (a leftover partial group is dropped), and
    the mean position of each group.

    >>> hu = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    >>> slabs, z = average_slabs(hu, np.arange(5.0), 2)
    >>> slabs[:, 0, 0].tolist(), z.tolist()
    ([0.5, 2.5], [0.5, 2.5])
    """
    count = len(hu) // size
    kept = count * size
    slabs = hu[:kept].reshape(count, size, *hu.shape[1:]).mean(axis=1, dtype=np.float64).astype(np.float32)
    return slabs, np.asarray(positions_mm[:kept], dtype=np.float64).reshape(count, size).mean(axis=1)


def build_conditions(doses: Sequence[float], filters: Sequence[str], thicknesses: Sequence[float],
                     real: bool) -> tuple[Condition, ...]:
    """Every condition in table order: by thickness, then dose (highest first), then filter; the real quarter
    dose of a thickness right after the simulated 25 % (or where 25 % would be).

    >>> [c.key for c in build_conditions([0.5, 0.1], ["ramp"], [1.0], real=True)]
    ['dose50_ramp_1mm', 'real_dose25_1mm', 'dose10_ramp_1mm']
    """
    found = []
    for thickness in check_thicknesses(thicknesses):
        rows = [Condition(d, f, thickness) for d in check_doses(doses) for f in check_filters(filters)]
        if real:
            rows.append(Condition(REAL_DOSE, None, thickness))
        found += sorted(rows, key=lambda c: (-c.dose, c.real))
    return tuple(found)
