"""Evaluate a CT denoiser on paired low-/full-dose slices, beside the input and classical baselines.

Flow: :class:`PairedSlices` (from an AAPM-Mayo tree or manifest with a split, :func:`pairs_from_manifest`, or
from one low-dose and one full-dose series, :func:`pairs_from_series`) → :func:`evaluate`, which reads the
slices chunk by chunk, runs the model, the low-dose input itself and the baselines on the same slices, and
scores each under the metric presets of :mod:`ldct_clip.metrics` → :class:`EvaluationResult`, which
:mod:`ldct_clip.report` turns into tables and figures. Memory stays bounded by a chunk of slices, whatever
the number of slices.

Baselines, with fixed parameters (never tuned on the evaluated slices; the report prints them):

- ``tv``: total variation, :func:`skimage.restoration.denoise_tv_chambolle` per slice on the model scale
  ``(HU + 1024) / 4096`` with weight :data:`TV_WEIGHT` = 0.01 (≈ 41 HU, about one quarter-dose noise
  standard deviation) and exactly :data:`TV_ITERATIONS` iterations. skimage's relative-energy stopping
  rule (``eps``) stops after a handful of iterations at some small weights and not at others, so it is
  switched off: a fixed iteration count makes the result deterministic and smooth in the weight (100
  iterations are within 0.1 dB of 200). On a synthetic abdomen phantom with correlated ≈ 40 HU noise the
  PSNR-optimal weight was 0.0125–0.02; a piecewise-flat phantom favours over-smoothing, so the default
  sits below that, where textured anatomy keeps its detail.
- ``bm3d``: BM3D (optional ``bm3d`` package, non-commercial licence, ``pip install bm3d``) per slice on the
  model scale with noise standard deviation :data:`BM3D_SIGMA_HU` = 35 HU: the quarter-dose noise implied
  by the paper's Fig. 7 (low-dose PSNR 40.48 dB at data_range 4096 is an RMSE of 39 HU against a
  full-dose image carrying half the low-dose noise, so σ ≈ 39 / √1.25 ≈ 35 HU). It runs single-threaded:
  the package's threads sum in a varying order and change the output by up to 0.15 HU from run to run,
  so a report could not be reproduced. Slow on CPU: about 15 s per 512×512 slice.

HU fidelity: mean-HU bias and noise standard deviation of every method in flat regions (ROIs). ROIs are
given as ``(index, y0, x0, h, w)`` boxes, ``index`` counting the evaluated slices (the ``index`` column of
``metrics.csv``), or found automatically: in each run of :data:`CHUNK_SLICES` slices of one patient (the
batch size when larger), the flattest soft-tissue box of the full-dose images
(:func:`ldct_clip.metrics.find_flat_rois`: every pixel in [-100, 200] HU, lowest full-dose standard
deviation; side 1/16 of the slice, 32 pixels at 512×512), so the ROIs spread along z.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from skimage.restoration import denoise_tv_chambolle
from tqdm.auto import tqdm

from ldct_clip.data.datasets import DEFAULT_THICKNESS_MM, EvaluationPairs
from ldct_clip.data.hu import hu_to_model, model_to_hu
from ldct_clip.data.mayo import Manifest, scan_mayo
from ldct_clip.data.splits import MAYO_PATIENTS, get_split
from ldct_clip.errors import InputError
from ldct_clip.inference import PRECISIONS, VolumeDenoiser
from ldct_clip.io.dicom import read_slice_hu
from ldct_clip.io.read import read_volume
from ldct_clip.io.volume import CTVolume
from ldct_clip.metrics import MetricPreset, RoiStats, find_flat_rois, get_preset, roi_stats, score_slices, summarize
from ldct_clip.models.denoiser import CLIPDenoiser

__all__ = [
    "BASELINES",
    "BM3D_SIGMA_HU",
    "CT_PRESETS",
    "PUBLISHED_ROWS",
    "PUBLISHED_SOURCE",
    "TV_ITERATIONS",
    "TV_WEIGHT",
    "EvaluationResult",
    "Method",
    "MetricSummary",
    "PairedSlices",
    "PublishedRow",
    "RoiMeasurement",
    "SlicePair",
    "bm3d_available",
    "ct_presets",
    "default_baselines",
    "denoise_bm3d",
    "denoise_tv",
    "evaluate",
    "load_manifest",
    "pairs_from_manifest",
    "pairs_from_series",
    "published_rows",
    "resolve_baselines",
]

logger = logging.getLogger(__name__)

CT_PRESETS: tuple[str, ...] = ("clipdenoising", "redcnn", "noise2sim")
"""Metric presets that apply to CT (see :data:`ldct_clip.metrics.PRESETS`)."""
TV_WEIGHT = 0.01
"""Default TV weight on the model scale (≈ 41 HU); see the module docstring."""
TV_ITERATIONS = 100
"""Chambolle iterations of the TV baseline (fixed: the energy stopping rule is off)."""
BM3D_SIGMA_HU = 35.0
"""Default BM3D noise standard deviation in HU; see the module docstring."""
BASELINES: tuple[str, ...] = ("tv", "bm3d")
"""Classical baselines :func:`evaluate` can run."""
CHUNK_SLICES = 16
"""Slices read and processed together (more when the batch size is larger); one automatic ROI per chunk."""
FIGURE_SLICES = 3
"""Slices shown side by side in the report by default."""
MANIFEST_CACHE = "manifest.csv"
"""File name of the scanned manifest kept in a report folder (reused when a run overwrites that folder)."""
PAIR_TOLERANCE_FRACTION = 0.1
"""Series slices pair when their positions differ by at most this × slice spacing."""

PUBLISHED_SOURCE = (
    "quoted from CLIPDenoising (Cheng, Liang, Tan, CVPR 2024), Table 3: AAPM-Mayo patient L506, "
    "526 quarter-dose 1 mm slices, HU in [-1024, 3072], data_range 4096"
)
"""Where :data:`PUBLISHED_ROWS` come from."""


@dataclass(frozen=True)
class PublishedRow:
    """A PSNR/SSIM pair quoted from a paper, valid under one metric preset only."""

    method: str
    psnr: float
    ssim: float
    preset: str
    source: str


PUBLISHED_ROWS: tuple[PublishedRow, ...] = tuple(
    PublishedRow(method, psnr, ssim, "clipdenoising", PUBLISHED_SOURCE)
    for method, psnr, ssim in (
        ("TV", 44.81, 0.972),
        ("ScoreSDE", 45.36, 0.972),
        ("Noise2Sim", 45.98, 0.978),
        ("CLIPDenoising", 45.88, 0.976),
    )
)
"""Published L506 rows; they were measured with the ``clipdenoising`` preset and mean nothing under another."""


def published_rows(preset: str) -> tuple[PublishedRow, ...]:
    """The published rows measured under ``preset`` (none for presets the paper did not use).

    >>> [row.method for row in published_rows("clipdenoising")]
    ['TV', 'ScoreSDE', 'Noise2Sim', 'CLIPDenoising']
    >>> published_rows("redcnn")
    ()
    """
    return tuple(row for row in PUBLISHED_ROWS if row.preset == preset)


# --- baselines -------------------------------------------------------------------------------------------


def denoise_tv(hu: np.ndarray, weight: float = TV_WEIGHT) -> np.ndarray:
    """Total-variation denoising of each Y×X slice of a Z×Y×X HU volume (Chambolle, on the model scale).

    >>> noisy = np.random.default_rng(0).normal(40.0, 40.0, (1, 32, 32))
    >>> bool(denoise_tv(noisy).std() < noisy.std() / 2)
    True
    """
    _check_parameter("tv_weight", weight)
    out = np.empty(hu.shape, dtype=np.float32)
    for z, image in enumerate(hu):
        smooth = denoise_tv_chambolle(hu_to_model(image.astype(np.float64)), weight=weight, eps=0.0,
                                      max_num_iter=TV_ITERATIONS)
        out[z] = model_to_hu(smooth)
    return out


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package is installed."""
    return find_spec("bm3d") is not None


def denoise_bm3d(hu: np.ndarray, sigma_hu: float = BM3D_SIGMA_HU) -> np.ndarray:
    """BM3D denoising of each Y×X slice of a Z×Y×X HU volume, noise σ given in HU (optional ``bm3d``)."""
    _check_parameter("bm3d_sigma_hu", sigma_hu)
    _require_bm3d()
    import bm3d

    profile = bm3d.BM3DProfile()
    profile.num_threads = 1  # reproducible: see the module docstring
    out = np.empty(hu.shape, dtype=np.float32)
    for z, image in enumerate(hu):
        smooth = bm3d.bm3d(hu_to_model(image.astype(np.float64)), sigma_hu / 4096.0, profile=profile)
        out[z] = model_to_hu(np.asarray(smooth))
    return out


def _require_bm3d() -> None:
    if not bm3d_available():
        raise InputError("BM3D baseline: the optional package bm3d is not installed; run 'pip install bm3d' "
                         "(non-commercial licence) or leave bm3d out of the baselines")


def default_baselines() -> tuple[str, ...]:
    """``("tv", "bm3d")`` when ``bm3d`` is installed, else ``("tv",)``."""
    return BASELINES if bm3d_available() else ("tv",)


def ct_presets(names: Sequence[str]) -> tuple[MetricPreset, ...]:
    """The CT metric presets called ``names`` (duplicates dropped); InputError for an unknown or empty list.

    >>> [p.data_range for p in ct_presets(["clipdenoising", "redcnn"])]
    [4096.0, 400.0]
    """
    if isinstance(names, str):
        names = [names]
    unknown = [name for name in names if name not in CT_PRESETS]
    if unknown or not names:
        raise InputError(f"preset {', '.join(map(repr, unknown)) or '(none)'}: unknown for CT; use one or more of "
                         f"{', '.join(CT_PRESETS)}")
    return tuple(get_preset(name) for name in dict.fromkeys(names))


def resolve_baselines(names: Sequence[str] | None) -> tuple[str, ...]:
    """Validated baseline names; None means :func:`default_baselines`. Asking for BM3D without ``bm3d`` fails."""
    if names is None:
        return default_baselines()
    chosen = tuple(dict.fromkeys(names))
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise InputError(f"baseline(s) {', '.join(unknown)}: unknown; use any of {', '.join(BASELINES)}")
    if "bm3d" in chosen:
        _require_bm3d()
    return chosen


def _check_parameter(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name}={value!r}: must be a positive number")


# --- what to evaluate ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlicePair:
    """One evaluated slice: whose, where along the slice normal, where it was read from, its Y×X size."""

    patient: str
    position_mm: float
    low_source: str
    full_source: str
    shape: tuple[int, int]


@dataclass(frozen=True)
class PairedSlices:
    """Low-/full-dose slice pairs, sorted by patient and position, read on demand.

    Attributes:
        slices: the pairs.
        read_pair: ``index -> (low, full)`` float32 HU Y×X slices.
        description: one line on where the data comes from (shown in reports).
        split: split preset name for Mayo data, None for a series pair.
        published_comparable: whether the slices are those of the published table (the whole
            ``clipdenoising`` L506 1 mm test set), so quoted rows can sit beside measured ones.
    """

    slices: tuple[SlicePair, ...]
    read_pair: Callable[[int], tuple[np.ndarray, np.ndarray]]
    description: str
    split: str | None = None
    published_comparable: bool = False

    def __len__(self) -> int:
        return len(self.slices)

    def evenly_spaced(self, count: int) -> PairedSlices:
        """At most ``count`` slices spread evenly over all of them (first and last included), for quick looks."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(f"max_slices={count!r}: must be a positive integer")
        if count >= len(self):
            return self
        keep = [int(i) for i in np.unique(np.round(np.linspace(0, len(self) - 1, count)).astype(int))]
        return PairedSlices(
            slices=tuple(self.slices[i] for i in keep),
            read_pair=lambda index: self.read_pair(keep[index]),
            description=f"{self.description}; {len(keep)} of {len(self)} slices, evenly spaced",
            split=self.split,
            published_comparable=False,
        )

    def patient_runs(self) -> Iterator[tuple[str, list[int]]]:
        """``(patient, indices)`` for each run of consecutive slices of one patient."""
        start = 0
        for index in range(1, len(self) + 1):
            if index == len(self) or self.slices[index].patient != self.slices[start].patient:
                yield self.slices[start].patient, list(range(start, index))
                start = index


def load_manifest(data_root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Manifest:
    """A manifest CSV as given, or an AAPM-Mayo tree: reuse ``cache_dir/manifest.csv`` when it was made from
    the same root, else scan. Nothing is written here (the report folder keeps the manifest)."""
    root = Path(data_root)
    if root.is_file():
        return Manifest.load(root)
    if not root.is_dir():
        raise InputError(f"{root}: data root not found; pass an AAPM-Mayo folder or a manifest from prepare_mayo.py")
    if cache_dir is not None:
        cached = Path(cache_dir) / MANIFEST_CACHE
        if cached.is_file():
            manifest = Manifest.load(cached)
            if manifest.root.resolve() == root.resolve():
                logger.info("reusing the manifest cached in %s", cached)
                return manifest
    logger.info("scanning %s for AAPM-Mayo series", root)
    return scan_mayo(root)


def pairs_from_manifest(
    manifest: Manifest,
    split: str = "clipdenoising",
    thickness_mm: float = DEFAULT_THICKNESS_MM,
    kernel: str | None = None,
) -> PairedSlices:
    """The quarter/full-dose pairs of a split's test patients.

    Training patients need not be present. Raises :class:`InputError` when the split is unknown, a test
    patient is missing from the data, or it has no pairs at ``thickness_mm``.
    """
    known = set(manifest.patients) | set(MAYO_PATIENTS)  # resolve the test patients; training ones don't matter
    test = get_split(split, available_patients=known).test
    missing = [patient for patient in test if patient not in manifest.patients]
    if missing:
        raise InputError(
            f"split {split!r}: test patient(s) {', '.join(missing)} not in the data under {manifest.root} "
            f"(found {', '.join(manifest.patients) or 'none'}); add them or choose another --split"
        )
    chosen = EvaluationPairs(manifest, test, thickness=thickness_mm, kernel=kernel)
    root = chosen.root
    slices = tuple(
        SlicePair(full.patient, full.z, quarter.path, full.path, (full.rows, full.columns))
        for quarter, full in chosen.pairs
    )

    def read_pair(index: int) -> tuple[np.ndarray, np.ndarray]:
        quarter, full = chosen.pairs[index]
        return read_slice_hu(root / quarter.path), read_slice_hu(root / full.path)

    kernel_note = f", kernel {chosen.kernel}" if chosen.kernel else ""
    return PairedSlices(
        slices=slices,
        read_pair=read_pair,
        description=(f"AAPM-Mayo data in {root}: split {split}, test patient(s) {', '.join(test)}, "
                     f"{thickness_mm:g} mm{kernel_note}, quarter-dose vs full-dose"),
        split=split,
        published_comparable=split == "clipdenoising" and thickness_mm == 1.0,
    )


def pairs_from_series(low: str | os.PathLike[str], full: str | os.PathLike[str]) -> PairedSlices:
    """Pair a low-dose and a full-dose series (DICOM folder or NIfTI file) slice by slice.

    Raises :class:`InputError` when their slice counts, slice sizes or slice positions differ.
    """
    low_volume, full_volume = read_volume(low), read_volume(full)
    if low_volume.shape[0] != full_volume.shape[0]:
        raise InputError(
            f"{low}: {low_volume.shape[0]} slices but {full} has {full_volume.shape[0]}; pass a low- and a "
            "full-dose series covering the same slices"
        )
    if low_volume.shape[1:] != full_volume.shape[1:]:
        raise InputError(
            f"{low}: slices of {low_volume.shape[1]}x{low_volume.shape[2]} pixels but {full} has "
            f"{full_volume.shape[1]}x{full_volume.shape[2]}; pass series reconstructed on the same grid"
        )
    low_z, full_z = _positions(low_volume), _positions(full_volume)
    tolerance = PAIR_TOLERANCE_FRACTION * min(low_volume.spacing[0], full_volume.spacing[0])
    off = np.flatnonzero(np.abs(low_z - full_z) > tolerance)
    if off.size:
        i = int(off[0])
        raise InputError(
            f"{low}: slice {i} lies at {low_z[i]:.2f} mm but slice {i} of {full} at {full_z[i]:.2f} mm "
            f"({off.size} slices differ); pass series covering the same positions"
        )
    patient = _patient_id(low_volume) or _patient_id(full_volume) or _series_name(Path(low))
    slices = tuple(
        SlicePair(patient, float(full_z[i]), f"{low}[{i}]", f"{full}[{i}]", full_volume.shape[1:])
        for i in range(full_volume.shape[0])
    )
    return PairedSlices(
        slices=slices,
        read_pair=lambda index: (low_volume.hu[index], full_volume.hu[index]),
        description=f"low-dose {low} vs full-dose {full}",
    )


def _positions(volume: CTVolume) -> np.ndarray:
    """Slice positions along the slice normal, in mm."""
    start = float(np.dot(volume.origin, volume.direction[2]))
    return start + volume.spacing[0] * np.arange(volume.shape[0])


def _series_name(path: Path) -> str:
    """``scan`` for ``scan.nii.gz``, ``scan.nii`` or a folder ``scan``."""
    return path.name.removesuffix(".gz").removesuffix(".nii")


def _patient_id(volume: CTVolume) -> str:
    if not volume.slice_headers:
        return ""
    return str(volume.slice_headers[0].get("PatientID", "") or "").strip()


# --- the evaluation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One row of the tables: ``key`` (column value in metrics.csv), label, kind and its parameters."""

    key: str
    label: str
    kind: str  # "model", "input" or "baseline"
    details: str


@dataclass(frozen=True)
class MetricSummary:
    """Mean ± standard deviation (population) of per-slice PSNR and SSIM over ``n`` slices."""

    psnr_mean: float
    psnr_std: float
    ssim_mean: float
    ssim_std: float
    n: int


@dataclass(frozen=True)
class RoiMeasurement:
    """HU statistics of one method in one ROI ``(index, y0, x0, h, w)``; ``auto`` when it was found automatically."""

    method: str
    roi: tuple[int, int, int, int, int]
    auto: bool
    stats: RoiStats


@dataclass
class EvaluationResult:
    """Everything a report needs: per-slice scores of every method under every preset, ROI statistics,
    the images of a few slices, timings and the settings that produced them.

    ``scores[preset][method]["psnr" | "ssim"]`` holds one value per slice of ``slices``; ``figure_images``
    maps a slice index to ``{"low_dose", "full_dose", <method key>...}`` HU images.
    """

    presets: tuple[MetricPreset, ...]
    methods: tuple[Method, ...]
    slices: tuple[SlicePair, ...]
    scores: dict[str, dict[str, dict[str, np.ndarray]]]
    rois: tuple[RoiMeasurement, ...]
    figure_images: dict[int, dict[str, np.ndarray]]
    seconds: dict[str, float]
    data_description: str
    split: str | None
    published_comparable: bool
    encoder_weights: str
    settings: dict[str, object]
    notes: list[str] = field(default_factory=list)

    @property
    def encoder_is_random(self) -> bool:
        """Whether the model's encoder was randomly initialised (so the numbers say nothing about CLIP)."""
        return self.encoder_weights == "random"

    @property
    def patients(self) -> tuple[str, ...]:
        """Patients in evaluation order."""
        return tuple(dict.fromkeys(s.patient for s in self.slices))

    def method(self, key: str) -> Method:
        """The method called ``key``."""
        return next(m for m in self.methods if m.key == key)

    def summary(self, preset: str, method: str, patient: str | None = None) -> MetricSummary:
        """Mean ± std of PSNR and SSIM of ``method`` under ``preset``, over all slices or one patient's."""
        values = self.scores[preset][method]
        keep = np.array([patient is None or s.patient == patient for s in self.slices])
        psnr_mean, psnr_std, n = summarize(values["psnr"][keep])
        ssim_mean, ssim_std, _ = summarize(values["ssim"][keep])
        return MetricSummary(psnr_mean, psnr_std, ssim_mean, ssim_std, n)

    def roi_summary(self, method: str) -> dict[str, float] | None:
        """Mean bias, mean absolute bias and mean noise std (HU) of ``method`` over all ROIs; None without ROIs."""
        found = [r.stats for r in self.rois if r.method == method]
        if not found:
            return None
        return {
            "bias_hu": float(np.mean([s.bias for s in found])),
            "abs_bias_hu": float(np.mean([abs(s.bias) for s in found])),
            "noise_sd_hu": float(np.mean([s.pred_std for s in found])),
            "full_dose_noise_sd_hu": float(np.mean([s.target_std for s in found])),
            "n_rois": len(found),
        }


def evaluate(
    model: CLIPDenoiser,
    pairs: PairedSlices,
    presets: Sequence[str] = ("clipdenoising",),
    baselines: Sequence[str] | None = None,
    rois: Sequence[Sequence[int]] | None = None,
    roi_size: int | None = None,
    tv_weight: float = TV_WEIGHT,
    bm3d_sigma_hu: float = BM3D_SIGMA_HU,
    model_label: str = "CLIPDenoiser",
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    figure_slices: int = FIGURE_SLICES,
    progress: bool = False,
) -> EvaluationResult:
    """Score the model, the low-dose input and the baselines on every pair, under every preset.

    Args:
        model: a CT denoiser (``in_channels=1``); not modified.
        pairs: the slices, from :func:`pairs_from_manifest` or :func:`pairs_from_series`.
        presets: metric presets among :data:`CT_PRESETS`; one table each.
        baselines: among :data:`BASELINES`; None means :func:`default_baselines`, ``()`` none.
        rois: ``(index, y0, x0, h, w)`` boxes for HU fidelity; None finds them automatically.
        roi_size: side of automatic ROIs in pixels (default: 1/16 of the smaller slice side, at least 8).
        tv_weight, bm3d_sigma_hu: baseline parameters (see the module docstring).
        model_label: name of the model row.
        batch_size, device, precision: as for :func:`ldct_clip.inference.denoise_volume`.
        figure_slices: how many slices (evenly spread) keep their images for the report's figures.
        progress: show a progress bar over the slices.

    >>> import numpy as np
    >>> z = np.full((2, 32, 32), 40.0, np.float32)
    >>> pairs = PairedSlices(tuple(SlicePair("P1", float(i), "a", "b", (32, 32)) for i in range(2)),
    ...                      lambda i: (z[i] + 5.0, z[i]), "constant slices")
    >>> result = evaluate(CLIPDenoiser(encoder_weights="random"), pairs, baselines=(), rois=[], device="cpu")
    >>> round(result.summary("clipdenoising", "low_dose").psnr_mean, 2)  # 20·log10(4096 / 5)
    58.27
    """
    specs = ct_presets(presets)
    chosen = resolve_baselines(baselines)
    _check_parameter("tv_weight", tv_weight)
    _check_parameter("bm3d_sigma_hu", bm3d_sigma_hu)
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if len(pairs) == 0:
        raise InputError("no slice pairs to evaluate; check the data root, split and thickness")
    if isinstance(figure_slices, bool) or not isinstance(figure_slices, int) or figure_slices < 0:
        raise InputError(f"figure_slices={figure_slices!r}: must be an integer >= 0")
    given_rois = None if rois is None else [_check_roi(roi, pairs) for roi in rois]
    if roi_size is not None:
        smallest = min(min(s.shape) for s in pairs.slices)
        if isinstance(roi_size, bool) or not isinstance(roi_size, int) or not 2 <= roi_size <= smallest:
            raise InputError(f"roi_size={roi_size!r}: must be an integer from 2 to {smallest} (the slice size)")
    denoiser = VolumeDenoiser(model, batch_size=batch_size, device=device, precision=precision)

    methods = _methods(model_label, model.encoder_weight_source, chosen, tv_weight, bm3d_sigma_hu)
    run: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "low_dose": lambda low: low,
        "model": denoiser,
        "tv": lambda low: denoise_tv(low, tv_weight),
        "bm3d": lambda low: denoise_bm3d(low, bm3d_sigma_hu),
    }
    n = len(pairs)
    scores = {p.name: {m.key: {"psnr": np.zeros(n), "ssim": np.zeros(n)} for m in methods} for p in specs}
    seconds = {m.key: 0.0 for m in methods}
    measurements: list[RoiMeasurement] = []
    bin_centres = np.floor((np.arange(figure_slices) + 0.5) * n / max(figure_slices, 1)).astype(int)
    shown = set(bin_centres.tolist())
    figure_images: dict[int, dict[str, np.ndarray]] = {}
    chunk_size = max(CHUNK_SLICES, denoiser.batch_size)

    with tqdm(total=n, unit="slice", desc="evaluating", disable=not progress, dynamic_ncols=True) as bar:
        for _, indices in pairs.patient_runs():
            for start in range(0, len(indices), chunk_size):
                chunk = indices[start : start + chunk_size]
                low, full = _read_chunk(pairs, chunk)
                outputs = {}
                for m in methods:
                    started = time.perf_counter()
                    outputs[m.key] = run[m.key](low)
                    seconds[m.key] += time.perf_counter() - started
                for spec in specs:
                    for key, pred in outputs.items():
                        for metric, values in score_slices(pred, full, spec).items():
                            scores[spec.name][key][metric][chunk] = values
                chunk_rois = _chunk_rois(full, chunk, given_rois, roi_size)
                for (index, y0, x0, h, w), auto in chunk_rois:
                    local = index - chunk[0]
                    for key, pred in outputs.items():
                        stats = roi_stats(pred[local], full[local], [(y0, x0, h, w)])[0]
                        measurements.append(RoiMeasurement(key, (index, y0, x0, h, w), auto, stats))
                for local, index in enumerate(chunk):
                    if index in shown:
                        images = {key: pred[local].copy() for key, pred in outputs.items()}
                        figure_images[index] = {**images, "full_dose": full[local].copy()}
                bar.update(len(chunk))

    notes = []
    if baselines is None and not bm3d_available():
        notes.append("BM3D was not run: the optional package bm3d is not installed (pip install bm3d; "
                     "non-commercial licence).")
    if rois is None and not measurements:
        notes.append("No flat soft-tissue region (all pixels in [-100, 200] HU) was found for HU-fidelity ROIs.")
    return EvaluationResult(
        presets=specs,
        methods=methods,
        slices=pairs.slices,
        scores=scores,
        rois=tuple(measurements),
        figure_images=figure_images,
        seconds=seconds,
        data_description=pairs.description,
        split=pairs.split,
        published_comparable=pairs.published_comparable,
        encoder_weights=model.encoder_weight_source,
        settings={
            "baselines": list(chosen),
            "tv_weight": tv_weight,
            "tv_iterations": TV_ITERATIONS,
            "bm3d_sigma_hu": bm3d_sigma_hu,
            "rois": "given" if rois is not None else "automatic",
            "roi_size": roi_size,
            "chunk_slices": chunk_size,
            "batch_size": denoiser.batch_size,
            "device": str(denoiser.device),
            "precision": precision,
        },
        notes=notes,
    )


def _methods(label: str, encoder_weights: str, baselines: Sequence[str], tv_weight: float,
             bm3d_sigma_hu: float) -> tuple[Method, ...]:
    """Table rows in order: model, low-dose input, baselines."""
    model_label = f"{label} [random encoder]" if encoder_weights == "random" else label
    methods = [
        Method("model", model_label, "model", f"encoder weights: {encoder_weights}"),
        Method("low_dose", "Low-dose input", "input", "the quarter-dose image itself"),
    ]
    if "tv" in baselines:
        methods.append(Method("tv", "TV (Chambolle)", "baseline",
                              f"skimage denoise_tv_chambolle on (HU+1024)/4096, weight {tv_weight:g}, "
                              f"{TV_ITERATIONS} iterations"))
    if "bm3d" in baselines:
        methods.append(Method("bm3d", "BM3D", "baseline",
                              f"bm3d package on (HU+1024)/4096, sigma {bm3d_sigma_hu:g} HU"))
    return tuple(methods)


def _read_chunk(pairs: PairedSlices, chunk: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Stacked float32 HU (low, full) of the chunk's slices; one slice size per chunk (one patient)."""
    read = [pairs.read_pair(index) for index in chunk]
    sizes = {image.shape for pair in read for image in pair}
    if len(sizes) > 1:
        raise InputError(f"{pairs.slices[chunk[0]].full_source}: slices of one patient differ in size "
                         f"({', '.join(f'{y}x{x}' for y, x in sorted(sizes))}); evaluate series of one size")
    low = np.stack([np.asarray(pair[0], dtype=np.float32) for pair in read])
    full = np.stack([np.asarray(pair[1], dtype=np.float32) for pair in read])
    return low, full


def _check_roi(roi: Sequence[int], pairs: PairedSlices) -> tuple[int, int, int, int, int]:
    """A validated ``(index, y0, x0, h, w)`` box."""
    values = tuple(int(v) for v in roi)
    if len(values) != 5:
        raise InputError(f"ROI {roi!r}: need 5 integers index,y0,x0,h,w")
    index, y0, x0, h, w = values
    if not 0 <= index < len(pairs):
        raise InputError(f"ROI {values}: slice index {index} is outside 0..{len(pairs) - 1} (the evaluated slices)")
    rows, columns = pairs.slices[index].shape
    if h < 1 or w < 1 or h * w < 2 or y0 < 0 or x0 < 0 or y0 + h > rows or x0 + w > columns:
        raise InputError(f"ROI {values}: box outside the {rows}x{columns} slice or smaller than 2 pixels")
    return index, y0, x0, h, w


def _chunk_rois(
    full: np.ndarray, chunk: Sequence[int], given: list[tuple[int, int, int, int, int]] | None, roi_size: int | None
) -> list[tuple[tuple[int, int, int, int, int], bool]]:
    """The ROIs inside this chunk: the given ones, or the flattest soft-tissue box of its full-dose slices."""
    if given is not None:
        return [(roi, False) for roi in given if chunk[0] <= roi[0] <= chunk[-1]]
    size = roi_size or max(8, min(full.shape[1:]) // 16)
    try:
        [(z, y0, x0, h, w)] = find_flat_rois(full, size=size, n=1)
    except InputError:  # no flat soft tissue in these slices (or the size does not fit): no ROI here
        return []
    return [((chunk[z], y0, x0, h, w), True)]
