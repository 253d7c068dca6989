"""How trained CT denoisers generalize across dose, reconstruction kernel and slice thickness.

CLIPDenoising's claim is that a model trained once (full dose plus Gaussian noise) holds up on noise it never
saw. :func:`run_generalization` tests that on a user's own normal-dose series: it simulates every condition
(dose × FBP filter of the added noise × slice thickness) with :mod:`ldct_clip.simulate`, adds the real low
dose where it exists (AAPM-Mayo quarter dose), denoises each with every checkpoint and TV, and writes one
report with a per-condition evaluation report beside it. The parts:

- :mod:`~ldct_clip.generalization.conditions`: the conditions and how thick slices are made from thin ones;
- :mod:`~ldct_clip.generalization.sources`: the normal-dose series (a DICOM folder or NIfTI file, or the
  AAPM-Mayo test patients with their real quarter dose);
- :mod:`~ldct_clip.generalization.cache`: simulated series kept in the output folder, so a rerun with other
  checkpoints simulates nothing;
- :mod:`~ldct_clip.generalization.run`: the run;
- :mod:`~ldct_clip.generalization.report`: the overview (table, PSNR-against-dose figures, costs).

The command is ``python pipelines/ct_generalization.py``; the method and how to read the report are in
docs/generalization.md.
"""

from ldct_clip.generalization.cache import CACHE_DIR, SimulationCache, cache_key
from ldct_clip.generalization.conditions import (
    DEFAULT_DOSES,
    DEFAULT_FILTERS,
    DEFAULT_THICKNESSES,
    REAL_DOSE,
    Condition,
    average_slabs,
    build_conditions,
)
from ldct_clip.generalization.report import SUMMARY_NAME, TABLE_NAME, psnr_figure, table_rows, write_overview
from ldct_clip.generalization.run import (
    CONDITIONS_DIR,
    MARKER_NAME,
    ConditionResult,
    GeneralizationResult,
    run_generalization,
)
from ldct_clip.generalization.sources import NormalDose, series_from_input, series_from_mayo

__all__ = [
    "CACHE_DIR",
    "CONDITIONS_DIR",
    "DEFAULT_DOSES",
    "DEFAULT_FILTERS",
    "DEFAULT_THICKNESSES",
    "MARKER_NAME",
    "REAL_DOSE",
    "SUMMARY_NAME",
    "TABLE_NAME",
    "Condition",
    "ConditionResult",
    "GeneralizationResult",
    "NormalDose",
    "SimulationCache",
    "average_slabs",
    "build_conditions",
    "cache_key",
    "psnr_figure",
    "run_generalization",
    "series_from_input",
    "series_from_mayo",
    "table_rows",
    "write_overview",
]
