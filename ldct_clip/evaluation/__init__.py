"""Evaluate CT denoisers on paired low-/full-dose slices, beside the input and classical baselines.

The parts, in the order data flows through them:

- :mod:`~ldct_clip.evaluation.pairs`: what is evaluated. :class:`PairedSlices` from an AAPM-Mayo tree or
  manifest with a split (:func:`pairs_from_manifest`; :func:`load_manifest` reads or scans the tree), or
  from one low-dose and one full-dose series paired by each slice's own position (:func:`pairs_from_series`).
- :mod:`~ldct_clip.evaluation.baselines`: the classical baselines TV and BM3D, with fixed parameters.
- :mod:`~ldct_clip.evaluation.run`: :func:`evaluate` scores every model (:class:`ModelEntry`), the low-dose
  input and the baselines on the same slices under each metric preset → :class:`EvaluationResult`;
  :func:`worse_than_input` lists every method that scores below its own input.
- :mod:`~ldct_clip.evaluation.statistics`: paired differences with bootstrap confidence intervals
  (patients resampled when there are several) and Wilcoxon signed-rank p-values.
- :mod:`~ldct_clip.evaluation.published`: the paper's rows, quoted beside the measured ones.
- :mod:`~ldct_clip.evaluation.report`: the report folder (report.md, report.html, metrics.csv,
  summary.json, figures/), written atomically (:func:`write_report`).
"""

from ldct_clip.data.mayo import MANIFEST_CACHE, load_manifest
from ldct_clip.evaluation.baselines import (
    BASELINES,
    BM3D_SIGMA_HU,
    TV_ITERATIONS,
    TV_WEIGHT,
    bm3d_available,
    default_baselines,
    denoise_bm3d,
    denoise_tv,
    resolve_baselines,
)
from ldct_clip.evaluation.pairs import PairedSlices, SlicePair, pairs_from_manifest, pairs_from_series, slice_positions
from ldct_clip.evaluation.published import PUBLISHED_ROWS, PUBLISHED_SOURCE, PublishedRow, published_rows
from ldct_clip.evaluation.report import REPORT_FILES, check_output, summary_dict, write_report
from ldct_clip.evaluation.run import (
    CT_PRESETS,
    EvaluationResult,
    Method,
    MetricSummary,
    ModelEntry,
    RoiMeasurement,
    ct_presets,
    default_label,
    evaluate,
    load_model_entry,
    worse_than_input,
)
from ldct_clip.evaluation.statistics import Comparison, PairedDifference, paired_difference

__all__ = [
    "BASELINES",
    "BM3D_SIGMA_HU",
    "CT_PRESETS",
    "MANIFEST_CACHE",
    "PUBLISHED_ROWS",
    "PUBLISHED_SOURCE",
    "REPORT_FILES",
    "TV_ITERATIONS",
    "TV_WEIGHT",
    "Comparison",
    "EvaluationResult",
    "Method",
    "MetricSummary",
    "ModelEntry",
    "PairedDifference",
    "PairedSlices",
    "PublishedRow",
    "RoiMeasurement",
    "SlicePair",
    "bm3d_available",
    "check_output",
    "ct_presets",
    "default_baselines",
    "default_label",
    "denoise_bm3d",
    "denoise_tv",
    "evaluate",
    "load_manifest",
    "load_model_entry",
    "paired_difference",
    "pairs_from_manifest",
    "pairs_from_series",
    "published_rows",
    "resolve_baselines",
    "slice_positions",
    "summary_dict",
    "worse_than_input",
    "write_report",
]
