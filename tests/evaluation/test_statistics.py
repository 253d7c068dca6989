"""Paired statistics: intervals over the right units, reproducible, p-values only where they mean something."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ldct_clip.evaluation import paired_difference
from ldct_clip.evaluation.statistics import MIN_WILCOXON_SLICES, paired_comparisons


def test_one_patient_resamples_slices_and_matches_the_normal_interval() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(40.0, 1.0, 400)
    values = reference + rng.normal(0.5, 2.0, 400)
    d = paired_difference(values, reference, ["P1"] * 400)
    differences = values - reference
    half = 1.96 * differences.std(ddof=1) / np.sqrt(400)
    assert d.resampled == "slices" and d.units == 400 and d.n == 400 and d.note is None
    assert d.mean == pytest.approx(differences.mean())
    assert d.ci_low == pytest.approx(d.mean - half, abs=0.03) and d.ci_high == pytest.approx(d.mean + half, abs=0.03)
    assert d.p_value == pytest.approx(stats.wilcoxon(differences).pvalue)
    assert paired_difference(values, reference, ["P1"] * 400) == d  # fixed seed: reproducible


def test_several_patients_resample_patients_not_slices() -> None:
    """Two patients whose slices all differ by 1 and 3: only the patients vary, so the interval spans 1..3."""
    reference = np.zeros(20)
    values = np.r_[np.full(10, 1.0), np.full(10, 3.0)]
    patients = ["A"] * 10 + ["B"] * 10
    clustered = paired_difference(values, reference, patients)
    assert clustered.resampled == "patients" and clustered.units == 2 and clustered.mean == 2.0
    assert (clustered.ci_low, clustered.ci_high) == (1.0, 3.0)  # resamples AA, AB, BA, BB
    assert "only 2 patients" in clustered.note
    by_slice = paired_difference(values, reference)  # the same slices treated as independent: far narrower
    assert by_slice.resampled == "slices" and by_slice.ci_high - by_slice.ci_low < 1.5
    unequal = paired_difference(np.r_[np.full(2, 1.0), np.full(18, 3.0)], reference, ["A"] * 2 + ["B"] * 18)
    assert unequal.mean == pytest.approx(2.8)  # the mean over slices, not over patients


def test_p_values_are_none_with_a_reason_where_the_test_cannot_speak() -> None:
    same = paired_difference([40.0, 41.0, 42.0], [40.0, 41.0, 42.0])
    assert same.p_value is None and same.p_note == "all differences are zero"
    assert (same.mean, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    few = paired_difference(np.arange(1.0, MIN_WILCOXON_SLICES), np.zeros(MIN_WILCOXON_SLICES - 1))
    assert few.p_value is None and f"at least {MIN_WILCOXON_SLICES}" in few.p_note
    single = paired_difference([2.0], [1.0])
    assert single.ci_low is None and single.note == "no interval from a single slice"
    infinite = paired_difference([np.inf, 40.0, 41.0], [30.0, 30.0, 30.0])
    assert infinite.ci_low is None and infinite.p_value is None and "not finite" in infinite.p_note
    enough = paired_difference(np.arange(1.0, MIN_WILCOXON_SLICES + 1), np.zeros(MIN_WILCOXON_SLICES))
    assert enough.p_value == pytest.approx(2 / 2**MIN_WILCOXON_SLICES)  # exact: all differences positive


def test_every_method_against_every_reference_but_itself() -> None:
    scores = {"clipdenoising": {key: {"psnr": np.arange(8.0) + offset, "ssim": np.full(8, 0.9) + offset / 100}
                                for key, offset in (("model", 1.0), ("low_dose", 0.0), ("tv", 0.5))}}
    found = paired_comparisons(scores, ["P"] * 8, ["model", "low_dose", "tv"], ("model", "low_dose"), resamples=500)
    pairs = {(c.method, c.reference, c.metric): c.difference.mean for c in found}
    assert len(pairs) == 8 and ("model", "model", "psnr") not in pairs
    assert pairs[("tv", "model", "psnr")] == pytest.approx(-0.5)
    assert pairs[("model", "low_dose", "ssim")] == pytest.approx(0.01)
