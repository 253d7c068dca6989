"""Turn an :class:`~ldct_clip.evaluation.EvaluationResult` into a report folder.

The folder holds ``report.md``, a self-contained ``report.html`` (figures embedded as base64 PNG, and an
interactive viewer of the kept slices, :mod:`ldct_clip.viewer`),
``metrics.csv`` (one row per slice and method, one PSNR and SSIM column per preset), ``summary.json``,
``figures/*.png`` and, for AAPM-Mayo data, the ``manifest.csv`` that was evaluated (reused as a scan cache
by a later run with ``--overwrite`` into the same folder; pass it as ``--data-root`` to reuse it anywhere).
The folder is built under a temporary name beside the target and renamed into place, so an interrupted run
never leaves a partial report; an existing report is replaced only with ``overwrite``, and never when it
holds a file the evaluation read (a checkpoint, a series, the data).

Markdown and HTML are rendered from one list of blocks (:mod:`ldct_clip.document`), so the two always say
the same. The report opens
with its warnings (a random encoder; any method worse than its low-dose input, per preset and patient; a
training noise far from the series' noise);
every PSNR/SSIM table is headed by its preset, window, data_range and slice count, marks the rows worse
than the input, and is followed by the paired differences with confidence intervals; published rows appear
only under the preset they were measured with, marked as quoted.
"""

from __future__ import annotations

import csv
import json
import os
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import ndimage

from ldct_clip.atomic import staged_folder
from ldct_clip.data.hu import WINDOWS
from ldct_clip.data.mayo import MANIFEST_CACHE, Manifest
from ldct_clip.document import FIGURE_FOLDER, Block, finite_json, png_bytes, to_html, to_markdown
from ldct_clip.errors import InputError
from ldct_clip.evaluation.published import published_rows
from ldct_clip.evaluation.run import FIRST_MODEL, FULL_DOSE, LOW_DOSE, EvaluationResult, MetricSummary, worse_than_input
from ldct_clip.evaluation.statistics import CONFIDENCE, Comparison, PairedDifference
from ldct_clip.metrics import MetricPreset
from ldct_clip.noise_estimation import NOISE_MISMATCH_FACTOR, sigma_line_value, sigma_to_hu
from ldct_clip.viewer import Pane, SliceLabel, viewer_html

__all__ = ["REPORT_FILES", "check_output", "report_warnings", "summary_dict", "write_report"]

REPORT_FILES: tuple[str, ...] = ("report.md", "report.html", "metrics.csv", "summary.json")
"""Files every report folder holds (besides ``figures/``)."""
DISPLAY_WINDOW = WINDOWS["display"]
"""HU window of the images in the figures."""
QUOTED_MARK = "†"
WORSE_MARK = "worse than input"
"""Marker in the tables of a row whose mean is below the low-dose input's."""

_SSIM_WINDOWS = {"same_zero": "11×11 Gaussian (σ 1.5) zero-padded, mean over the whole slice",
                 "valid": "11×11 Gaussian (σ 1.5), mean over the valid window positions"}
_IMAGE_INCHES = 2.6
_METRIC_DIGITS = {"psnr": 2, "ssim": 4}


# --- folder handling --------------------------------------------------------------------------------------


def check_output(output: str | os.PathLike[str], overwrite: bool = False,
                 inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Refuse a report folder that exists (unless ``overwrite``), is a file, lies inside an input folder, or
    holds (or is) anything the evaluation reads, which replacing it would delete.

    Called before any work so a wrong ``--output`` costs nothing; :func:`write_report` checks again.

    >>> check_output("/tmp/report", overwrite=True, inputs=["/tmp/report/model.safetensors"])
    Traceback (most recent call last):
    ldct_clip.errors.InputError: /tmp/report: holds the input /tmp/report/model.safetensors, which replacing the \
report would delete; choose another --output
    """
    target = Path(output)
    resolved = target.expanduser().resolve()
    for source in inputs:
        source_path = Path(source).expanduser().resolve()
        if source_path == resolved or source_path.is_relative_to(resolved):
            raise InputError(f"{target}: holds the input {source}, which replacing the report would delete; "
                             "choose another --output")
        if source_path.is_dir() and resolved.is_relative_to(source_path):
            raise InputError(f"{target}: inside the input {source}; write the report outside the data folder")
    if target.exists() and not target.is_dir():
        raise InputError(f"{target}: exists and is not a folder; choose another --output")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: report folder already exists; choose another --output or pass --overwrite")
    return target


def write_report(
    result: EvaluationResult,
    output: str | os.PathLike[str],
    overwrite: bool = False,
    manifest: Manifest | None = None,
    command: str | None = None,
) -> Path:
    """Write the report folder for ``result`` atomically; return its path.

    Args:
        result: from :func:`ldct_clip.evaluation.evaluate`.
        output: the report folder to create; it may not hold anything the evaluation read
            (``result.sources``, the manifest's data root).
        overwrite: replace an existing report folder.
        manifest: the AAPM-Mayo manifest evaluated, kept as ``manifest.csv``.
        command: the command line that produced the result, recorded in the report.
    """
    inputs = [*result.sources, *([manifest.root] if manifest is not None else [])]
    target = check_output(output, overwrite, inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(target, before_move=lambda: check_output(target, overwrite, inputs)) as temp:
        (temp / FIGURE_FOLDER).mkdir()
        figures = _render_figures(result)
        for name, png in figures.items():
            (temp / FIGURE_FOLDER / name).write_bytes(png)
        summary = summary_dict(result, command)
        _write_metrics_csv(result, temp / "metrics.csv")
        (temp / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False), encoding="utf-8")
        blocks = _blocks(result, summary, list(figures), _viewer(result))
        (temp / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
        (temp / "report.html").write_text(to_html(blocks, figures), encoding="utf-8")
        if manifest is not None:
            manifest.save(temp / MANIFEST_CACHE)
    return target


def report_warnings(result: EvaluationResult) -> list[str]:
    """The warnings at the top of the report, one line each: random encoders, methods worse than their input,
    training noise far from the series' noise."""
    lines = [f"{m.label}: the encoder was randomly initialised (encoder weights: random), not loaded from CLIP. "
             "These numbers do not measure CLIPDenoising; use them only to check the pipeline."
             for m in result.models if m.encoder_is_random]
    return lines + worse_than_input(result) + result.noise_warnings()


def _viewer(result: EvaluationResult) -> str | None:
    """The interactive viewer of the kept slices (low dose, each method, full dose), or None without slices."""
    indices = list(result.viewer_indices)
    if not indices or len({result.images[i][FULL_DOSE].shape for i in indices}) > 1:
        return None  # no slices kept, or patients of different slice sizes: one viewer needs one size
    keys = [LOW_DOSE, *(m.key for m in result.methods if m.key != LOW_DOSE), FULL_DOSE]
    labels = {m.key: m.label for m in result.methods} | {FULL_DOSE: "Full-dose reference"}
    panes = [Pane(key, labels[key], np.stack([result.images[i][key] for i in indices])) for key in keys]
    slices = [SliceLabel(i, result.slices[i].position_mm, result.slices[i].patient) for i in indices]
    metrics = {spec.name: {m.key: {metric: result.scores[spec.name][m.key][metric][indices].tolist()
                                   for metric in ("psnr", "ssim")} for m in result.methods}
               for spec in result.presets}
    return viewer_html(panes, slices, metrics, f"{len(indices)} of {len(result.slices)} slices", reference=FULL_DOSE)


# --- data files ---------------------------------------------------------------------------------------------


def _write_metrics_csv(result: EvaluationResult, path: Path) -> None:
    """One row per slice and method; floats written in full precision."""
    metric_columns = [f"{metric}_{p.name}" for p in result.presets for metric in ("psnr", "ssim")]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "patient", "position_mm", "method", "label", *metric_columns, "low_source",
                         "full_source"])
        for index, pair in enumerate(result.slices):
            for method in result.methods:
                values = [float(result.scores[p.name][method.key][metric][index])
                          for p in result.presets for metric in ("psnr", "ssim")]
                writer.writerow([index, pair.patient, pair.position_mm, method.key, method.label, *values,
                                 pair.low_source, pair.full_source])


def summary_dict(result: EvaluationResult, command: str | None = None) -> dict[str, object]:
    """Everything the tables show, as JSON-ready data (non-finite numbers become null)."""
    from ldct_clip import __version__

    presets = {}
    for spec in result.presets:
        methods = {}
        for method in result.methods:
            overall = result.summary(spec.name, method.key)
            methods[method.key] = {
                "label": method.label,
                "kind": method.kind,
                **_summary_fields(overall),
                "worse_than_input": list(result.worse_metrics(spec.name, method.key)),
                "per_patient": {p: {**_summary_fields(result.summary(spec.name, method.key, p)),
                                    "worse_than_input": list(result.worse_metrics(spec.name, method.key, p))}
                                for p in result.patients},
            }
        presets[spec.name] = {
            **_preset_fields(spec),
            "slices": len(result.slices),
            "methods": methods,
            "paired": [_comparison_fields(c) for c in result.comparisons if c.preset == spec.name],
            "published": [{"method": r.method, "psnr": r.psnr, "ssim": r.ssim, "source": r.source}
                          for r in published_rows(spec.name)],
        }
    n = len(result.slices)
    first = result.models[0]
    return finite_json({
        "ldct_clip_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "data": result.data_description,
        "split": result.split,
        "published_comparable": result.published_comparable,
        "slices": n,
        "patients": list(result.patients),
        "warnings": report_warnings(result),
        "worse_than_input": worse_than_input(result),
        "model": {"label": first.label, "method": first.method, "encoder_weights": first.encoder_weights,
                  "encoder_is_random": first.encoder_is_random},
        "methods": [{"key": m.key, "label": m.label, "kind": m.kind, "details": m.details, "method": m.method,
                     "source": m.source, "encoder_weights": m.encoder_weights,
                     "training_noise_sigma": m.training_noise_sigma} for m in result.methods],
        "noise_level": _noise_fields(result),
        "settings": result.settings,
        "seconds_per_slice": {key: s / n for key, s in result.seconds.items() if key != LOW_DOSE},
        "presets": presets,
        "hu_fidelity": {
            "rois": [{"method": r.method, "roi": list(r.roi), "auto": r.auto, "bias_hu": r.stats.bias,
                      "noise_sd_hu": r.stats.pred_std, "full_dose_noise_sd_hu": r.stats.target_std,
                      "pred_mean_hu": r.stats.pred_mean, "full_dose_mean_hu": r.stats.target_mean,
                      "n_pixels": r.stats.n_pixels} for r in result.rois],
            "methods": {m.key: result.roi_summary(m.key) for m in result.methods},
        },
        "notes": result.notes,
    })


def _noise_fields(result: EvaluationResult) -> dict[str, object]:
    patients = {}
    for level in result.noise:
        low, full = level.low_dose, level.full_dose
        patients[level.patient] = {
            "low_dose_sd_hu": None if low is None else low.sd_hu,
            "full_dose_sd_hu": None if full is None else full.sd_hu,
            "matching_noise_sigma": None if low is None else float(sigma_line_value(low.sd_hu)),
            "low_dose_estimate": None if low is None else low.description,
            "full_dose_estimate": None if full is None else full.description,
            "note": level.note,
        }
    models = {m.key: {"training_noise_sigma": m.training_noise_sigma,
                      "training_noise_sd_hu": None if m.training_noise_sigma is None
                      else sigma_to_hu(m.training_noise_sigma)} for m in result.models}
    return {"method": "flat-regions", "mismatch_factor": NOISE_MISMATCH_FACTOR, "patients": patients,
            "models": models, "warnings": result.noise_warnings()}


def _summary_fields(summary: MetricSummary) -> dict[str, float | int]:
    return {name: getattr(summary, name) for name in ("psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "n")}


def _comparison_fields(comparison: Comparison) -> dict[str, object]:
    d = comparison.difference
    return {"method": comparison.method, "reference": comparison.reference, "metric": comparison.metric,
            "mean_difference": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "confidence": CONFIDENCE,
            "n": d.n, "resampled": d.resampled, "units": d.units, "p_value": d.p_value, "p_note": d.p_note,
            "note": d.note}


def _preset_fields(spec: MetricPreset) -> dict[str, object]:
    return {"window": list(spec.window), "data_range": spec.data_range, "ssim_padding": spec.ssim_padding,
            "scale_to_unit": spec.scale_to_unit, "description": spec.description}


# --- document blocks ---------------------------------------------------------------------------------------


def _blocks(result: EvaluationResult, summary: dict[str, object], figure_names: list[str],
            viewer: str | None = None) -> list[Block]:
    n = len(result.slices)
    patients = result.patients
    labels = ", ".join(m.label for m in result.models)
    blocks = [Block("heading", f"Evaluation report: {labels}", level=1)]
    warnings = summary["warnings"]
    assert isinstance(warnings, list)
    blocks += [Block("warning", line) for line in warnings]
    blocks.append(Block("list", items=(
        f"Data: {result.data_description}",
        f"Slices: {n} from {len(patients)} patient(s) ({', '.join(patients)})",
        *(f"Model: {m.label}; {m.details}" for m in result.models),
        f"Device: {result.settings['device']}, precision {result.settings['precision']}, "
        f"batch size {result.settings['batch_size']}",
        f"Created: {summary['created']} with ldct_clip {summary['ldct_clip_version']}",
        *([f"Command: {summary['command']}"] if summary["command"] else []),
    )))
    for spec in result.presets:
        blocks += _preset_blocks(result, spec)
    blocks += _hu_blocks(result)
    blocks += _noise_blocks(result)
    blocks.append(Block("heading", "Figures"))
    for name in figure_names:
        blocks.append(Block("figure", name, caption=_figure_caption(result, name)))
    if viewer is not None:
        blocks.append(Block("heading", "Interactive viewer"))
        caption = (f"{len(result.viewer_indices)} slices spread over the data, every method beside the low- and "
                   "full-dose images, in real HU (window presets, difference to full dose, zoom).")
        blocks.append(Block("embed", viewer, caption=caption, fallback=f"{caption} Open report.html to use it."))
    blocks += _speed_blocks(result, summary)
    blocks.append(Block("heading", "Methods"))
    blocks.append(Block("list", items=tuple(f"{m.label}: {m.details}" for m in result.methods)))
    if result.notes:
        blocks.append(Block("heading", "Notes"))
        blocks.append(Block("list", items=tuple(result.notes)))
    return blocks


def _preset_header(spec: MetricPreset, n: int, what: str) -> str:
    lo, hi = spec.window
    scaled = ", scaled to [0, 1]" if spec.scale_to_unit else ""
    return (f"Preset {spec.name}: window [{lo:g}, {hi:g}] HU{scaled}, data_range {spec.data_range:g}, "
            f"SSIM {_SSIM_WINDOWS[spec.ssim_padding]}, {n} slices. {what}")


def _worse_cell(result: EvaluationResult, preset: str, method: str, patient: str | None = None) -> str:
    worse = result.worse_metrics(preset, method, patient)
    return f"{WORSE_MARK} ({', '.join(m.upper() for m in worse)})" if worse else ""


def _preset_blocks(result: EvaluationResult, spec: MetricPreset) -> list[Block]:
    n = len(result.slices)
    rows = []
    for method in result.methods:
        s = result.summary(spec.name, method.key)
        rows.append((method.label, _pm(s.psnr_mean, s.psnr_std, 2), _pm(s.ssim_mean, s.ssim_std, 4),
                     f"measured on these {s.n} slices", _worse_cell(result, spec.name, method.key)))
    quoted = published_rows(spec.name)
    for row in quoted:
        rows.append((f"{row.method} {QUOTED_MARK}", f"{row.psnr:.2f}", f"{row.ssim:.3f}", "quoted from the paper", ""))
    blocks = [
        Block("heading", f"PSNR / SSIM, preset {spec.name}"),
        Block("paragraph", _preset_header(spec, n, "Mean ± standard deviation over slices.")),
        Block("table", header=("Method", "PSNR (dB)", "SSIM", "Source", "Versus input"), rows=tuple(rows)),
    ]
    if quoted:
        note = f"{QUOTED_MARK} {quoted[0].source[0].upper()}{quoted[0].source[1:]}; not recomputed here."
        if not result.published_comparable:
            note += (" This evaluation covers other slices than that table (see Data above), so the quoted rows "
                     "are not directly comparable with the measured ones.")
        blocks.append(Block("paragraph", note))
    blocks += _paired_blocks(result, spec)
    patient_rows = []
    for patient in result.patients:
        for method in result.methods:
            s = result.summary(spec.name, method.key, patient)
            patient_rows.append((patient, str(s.n), method.label, _pm(s.psnr_mean, s.psnr_std, 2),
                                 _pm(s.ssim_mean, s.ssim_std, 4), _worse_cell(result, spec.name, method.key, patient)))
    blocks += [
        Block("heading", f"Per patient, preset {spec.name}", level=3),
        Block("paragraph", _preset_header(spec, n, "Mean ± standard deviation over each patient's slices.")),
        Block("table", header=("Patient", "Slices", "Method", "PSNR (dB)", "SSIM", "Versus input"),
              rows=tuple(patient_rows)),
    ]
    return blocks


def _paired_blocks(result: EvaluationResult, spec: MetricPreset) -> list[Block]:
    """Each method minus the first model and minus the low-dose input, with intervals and p-values."""
    found = [c for c in result.comparisons if c.preset == spec.name and c.metric == "psnr"]
    if not found:
        return []
    first = found[0].difference
    unit = "patients" if first.resampled == "patients" else "slices"
    rows = []
    for reference in (FIRST_MODEL, LOW_DOSE):
        for c in (c for c in found if c.reference == reference):
            ssim = result.comparison(spec.name, "ssim", c.method, reference).difference
            rows.append((result.method(c.method).label, result.method(reference).label,
                         _difference_cell(c.difference, "psnr"), _p_cell(c.difference),
                         _difference_cell(ssim, "ssim"), _p_cell(ssim)))
    notes = sorted({c.difference.note for c in result.comparisons if c.preset == spec.name and c.difference.note})
    level = f"{CONFIDENCE:.0%}"
    text = (f"Paired differences, preset {spec.name}: mean over the {first.n} slices of (method − reference), "
            f"with a {level} bootstrap confidence interval ({result.settings['bootstrap_resamples']} resamples of "
            f"the {first.units} {unit}, percentile method, seed {result.settings['bootstrap_seed']}) and the "
            "two-sided Wilcoxon signed-rank p-value over slices. Positive: the method scores higher.")
    return [
        Block("heading", f"Paired differences, preset {spec.name}", level=3),
        Block("paragraph", " ".join([text, *(f"Note: {note}." for note in notes)])),
        Block("table", header=("Method", "Minus", f"ΔPSNR (dB) [{level} CI]", "p (PSNR)", f"ΔSSIM [{level} CI]",
                               "p (SSIM)"), rows=tuple(rows)),
    ]


def _difference_cell(d: PairedDifference, metric: str) -> str:
    digits = _METRIC_DIGITS[metric]
    if d.ci_low is None or d.ci_high is None:
        return f"{d.mean:+.{digits}f}"
    return f"{d.mean:+.{digits}f} [{d.ci_low:+.{digits}f}, {d.ci_high:+.{digits}f}]"


def _p_cell(d: PairedDifference) -> str:
    if d.p_value is None:
        return f"— ({d.p_note})"
    return f"{d.p_value:.2g}" if d.p_value >= 1e-4 else "< 0.0001"


def _speed_blocks(result: EvaluationResult, summary: dict[str, object]) -> list[Block]:
    per_slice = summary["seconds_per_slice"]
    assert isinstance(per_slice, dict)
    rows = tuple((result.method(key).label, f"{seconds:.3g}", f"{result.seconds[key]:.1f}")
                 for key, seconds in per_slice.items())
    return [
        Block("heading", "Seconds per slice"),
        Block("paragraph", f"Wall-clock time of each method on the same {len(result.slices)} slices "
                           f"({result.settings['device']}, {result.settings['precision']}, batch size "
                           f"{result.settings['batch_size']}), reading and scoring excluded."),
        Block("table", header=("Method", "Seconds per slice", "Total seconds"), rows=rows),
    ]


def _noise_blocks(result: EvaluationResult) -> list[Block]:
    """Each patient's measured noise beside the noise each model was trained with."""
    blocks = [Block("heading", "Noise level"), Block("paragraph", (
        "Noise SD of each patient's evaluated slices, estimated by ldct_clip.noise_estimation (flat-regions: the "
        "most common local standard deviation in soft tissue, on up to 64 slices spread over the patient), and "
        "the data.noise_sigma (1/255 of the model scale (HU + 1024) / 4096) whose Gaussian noise has the "
        "low-dose SD. A model trained at a noise more than "
        f"{NOISE_MISMATCH_FACTOR:g}× away from its input's may remove detail or leave noise (warned at the top)."))]
    rows = []
    for level in result.noise:
        low, full = level.low_dose, level.full_dose
        rows.append((level.patient, "—" if low is None else f"{low.sd_hu:.1f}",
                     "—" if full is None else f"{full.sd_hu:.1f}", "—" if low is None else sigma_line_value(low.sd_hu)))
    blocks.append(Block("table", header=("Patient", "Low-dose noise SD (HU)", "Full-dose noise SD (HU)",
                                         "Matching data.noise_sigma"), rows=tuple(rows)))
    trained = [f"{m.label}: trained with noise sigma {m.training_noise_sigma:g}/255 "
               f"(≈ {sigma_to_hu(m.training_noise_sigma):.0f} HU)" for m in result.models
               if m.training_noise_sigma is not None]
    untrained = [m.label for m in result.models if m.training_noise_sigma is None]
    if untrained:
        trained.append(f"{', '.join(untrained)}: no training noise recorded (a method that does not train on added "
                       "noise, or a checkpoint written before it was recorded).")
    blocks.append(Block("list", items=tuple(trained)))
    notes = [level.note for level in result.noise if level.note]
    if notes:
        blocks.append(Block("paragraph", " ".join(notes)))
    return blocks


def _hu_blocks(result: EvaluationResult) -> list[Block]:
    blocks = [Block("heading", "HU fidelity in flat regions")]
    first = result.roi_summary(FIRST_MODEL)
    if first is None:
        blocks.append(Block("paragraph", "No ROIs were measured."))
        return blocks
    n_rois = int(first["n_rois"])
    n_slices = len({r.roi[0] for r in result.rois})
    if result.settings["rois"] == "automatic":
        how = (f"ROIs found automatically: per run of up to {result.settings['chunk_slices']} slices of a patient, "
               f"the flattest "
               f"{result.rois[0].roi[3]}×{result.rois[0].roi[4]}-pixel box of the full-dose images with "
               "every pixel in [-100, 200] HU.")
    else:
        how = "ROIs as given (index, y0, x0, h, w)."
    blocks.append(Block("paragraph", (
        f"No metric preset: raw HU, no window, no data_range; {n_rois} ROI(s) on {n_slices} of "
        f"{len(result.slices)} slices. {how} Bias = mean HU of the method − mean HU of the full-dose image in "
        "the ROI; noise SD = standard deviation of HU in the ROI (ddof 1); averages over ROIs.")))
    rows = []
    for method in result.methods:
        s = result.roi_summary(method.key)
        assert s is not None
        rows.append((method.label, f"{s['bias_hu']:+.1f}", f"{s['abs_bias_hu']:.1f}", f"{s['noise_sd_hu']:.1f}"))
    rows.append(("Full-dose reference", "—", "—", f"{first['full_dose_noise_sd_hu']:.1f}"))
    blocks.append(Block("table", header=("Method", "Mean bias (HU)", "Mean absolute bias (HU)", "Noise SD (HU)"),
                        rows=tuple(rows)))
    return blocks


def _pm(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _figure_caption(result: EvaluationResult, name: str) -> str:
    lo, hi = DISPLAY_WINDOW
    if name.startswith("slice_"):
        index = int(name[len("slice_") : -len(".png")])
        pair = result.slices[index]
        return (f"Slice {index} ({pair.patient}, {pair.position_mm:.1f} mm): low-dose, each model, the baselines and "
                f"full-dose in the [{lo:g}, {hi:g}] HU window with a zoomed inset (top); each minus full-dose, in HU "
                "(bottom).")
    preset = name[len("psnr_") : -len(".png")]
    return f"PSNR per slice along z, preset {preset}."


# --- figures ---------------------------------------------------------------------------------------------


def _render_figures(result: EvaluationResult) -> dict[str, bytes]:
    """PNG bytes by file name: one side-by-side figure per kept slice, one PSNR-along-z plot per preset."""
    figures = {f"slice_{index:04d}.png": png_bytes(_slice_figure(result, index)) for index in result.figure_indices}
    for spec in result.presets:
        figures[f"psnr_{spec.name}.png"] = png_bytes(_psnr_figure(result, spec))
    return figures


def _slice_figure(result: EvaluationResult, index: int) -> Figure:
    """Low-dose, each model, the baselines, full-dose in the display window with a zoomed inset; differences below."""
    images = result.images[index]
    full = images[FULL_DOSE]
    keys = [LOW_DOSE, *(m.key for m in result.models), *(m.key for m in result.methods if m.kind == "baseline"),
            FULL_DOSE]
    labels = {m.key: m.label for m in result.methods} | {FULL_DOSE: "Full-dose reference"}
    first = result.presets[0].name
    lo, hi = DISPLAY_WINDOW
    limit = _difference_limit(images[LOW_DOSE] - full)
    zoom = _zoom_box(full)

    fig = Figure(figsize=(_IMAGE_INCHES * len(keys), 2 * _IMAGE_INCHES + 0.6), layout="constrained")
    axes = fig.subplots(2, len(keys), squeeze=False)
    for column, key in enumerate(keys):
        top, bottom = axes[0, column], axes[1, column]
        label = textwrap.fill(labels[key], 30)
        if key != FULL_DOSE:
            label += (f"\n{result.scores[first][key]['psnr'][index]:.2f} dB / "
                      f"{result.scores[first][key]['ssim'][index]:.4f}")
        top.imshow(images[key], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        top.set_title(label, fontsize=8)
        _inset(top, images[key], zoom, lo, hi)
        if key != FULL_DOSE:
            shown = bottom.imshow(images[key] - full, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            bottom.set_title(textwrap.fill(labels[key], 30) + "\n− full-dose", fontsize=8)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    legend = axes[1, -1]
    legend.axis("off")
    fig.colorbar(shown, cax=legend.inset_axes((0.05, 0.1, 0.08, 0.8)), label="difference (HU)")
    legend.text(0.45, 0.5, f"display window\n[{lo:g}, {hi:g}] HU\n\nPSNR / SSIM:\npreset {first}", ha="left",
                va="center", fontsize=8, transform=legend.transAxes)
    pair = result.slices[index]
    fig.suptitle(f"Slice {index}: {pair.patient}, {pair.position_mm:.1f} mm", fontsize=10)
    return fig


def _inset(ax: Axes, image: np.ndarray, box: tuple[int, int, int, int], lo: float, hi: float) -> None:
    """A ×2-ish zoom of ``box`` (y0, x0, h, w) in the corner farthest from it, linked by a frame."""
    y0, x0, h, w = box
    rows, columns = image.shape
    right = x0 + w / 2 < columns / 2
    below = y0 + h / 2 < rows / 2
    inset = ax.inset_axes((0.6 if right else 0.0, 0.0 if below else 0.6, 0.4, 0.4))
    inset.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    inset.set_xlim(x0 - 0.5, x0 + w - 0.5)
    inset.set_ylim(y0 + h - 0.5, y0 - 0.5)
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
        spine.set_edgecolor("yellow")
    ax.indicate_inset_zoom(inset, edgecolor="yellow")


def _zoom_box(full: np.ndarray) -> tuple[int, int, int, int]:
    """The square (y0, x0, h, w) of 1/4 the slice side with the most edge detail in the display window."""
    lo, hi = DISPLAY_WINDOW
    shown = (np.clip(full, lo, hi) - lo) / (hi - lo)
    detail = np.hypot(ndimage.sobel(shown, axis=0), ndimage.sobel(shown, axis=1))
    size = max(8, min(full.shape) // 4)
    mean = ndimage.uniform_filter(detail, size=size, mode="constant")
    half = size // 2
    valid = mean[half : full.shape[0] - size + half + 1, half : full.shape[1] - size + half + 1]
    y0, x0 = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(y0), int(x0), size, size


def _difference_limit(difference: np.ndarray) -> float:
    """Colour limit of the difference maps: the 99.5th percentile of |low-dose − full-dose|, at least 10 HU."""
    return max(10.0, float(np.ceil(np.percentile(np.abs(difference), 99.5) / 10.0) * 10.0))


def _psnr_figure(result: EvaluationResult, spec: MetricPreset) -> Figure:
    """PSNR per slice against position, one panel per patient, one line per method."""
    patients = result.patients
    fig = Figure(figsize=(min(14.0, max(8.0, 1.0 + 4.5 * len(patients))), 3.6), layout="constrained")
    axes = fig.subplots(1, len(patients), squeeze=False, sharey=True)[0]
    for ax, patient in zip(axes, patients):
        keep = np.array([s.patient == patient for s in result.slices])
        z = np.array([s.position_mm for s in result.slices])[keep]
        order = np.argsort(z)
        for method in result.methods:
            values = result.scores[spec.name][method.key]["psnr"][keep]
            ax.plot(z[order], values[order], marker="." if keep.sum() <= 60 else None, linewidth=1,
                    label=method.label)
        ax.set_title(f"{patient} ({int(keep.sum())} slices)", fontsize=9)
        ax.set_xlabel("slice position (mm)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PSNR (dB)")
    axes[-1].legend(fontsize=7)
    lo, hi = spec.window
    fig.suptitle(f"PSNR along z, preset {spec.name}\nwindow [{lo:g}, {hi:g}] HU, data_range {spec.data_range:g}, "
                 f"{len(result.slices)} slices", fontsize=9)
    return fig
