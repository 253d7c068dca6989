"""Paired statistics: every method is scored on the same slices, so compare them slice by slice.

For a method against a reference (the first model, or the low-dose input) and one metric, the per-slice
differences ``d = method − reference`` give:

- the mean difference over slices;
- a 95 % bootstrap confidence interval of that mean (:data:`BOOTSTRAP_RESAMPLES` resamples, percentile
  method, fixed :data:`BOOTSTRAP_SEED`, so a report is reproducible). With one patient the slices are
  resampled. With several patients the patients are resampled (the one-stage cluster bootstrap:
  Davison & Hinkley 1997, section 3.8; Field & Welsh 2007): slices of one patient are correlated, so
  resampling slices would pretend to more independent evidence than there is, and resampling slices again
  inside the drawn patients (two-stage) adds the within-patient variation a second time. The statistic of
  a resample is the slice-weighted mean ``Σ sums / Σ counts`` of the drawn patients. This is still
  :func:`scipy.stats.bootstrap`, given each patient's (sum, count) as one paired observation, rather than
  hand-written resampling. With few patients the interval rests on few units (noted in the result).
- a Wilcoxon signed-rank p-value over the slices (:func:`scipy.stats.wilcoxon`, two-sided; zero differences
  dropped, as Wilcoxon did). It treats slices as independent, which slices along z are not quite, so read it
  beside the interval. It is None, with the reason, when all differences are zero or fewer than
  :data:`MIN_WILCOXON_SLICES` are non-zero (the test cannot then reach p < 0.05).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "MIN_WILCOXON_SLICES",
    "Comparison",
    "PairedDifference",
    "paired_comparisons",
    "paired_difference",
]

BOOTSTRAP_RESAMPLES = 10_000
"""Bootstrap resamples per confidence interval."""
BOOTSTRAP_SEED = 0
"""Seed of the bootstrap, so a report is reproducible."""
CONFIDENCE = 0.95
"""Confidence level of the intervals."""
MIN_WILCOXON_SLICES = 6
"""Fewest non-zero differences for a signed-rank p-value (with 5 the two-sided exact p is at least 0.0625)."""
FEW_PATIENTS = 5
"""Below this many resampled patients the interval is flagged as resting on few units."""
_BATCH_VALUES = 2_000_000  # resampled values held at once: bounds the bootstrap's memory for long series


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-slice differences with its bootstrap interval and a signed-rank p-value.

    Attributes:
        mean: mean over slices of ``method − reference``.
        ci_low, ci_high: the confidence interval of ``mean``; None when it cannot be computed (see ``note``).
        n: slices.
        units: how many units were resampled (patients, or slices with one patient).
        resampled: ``"patients"`` or ``"slices"``.
        p_value: two-sided Wilcoxon signed-rank p-value over the slices; None with ``p_note`` saying why.
        p_note: why there is no p-value, else None.
        note: a caveat on the interval (few patients, or why there is none), else None.
    """

    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int
    units: int
    resampled: str
    p_value: float | None
    p_note: str | None
    note: str | None


@dataclass(frozen=True)
class Comparison:
    """``method`` against ``reference`` (method keys) on ``metric`` (``psnr``/``ssim``) under ``preset``."""

    preset: str
    metric: str
    method: str
    reference: str
    difference: PairedDifference


def paired_difference(
    values: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    patients: Sequence[str] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> PairedDifference:
    """Mean paired difference ``values − reference`` over slices, its bootstrap interval and Wilcoxon p-value.

    ``patients`` names each slice's patient; with more than one patient the patients are resampled (see
    the module docstring), else the slices.

    >>> d = paired_difference([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [0.0] * 7, resamples=2000)
    >>> d.mean, d.resampled, bool(d.ci_low < 4.0 < d.ci_high), round(d.p_value, 4)
    (4.0, 'slices', True, 0.0156)
    >>> paired_difference([1.0, 2.0], [1.0, 2.0]).p_note
    'all differences are zero'
    """
    a, b = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"values and reference must be equal-length 1-D arrays, got {a.shape} and {b.shape}")
    labels = np.asarray(["" for _ in a] if patients is None else list(patients))
    if labels.shape != a.shape:
        raise ValueError(f"patients must name each of the {a.size} slices, got {labels.size} names")
    d = a - b
    mean = float(d.mean())
    groups = list(dict.fromkeys(labels.tolist()))
    resampled = "patients" if len(groups) > 1 else "slices"
    if resampled == "patients":
        sums = np.array([d[labels == g].sum() for g in groups])
        counts = np.array([float(np.sum(labels == g)) for g in groups])
    else:
        sums, counts = d, np.ones_like(d)
    units = len(sums)
    p_value, p_note = _wilcoxon(d)
    if not np.isfinite(d).all():
        note = "no interval: some scores are not finite (an exact match has infinite PSNR)"
        return PairedDifference(mean, None, None, d.size, units, resampled, None, note, note)
    if units < 2:
        return PairedDifference(mean, None, None, d.size, units, resampled, p_value, p_note,
                                "no interval from a single slice")
    interval = stats.bootstrap(
        (sums, counts), _weighted_mean, paired=True, vectorized=True, n_resamples=resamples,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
        batch=max(1, _BATCH_VALUES // units),
    ).confidence_interval
    note = None
    if resampled == "patients" and units < FEW_PATIENTS:
        note = f"interval from resampling only {units} patients: a rough guide"
    return PairedDifference(mean, float(interval.low), float(interval.high), d.size, units, resampled, p_value,
                            p_note, note)


def _weighted_mean(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over all slices of the drawn units: their summed differences over their summed slice counts."""
    return np.sum(sums, axis=axis) / np.sum(counts, axis=axis)


def _wilcoxon(d: np.ndarray) -> tuple[float | None, str | None]:
    """Two-sided signed-rank p-value of the differences, or None and the reason."""
    nonzero = int(np.count_nonzero(d))
    if not np.isfinite(d).all():
        return None, "some scores are not finite"
    if nonzero == 0:
        return None, "all differences are zero"
    if nonzero < MIN_WILCOXON_SLICES:
        return None, (f"only {nonzero} non-zero difference(s); the signed-rank test needs at least "
                      f"{MIN_WILCOXON_SLICES} to reach p < 0.05")
    return float(stats.wilcoxon(d).pvalue), None


def paired_comparisons(
    scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    patients: Sequence[str],
    methods: Sequence[str],
    references: Sequence[str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[Comparison, ...]:
    """Every method against every reference (itself excluded), for each preset and metric of ``scores``.

    ``scores[preset][method][metric]`` holds one value per slice; ``patients`` names each slice's patient.
    """
    found = []
    for preset, by_method in scores.items():
        for reference in references:
            for method in methods:
                if method == reference:
                    continue
                for metric in ("psnr", "ssim"):
                    difference = paired_difference(by_method[method][metric], by_method[reference][metric], patients,
                                                   resamples, seed)
                    found.append(Comparison(preset, metric, method, reference, difference))
    return tuple(found)
