"""Projection-domain noise of a reduced dose (step 3 of the :mod:`ldct_clip.simulate` method) and the physics
constants it and the attenuation conversion use."""

from __future__ import annotations

import math

import numpy as np

from ldct_clip.errors import InputError
from ldct_clip.simulate.checks import _check_dose, _check_photons

__all__ = ["DEFAULT_ELECTRONIC_NOISE", "DEFAULT_PHOTONS", "MIN_COUNTS", "MU_WATER_PER_MM", "add_dose_reduction_noise"]

MU_WATER_PER_MM = 0.0192
"""Linear attenuation of water (1/mm) at about 70 keV, from NIST SRD 126 (see :mod:`ldct_clip.simulate`)."""
DEFAULT_PHOTONS = 1e5
"""Incident photons per ray and view of the normal-dose scan."""
DEFAULT_ELECTRONIC_NOISE = 10.0
"""Standard deviation of the detector's electronic noise, in photon counts."""
MIN_COUNTS = 1.0
"""Floor (photons) for a reduced-dose reading before the log; rays expecting fewer keep their expectation."""


def add_dose_reduction_noise(
    line_integrals: np.ndarray,
    dose: float,
    photons: float = DEFAULT_PHOTONS,
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Line integrals of a normal-dose scan with the extra noise of ``dose`` times fewer photons.

    Vectorised over the whole sinogram (all views and detector bins at once). Step 3 of the method in
    :mod:`ldct_clip.simulate`: the expected reduced-dose reading λ = dose · photons · e^(−p) gets a centred
    Poisson draw of mean (1 − dose)·λ plus Gaussian noise of variance (1 − dose²)·electronic_noise², is
    floored at min(λ, :data:`MIN_COUNTS`) and turned back into a line integral. Added variance ≈
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
