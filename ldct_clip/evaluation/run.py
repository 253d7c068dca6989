"""The evaluation run: every model, the low-dose input and the baselines scored on the same slices.

:func:`evaluate` reads the slices chunk by chunk (one patient at a time), runs each method on the same
low-dose chunk, scores every output under each requested metric preset of :mod:`ldct_clip.metrics`,
measures HU fidelity in flat regions, times each method, keeps the images of a few slices for the figures,
and finally compares the methods slice by slice (:mod:`ldct_clip.evaluation.statistics`). Memory stays
bounded by a chunk of slices, whatever the number of slices.

Method keys (the ``method`` column of ``metrics.csv``): the first model is ``model`` (the reference of the
paired statistics), further models are keyed by their method name (``noise2sim``, ``redcnn``, ...; ``_2``,
``_3`` appended when a name repeats), then ``low_dose`` and the baselines ``tv``, ``bm3d``.

Noise level: per patient, the noise SD of the low-dose and of the full-dose slices is estimated with
:func:`ldct_clip.noise_estimation.estimate_noise_sd` (``flat-regions``: the peak of the local SD in soft
tissue) on up to :data:`ldct_clip.noise_estimation.MAX_SLICES` slices spread over the patient's evaluated
slices, and compared with the noise σ each model was trained with
(:func:`ldct_clip.noise_estimation.compare_with_training`): a model trained at a very different noise may
score below its input, and the report says so at its top.

HU fidelity: mean-HU bias and noise standard deviation of every method in flat regions (ROIs). ROIs are
given as ``(index, y0, x0, h, w)`` boxes, ``index`` counting the evaluated slices (the ``index`` column of
``metrics.csv``), or found automatically: in each run of :data:`CHUNK_SLICES` slices of one patient (the
largest batch size when larger), the flattest soft-tissue box of the full-dose images
(:func:`ldct_clip.metrics.find_flat_rois`: every pixel in [-100, 200] HU, lowest full-dose standard
deviation; side 1/16 of the slice, 32 pixels at 512×512), so the ROIs spread along z.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ldct_clip.errors import InputError
from ldct_clip.evaluation.baselines import (
    BM3D_SIGMA_HU,
    TV_ITERATIONS,
    TV_WEIGHT,
    bm3d_available,
    check_parameter,
    denoise_bm3d,
    denoise_tv,
    resolve_baselines,
)
from ldct_clip.evaluation.pairs import PairedSlices, SlicePair
from ldct_clip.evaluation.statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, Comparison, paired_comparisons
from ldct_clip.inference import PRECISIONS, VolumeDenoiser
from ldct_clip.methods import get_method
from ldct_clip.metrics import (
    CT_PRESETS,
    MetricPreset,
    RoiStats,
    find_flat_rois,
    get_preset,
    roi_stats,
    score_slices,
    summarize,
)
from ldct_clip.models.checkpoint import TRAINING_NOISE_KEY, load_checkpoint, read_checkpoint_metadata
from ldct_clip.models.encoder import RANDOM
from ldct_clip.noise_estimation import MAX_SLICES as NOISE_SLICES
from ldct_clip.noise_estimation import NoiseEstimate, compare_with_training, estimate_noise_sd

__all__ = [
    "CHUNK_SLICES",
    "CT_PRESETS",
    "FIGURE_SLICES",
    "EvaluationResult",
    "Method",
    "MetricSummary",
    "ModelEntry",
    "NoiseLevel",
    "RoiMeasurement",
    "ct_presets",
    "default_label",
    "evaluate",
    "load_model_entry",
    "worse_than_input",
]

"""Metric presets that apply to CT (see :data:`ldct_clip.metrics.PRESETS`)."""
CHUNK_SLICES = 16
"""Slices read and processed together (more when a batch size is larger); one automatic ROI per chunk."""
FIGURE_SLICES = 3
"""Slices shown side by side in the report's figures by default."""
VIEWER_SLICES = 8
"""Slices in the report's interactive viewer by default. Each keeps one float32 image per method until the
report is written (about 7 MB per slice at 512×512 with four models and two baselines) and adds about 0.3 MB
per method to report.html."""
FIRST_MODEL = "model"
"""Key of the first model: the reference of the paired statistics."""
LOW_DOSE = "low_dose"
"""Key of the low-dose input's row."""
FULL_DOSE = "full_dose"
"""Key of the full-dose images kept for the figures (not a scored method)."""
DEFAULT_METHOD = "clipdenoising"
"""The method of a model that names none (models written before the method registry)."""


@dataclass(frozen=True)
class ModelEntry:
    """A model to evaluate.

    Attributes:
        label: its row in the tables (unique within one evaluation).
        model: anything :class:`ldct_clip.inference.VolumeDenoiser` accepts; its ``method`` attribute names the
            method (``clipdenoising`` when absent).
        source_path: the checkpoint it was loaded from (recorded in the report; a report folder may not hold it).
        training_noise_sigma: the Gaussian noise σ it was trained with, in the config's 1/255 units of the model
            scale (CLIPDenoising's ``data.noise_sigma``), or None when unknown or not trained on added noise.
    """

    label: str
    model: Any
    source_path: str | os.PathLike[str] | None = None
    training_noise_sigma: float | None = None


def default_label(method: str, checkpoint: str | os.PathLike[str]) -> str:
    """``"<method title> (<file name>)"``, the row label of a checkpoint given without one (the title from
    the method registry, :mod:`ldct_clip.methods`).

    >>> default_label("noise2sim", "runs/n2s/best.safetensors")
    'Noise2Sim (best.safetensors)'
    """
    return f"{get_method(method).title} ({Path(checkpoint).name})"


def load_model_entry(checkpoint: str | os.PathLike[str], label: str | None = None) -> ModelEntry:
    """Load a checkpoint of any method as a :class:`ModelEntry`, with its training noise σ from the metadata.

    ``label`` defaults to :func:`default_label`. An RGB (natural-image) checkpoint is refused.
    """
    path = Path(checkpoint)
    metadata = read_checkpoint_metadata(path)  # refuses a missing or foreign file with one line
    model = load_checkpoint(path)
    channels = getattr(model, "in_channels", 1)
    if channels != 1:
        raise InputError(f"{path}: checkpoint is for RGB images (in_channels={channels}), not CT; "
                         "pass a checkpoint trained on CT")
    sigma = metadata.get(TRAINING_NOISE_KEY)
    try:
        noise_sigma = None if sigma is None else float(sigma)
    except ValueError:
        raise InputError(f"{path}: metadata training_noise_sigma={sigma!r} is not a number; the checkpoint is "
                         "damaged: pass one written by ldct_clip") from None
    method = str(getattr(model, "method", DEFAULT_METHOD))
    return ModelEntry(label or default_label(method, path), model, path, noise_sigma)


@dataclass(frozen=True)
class Method:
    """One row of the tables.

    Attributes:
        key: column value in metrics.csv (see the module docstring).
        label: the row's name.
        kind: ``"model"``, ``"input"`` or ``"baseline"``.
        details: its parameters, one line.
        method: the registry name of a model (``clipdenoising``, ``noise2sim``, ...), None for the others.
        source: the checkpoint a model was loaded from, if known.
        encoder_weights: where a CLIPDenoiser's encoder came from (``random`` for a random one), else None.
        training_noise_sigma: see :class:`ModelEntry`.
    """

    key: str
    label: str
    kind: str
    details: str
    method: str | None = None
    source: str | None = None
    encoder_weights: str | None = None
    training_noise_sigma: float | None = None

    @property
    def encoder_is_random(self) -> bool:
        """Whether this model's encoder was randomly initialised (its numbers then say nothing about CLIP)."""
        return self.encoder_weights == RANDOM


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


@dataclass(frozen=True)
class NoiseLevel:
    """The estimated noise SD of one patient's low-dose and full-dose slices (None with ``note`` when it failed)."""

    patient: str
    low_dose: NoiseEstimate | None
    full_dose: NoiseEstimate | None
    note: str | None = None


@dataclass
class EvaluationResult:
    """Everything a report needs: per-slice scores of every method under every preset, ROI statistics,
    paired comparisons, the images of a few slices, timings and the settings that produced them.

    ``scores[preset][method]["psnr" | "ssim"]`` holds one value per slice of ``slices``; ``images`` maps a
    kept slice index to ``{"low_dose", "full_dose", <method key>...}`` HU images, of which ``figure_indices``
    become figures and ``viewer_indices`` the interactive viewer; ``comparisons`` holds each method against
    the first model and against the low-dose input; ``noise`` the noise level of each patient.
    """

    presets: tuple[MetricPreset, ...]
    methods: tuple[Method, ...]
    slices: tuple[SlicePair, ...]
    scores: dict[str, dict[str, dict[str, np.ndarray]]]
    rois: tuple[RoiMeasurement, ...]
    images: dict[int, dict[str, np.ndarray]]
    figure_indices: tuple[int, ...]
    viewer_indices: tuple[int, ...]
    seconds: dict[str, float]
    comparisons: tuple[Comparison, ...]
    noise: tuple[NoiseLevel, ...]
    data_description: str
    split: str | None
    published_comparable: bool
    settings: dict[str, object]
    sources: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> tuple[Method, ...]:
        """The model rows, first model first."""
        return tuple(m for m in self.methods if m.kind == "model")

    @property
    def encoder_weights(self) -> str | None:
        """Where the first model's encoder came from (None when it has no CLIP encoder)."""
        return self.models[0].encoder_weights

    @property
    def encoder_is_random(self) -> bool:
        """Whether any model's encoder was randomly initialised (so its numbers say nothing about CLIP)."""
        return any(m.encoder_is_random for m in self.models)

    @property
    def figure_images(self) -> dict[int, dict[str, np.ndarray]]:
        """The images of the slices shown as figures."""
        return {index: self.images[index] for index in self.figure_indices}

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

    def worse_metrics(self, preset: str, method: str, patient: str | None = None) -> tuple[str, ...]:
        """``"psnr"`` and/or ``"ssim"`` when ``method``'s mean is below the low-dose input's (all or one patient)."""
        if method == LOW_DOSE:
            return ()
        mine, low = self.summary(preset, method, patient), self.summary(preset, LOW_DOSE, patient)
        return tuple(metric for metric in ("psnr", "ssim")
                     if getattr(mine, f"{metric}_mean") < getattr(low, f"{metric}_mean"))

    def noise_warnings(self) -> list[str]:
        """One line per model and patient whose training noise differs from the low-dose noise by more than
        :data:`ldct_clip.noise_estimation.NOISE_MISMATCH_FACTOR` (the text of
        :func:`~ldct_clip.noise_estimation.compare_with_training`)."""
        lines = []
        for model in self.models:
            for level in self.noise:
                if model.training_noise_sigma is None or level.low_dose is None:
                    continue
                warning = compare_with_training(level.low_dose.sd_hu, model.training_noise_sigma)
                if warning is not None:
                    lines.append(f"{model.label}, patient {level.patient}: {warning}")
        return lines

    def comparison(self, preset: str, metric: str, method: str, reference: str) -> Comparison:
        """The paired comparison of ``method`` against ``reference``."""
        return next(c for c in self.comparisons
                    if (c.preset, c.metric, c.method, c.reference) == (preset, metric, method, reference))

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


def worse_than_input(result: EvaluationResult) -> list[str]:
    """One line per method, preset and scope (overall; each patient when there are several) in which the
    method's mean PSNR or SSIM is below the low-dose input's, saying by how much.

    The report prints these lines at its top; a terminal summary can print the same.
    """
    scopes: list[str | None] = [None, *(result.patients if len(result.patients) > 1 else ())]
    lines = []
    for spec in result.presets:
        for method in result.methods:
            for patient in scopes:
                worse = result.worse_metrics(spec.name, method.key, patient)
                if not worse:
                    continue
                mine, low = result.summary(spec.name, method.key, patient), result.summary(spec.name, LOW_DOSE, patient)
                parts = []
                if "psnr" in worse:
                    parts.append(f"PSNR {mine.psnr_mean - low.psnr_mean:+.2f} dB "
                                 f"({mine.psnr_mean:.2f} vs {low.psnr_mean:.2f})")
                if "ssim" in worse:
                    parts.append(f"SSIM {mine.ssim_mean - low.ssim_mean:+.4f} "
                                 f"({mine.ssim_mean:.4f} vs {low.ssim_mean:.4f})")
                where = "overall" if patient is None else f"for patient {patient}"
                lines.append(f"{method.label} is worse than the low-dose input under preset {spec.name} {where}: "
                             + "; ".join(parts))
    return lines


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


def evaluate(
    models: ModelEntry | Sequence[ModelEntry | tuple[str, Any]] | Any,
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
    viewer_slices: int = VIEWER_SLICES,
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    progress: bool = False,
    steps: int | None = None,
) -> EvaluationResult:
    """Score every model, the low-dose input and the baselines on every pair, under every preset.

    Args:
        models: the models, as :class:`ModelEntry` items or ``(label, model)`` pairs, the first being the
            reference of the paired statistics; or one model alone (labelled ``model_label``). None is modified.
        pairs: the slices, from :func:`~ldct_clip.evaluation.pairs_from_manifest` or
            :func:`~ldct_clip.evaluation.pairs_from_series`.
        presets: metric presets among :data:`CT_PRESETS`; one table each.
        baselines: among :data:`~ldct_clip.evaluation.BASELINES`; None means
            :func:`~ldct_clip.evaluation.default_baselines`, ``()`` none.
        rois: ``(index, y0, x0, h, w)`` boxes for HU fidelity; None finds them automatically.
        roi_size: side of automatic ROIs in pixels (default: 1/16 of the smaller slice side, at least 8).
        tv_weight, bm3d_sigma_hu: baseline parameters (see :mod:`ldct_clip.evaluation.baselines`).
        model_label: the label of a model passed alone.
        batch_size, device, precision: as for :class:`ldct_clip.inference.VolumeDenoiser` (every model).
        figure_slices: how many slices (evenly spread) keep their images for the report's figures.
        viewer_slices: how many slices (evenly spread) keep their images for the report's interactive viewer
            (see :data:`VIEWER_SLICES` for the memory this takes); 0 leaves the viewer out.
        bootstrap_resamples, seed: of the paired confidence intervals (:mod:`ldct_clip.evaluation.statistics`).
        progress: show a progress bar over the slices.
        steps: sampler steps for models that sample (ScoreSDE-CT); None: each model's own setting.

    >>> import numpy as np
    >>> from ldct_clip import CLIPDenoiser
    >>> z = np.full((2, 32, 32), 40.0, np.float32)
    >>> pairs = PairedSlices(tuple(SlicePair("P1", float(i), "a", "b", (32, 32)) for i in range(2)),
    ...                      lambda i: (z[i] + 5.0, z[i]), "constant slices")
    >>> result = evaluate(CLIPDenoiser(encoder_weights="random"), pairs, baselines=(), rois=[], device="cpu")
    >>> round(result.summary("clipdenoising", "low_dose").psnr_mean, 2)  # 20·log10(4096 / 5)
    58.27
    """
    entries = _entries(models, model_label)
    specs = ct_presets(presets)
    chosen = resolve_baselines(baselines)
    check_parameter("tv_weight", tv_weight)
    check_parameter("bm3d_sigma_hu", bm3d_sigma_hu)
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if len(pairs) == 0:
        raise InputError("no slice pairs to evaluate; check the data root, split and thickness")
    _check_count("figure_slices", figure_slices, 0)
    _check_count("viewer_slices", viewer_slices, 0)
    _check_count("bootstrap_resamples", bootstrap_resamples, 1)
    given_rois = None if rois is None else [_check_roi(roi, pairs) for roi in rois]
    if roi_size is not None:
        smallest = min(min(s.shape) for s in pairs.slices)
        if isinstance(roi_size, bool) or not isinstance(roi_size, int) or not 2 <= roi_size <= smallest:
            raise InputError(f"roi_size={roi_size!r}: must be an integer from 2 to {smallest} (the slice size)")

    methods = _methods(entries, chosen, tv_weight, bm3d_sigma_hu)
    denoisers = [VolumeDenoiser(entry.model, batch_size=batch_size, device=device, precision=precision, steps=steps)
                 for entry in entries]
    run: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        method.key: denoiser for method, denoiser in zip(methods, denoisers)  # models come first
    }
    run |= {LOW_DOSE: lambda low: low, "tv": lambda low: denoise_tv(low, tv_weight),
            "bm3d": lambda low: denoise_bm3d(low, bm3d_sigma_hu)}
    n = len(pairs)
    scores = {p.name: {m.key: {"psnr": np.zeros(n), "ssim": np.zeros(n)} for m in methods} for p in specs}
    seconds = {m.key: 0.0 for m in methods}
    measurements: list[RoiMeasurement] = []
    figures, viewed = _spread(n, figure_slices), _spread(n, viewer_slices)
    shown = figures | viewed
    images: dict[int, dict[str, np.ndarray]] = {}
    noise: list[NoiseLevel] = []
    chunk_size = max(CHUNK_SLICES, *(d.batch_size for d in denoisers))

    with tqdm(total=n, unit="slice", desc="evaluating", disable=not progress, dynamic_ncols=True) as bar:
        for patient, indices in pairs.patient_runs():
            for_noise = set(_spread(len(indices), NOISE_SLICES))
            noise_low, noise_full = [], []
            for start in range(0, len(indices), chunk_size):
                chunk = indices[start : start + chunk_size]
                low, full = _read_chunk(pairs, chunk)
                kept_for_noise = [local for local in range(len(chunk)) if start + local in for_noise]
                noise_low.append(low[kept_for_noise])
                noise_full.append(full[kept_for_noise])
                outputs = {}
                for m in methods:
                    started = time.perf_counter()
                    outputs[m.key] = run[m.key](low)
                    seconds[m.key] += time.perf_counter() - started
                for spec in specs:
                    for key, pred in outputs.items():
                        for metric, values in score_slices(pred, full, spec).items():
                            scores[spec.name][key][metric][chunk] = values
                for (index, y0, x0, h, w), auto in _chunk_rois(full, chunk, given_rois, roi_size):
                    local = index - chunk[0]
                    for key, pred in outputs.items():
                        stats = roi_stats(pred[local], full[local], [(y0, x0, h, w)])[0]
                        measurements.append(RoiMeasurement(key, (index, y0, x0, h, w), auto, stats))
                for local, index in enumerate(chunk):
                    if index in shown:
                        kept = {key: pred[local].copy() for key, pred in outputs.items()}
                        images[index] = {**kept, FULL_DOSE: full[local].copy()}
                bar.update(len(chunk))
            noise.append(_noise_level(patient, np.concatenate(noise_low), np.concatenate(noise_full)))

    notes = []
    if baselines is None and not bm3d_available():
        notes.append("BM3D was not run: the optional package bm3d is not installed (pip install bm3d; "
                     "non-commercial licence).")
    if rois is None and not measurements:
        notes.append("No flat soft-tissue region (all pixels in [-100, 200] HU) was found for HU-fidelity ROIs.")
    comparisons = paired_comparisons(scores, [s.patient for s in pairs.slices], [m.key for m in methods],
                                     (FIRST_MODEL, LOW_DOSE), bootstrap_resamples, seed)
    return EvaluationResult(
        presets=specs,
        methods=methods,
        slices=pairs.slices,
        scores=scores,
        rois=tuple(measurements),
        images=images,
        figure_indices=tuple(sorted(figures)),
        viewer_indices=tuple(sorted(viewed)),
        seconds=seconds,
        comparisons=comparisons,
        noise=tuple(noise),
        data_description=pairs.description,
        split=pairs.split,
        published_comparable=pairs.published_comparable,
        settings={
            "baselines": list(chosen),
            "tv_weight": tv_weight,
            "tv_iterations": TV_ITERATIONS,
            "bm3d_sigma_hu": bm3d_sigma_hu,
            "rois": "given" if rois is not None else "automatic",
            "roi_size": roi_size,
            "chunk_slices": chunk_size,
            "batch_size": denoisers[0].batch_size,
            "device": str(denoisers[0].device),
            "precision": precision,
            "bootstrap_resamples": bootstrap_resamples,
            "bootstrap_seed": seed,
        },
        sources=(*pairs.sources, *(str(e.source_path) for e in entries if e.source_path is not None)),
        notes=notes,
    )


def _entries(models: ModelEntry | Sequence[ModelEntry | tuple[str, Any]] | Any, label: str) -> list[ModelEntry]:
    """The models as :class:`ModelEntry` items with unique labels."""
    if isinstance(models, ModelEntry):
        entries = [models]
    elif isinstance(models, Sequence) and not isinstance(models, str):
        entries = [item if isinstance(item, ModelEntry) else ModelEntry(*item) for item in models]
    else:
        entries = [ModelEntry(label, models)]
    if not entries:
        raise InputError("no models to evaluate; pass at least one model")
    labels = [entry.label for entry in entries]
    repeated = sorted({name for name in labels if labels.count(name) > 1})
    if repeated:
        raise InputError(f"model label(s) {', '.join(map(repr, repeated))} given more than once; "
                         "give each model its own label")
    return entries


def _methods(entries: Sequence[ModelEntry], baselines: Sequence[str], tv_weight: float,
             bm3d_sigma_hu: float) -> tuple[Method, ...]:
    """Table rows in order: the models, the low-dose input, the baselines."""
    methods = []
    taken = {FIRST_MODEL, LOW_DOSE, FULL_DOSE, *baselines}
    for number, entry in enumerate(entries):
        name = str(getattr(entry.model, "method", DEFAULT_METHOD))
        key = FIRST_MODEL if number == 0 else _unique_key(name, taken)
        taken.add(key)
        weights = getattr(entry.model, "encoder_weight_source", None)
        label = f"{entry.label} [random encoder]" if weights == RANDOM else entry.label
        source = None if entry.source_path is None else str(entry.source_path)
        details = [f"method {name}"]
        if source is not None:
            details.append(f"checkpoint {Path(source).name}")
        if weights is not None:
            details.append(f"encoder weights: {weights}")
        if entry.training_noise_sigma is not None:
            details.append(f"trained with noise sigma {entry.training_noise_sigma:g}/255")
        methods.append(Method(key, label, "model", ", ".join(details), name, source, weights,
                              entry.training_noise_sigma))
    methods.append(Method(LOW_DOSE, "Low-dose input", "input", "the quarter-dose image itself"))
    if "tv" in baselines:
        methods.append(Method("tv", "TV (Chambolle)", "baseline",
                              f"skimage denoise_tv_chambolle on (HU+1024)/4096, weight {tv_weight:g}, "
                              f"{TV_ITERATIONS} iterations"))
    if "bm3d" in baselines:
        methods.append(Method("bm3d", "BM3D", "baseline",
                              f"bm3d package on (HU+1024)/4096, sigma {bm3d_sigma_hu:g} HU"))
    return tuple(methods)


def _unique_key(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... when taken."""
    key, number = name, 1
    while key in taken:
        number += 1
        key = f"{name}_{number}"
    return key


def _spread(n: int, count: int) -> set[int]:
    """``count`` slice indices at the centres of equal bins over ``n`` slices (all of them when count >= n)."""
    return set(np.floor((np.arange(count) + 0.5) * n / max(count, 1)).astype(int).tolist())


def _noise_level(patient: str, low: np.ndarray, full: np.ndarray) -> NoiseLevel:
    """Noise SD of a patient's low- and full-dose slices; a failed estimate becomes a note, not an error."""
    found: list[NoiseEstimate | None] = []
    notes = []
    for what, hu in (("low-dose", low), ("full-dose", full)):
        try:
            found.append(estimate_noise_sd(hu, method="flat-regions"))  # spread slices: no adjacent-slice check
        except InputError as err:
            found.append(None)
            notes.append(f"{what} noise of {patient} not measured: {err}")
    return NoiseLevel(patient, found[0], found[1], "; ".join(notes) or None)


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name}={value!r}: must be an integer >= {minimum}")


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
