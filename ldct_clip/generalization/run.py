"""Running the benchmark: simulate every condition (or take it from the cache), evaluate, write the folder.

For each dose and filter, every patient's thin normal-dose slices get a simulated low dose
(:func:`ldct_clip.simulate.simulate_low_dose`, cached: :mod:`ldct_clip.generalization.cache`); each
thickness then averages thin slices into slabs (both doses alike), and :func:`ldct_clip.evaluation.evaluate`
scores every checkpoint, the low-dose input and TV on those slabs against the full dose. The real low dose
(AAPM-Mayo quarter dose) is evaluated the same way as its own condition. Each condition's evaluation report
is written with :func:`ldct_clip.evaluation.write_report` into ``conditions/<key>/``, and the overview
(:mod:`ldct_clip.generalization.report`) at the top.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ldct_clip.atomic import staged_folder
from ldct_clip.errors import InputError
from ldct_clip.evaluation import (
    PairedSlices,
    SlicePair,
    check_output,
    ct_presets,
    evaluate,
    load_model_entry,
    resolve_baselines,
    summary_dict,
    write_report,
)
from ldct_clip.evaluation.run import FIGURE_SLICES
from ldct_clip.generalization.cache import CACHE_DIR, SimulationCache, cache_key
from ldct_clip.generalization.conditions import (
    DEFAULT_DOSES,
    DEFAULT_FILTERS,
    DEFAULT_THICKNESSES,
    Condition,
    average_slabs,
    build_conditions,
    check_doses,
    check_filters,
    check_thicknesses,
    slab_size,
)
from ldct_clip.generalization.sources import NormalDose, series_from_input, series_from_mayo
from ldct_clip.projectors import make_geometry, resolve_projector
from ldct_clip.simulate import (
    DEFAULT_ELECTRONIC_NOISE,
    DEFAULT_GEOMETRY,
    DEFAULT_PHOTONS,
    DEFAULT_PROJECTOR,
    simulate_low_dose,
)

__all__ = ["CONDITIONS_DIR", "MARKER_NAME", "ConditionResult", "GeneralizationResult", "run_generalization"]

CONDITIONS_DIR = "conditions"
"""Folder of the per-condition evaluation reports."""
MARKER_NAME = ".ldct_clip_generalization"
"""Written into every benchmark folder: ``overwrite`` replaces only folders that hold it."""


@dataclass(frozen=True)
class Simulation:
    """The simulation settings every condition shares (:func:`ldct_clip.simulate.simulate_low_dose`); patient
    ``i`` of a run gets seed ``seed + i``. ``projector`` is the concrete one ``auto`` resolved to."""

    seed: int
    projector: str
    geometry: str
    photons: float
    electronic_noise: float


@dataclass(frozen=True)
class ConditionResult:
    """One condition's evaluation, as the overview needs it.

    Attributes:
        condition: what was evaluated.
        summary: :func:`ldct_clip.evaluation.summary_dict` of its evaluation (tables, paired statistics, HU
            fidelity, seconds per slice of every method).
        report: its report folder, relative to the benchmark folder.
        simulation_seconds: seconds per simulated thin slice (None for real data); from the cache record
            on a cache hit, so it is the cost of making the condition, not of this run.
        cache_hits: patients whose simulation came from the cache.
        slab_slices: thin slices averaged into one evaluated slice.
    """

    condition: Condition
    summary: dict[str, object]
    report: str
    simulation_seconds: float | None
    cache_hits: int
    slab_slices: int


@dataclass
class GeneralizationResult:
    """Every condition's result and the settings of the run."""

    output: Path
    conditions: tuple[ConditionResult, ...]
    settings: dict[str, object]
    notes: list[str] = field(default_factory=list)



def _check_folder(target: Path, overwrite: bool, inputs: Sequence[Path]) -> None:
    check_output(target, overwrite, inputs)
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER_NAME).is_file():
        raise InputError(f"{target}: not a benchmark folder (no {MARKER_NAME}); --overwrite only replaces a folder "
                         "this command made: choose another --output")


def run_generalization(
    checkpoints: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    input_path: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    split: str = "clipdenoising",
    doses: Sequence[float] = DEFAULT_DOSES,
    filters: Sequence[str] = DEFAULT_FILTERS,
    thicknesses: Sequence[float] = DEFAULT_THICKNESSES,
    presets: Sequence[str] = ("clipdenoising",),
    labels: Sequence[str] | None = None,
    baselines: Sequence[str] = ("tv",),
    max_slices: int | None = None,
    seed: int = 0,
    projector: str = DEFAULT_PROJECTOR,
    geometry: str = DEFAULT_GEOMETRY,
    photons: float = DEFAULT_PHOTONS,
    electronic_noise: float = DEFAULT_ELECTRONIC_NOISE,
    device: str = "auto",
    batch_size: int | None = None,
    figure_slices: int = FIGURE_SLICES,
    overwrite: bool = False,
    progress: bool = False,
    command: str | None = None,
) -> GeneralizationResult:
    """Simulate every condition from the normal dose, evaluate every checkpoint and the baselines, write ``output``.

    Args:
        checkpoints: model checkpoints of any method; the first is the reference of the paired statistics.
        output: the benchmark folder to create (replaced with ``overwrite`` only if this function made it);
            it may neither hold nor lie inside an input.
        input_path: a normal-dose series (DICOM folder or NIfTI file); or
        data_root: an AAPM-Mayo folder or manifest: the 1 mm full dose of ``split``'s test patient(s), whose
            real quarter dose becomes a condition of its own.
        doses, filters, thicknesses: the conditions (:mod:`ldct_clip.generalization.conditions`).
        presets: metric presets (:data:`ldct_clip.evaluation.CT_PRESETS`).
        labels: a row label per checkpoint (default: method and file name).
        baselines: classical baselines beside the models (TV by default; ``()`` none).
        max_slices: at most this many evaluated slices per patient and condition (a central block of the series).
        seed, projector, geometry, photons, electronic_noise: of the simulation (:mod:`ldct_clip.simulate`).
        device, batch_size: of the models (:class:`ldct_clip.inference.VolumeDenoiser`).
        figure_slices: slices shown as figures in each condition's report (each costs about a second to draw).
        progress: progress bars.
        command: the command line, recorded in the reports.

    Returns:
        The results, also written as ``output``/report.md, report.html, summary.json, table.csv, figures/,
        conditions/<key>/ and cache/.
    """
    from ldct_clip.generalization.report import write_overview

    if (input_path is None) == (data_root is None):
        raise InputError("pass either --input SERIES (a normal-dose series) or --data-root MAYO, not both or neither")
    if not checkpoints:
        raise InputError("pass at least one --checkpoint PATH")
    if labels is not None and len(labels) != len(checkpoints):
        raise InputError(f"--label given {len(labels)} time(s) for {len(checkpoints)} checkpoint(s); give one label "
                         "per checkpoint, in order")
    if max_slices is not None and (isinstance(max_slices, bool) or not isinstance(max_slices, int) or max_slices < 1):
        raise InputError(f"--max-slices {max_slices!r}: must be a positive integer")
    dose_list, filter_list = check_doses(doses), check_filters(filters)
    thickness_list = check_thicknesses(thicknesses)
    preset_names = [p.name for p in ct_presets(presets)]
    chosen_baselines = resolve_baselines(baselines)
    source = Path(input_path) if input_path is not None else Path(str(data_root))
    target = Path(output)
    data_sources = [source]
    inputs = [*data_sources, *map(Path, checkpoints)]
    _check_folder(target, overwrite, inputs)  # before any work

    entries = [load_model_entry(path, None if labels is None else labels[i]) for i, path in enumerate(checkpoints)]
    if input_path is not None:
        patients = [series_from_input(source, thickness_list, max_slices)]
    else:
        patients, mayo_root = series_from_mayo(source, split, thickness_list, max_slices)
        data_sources.append(mayo_root)  # a manifest's slices live elsewhere
        inputs.append(mayo_root)
        _check_folder(target, overwrite, inputs)
    first = patients[0]
    concrete = resolve_projector(projector, make_geometry(geometry, max(first.hu.shape[1:]), first.pixel_mm))
    conditions = build_conditions(dose_list, filter_list, thickness_list, real=first.real_low is not None)
    sources = tuple(str(p) for p in data_sources)
    simulation = Simulation(seed, concrete, geometry, photons, electronic_noise)

    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(target, before_move=lambda: _check_folder(target, overwrite, inputs)) as temp:
        (temp / MARKER_NAME).write_text("made by ldct_clip.generalization; --overwrite may replace this folder\n")
        cache = SimulationCache(temp / CACHE_DIR, target / CACHE_DIR if target.is_dir() else None)
        results: list[ConditionResult] = []
        computed = from_cache = 0
        simulated: dict[tuple[float, str], tuple[list[np.ndarray], float, int]] = {}
        with tqdm(total=len(conditions), desc="conditions", unit="condition", disable=not progress,
                  dynamic_ncols=True) as bar:
            for condition in conditions:
                bar.set_postfix_str(condition.key)
                lows: list[np.ndarray]
                seconds: float | None
                if condition.real:
                    lows, seconds, hits = [p.real_low for p in patients if p.real_low is not None], None, 0
                else:
                    pair = (condition.dose, condition.kernel)
                    if pair not in simulated:
                        simulated[pair] = _simulate(patients, condition, simulation, cache, progress)
                        computed += len(patients) - simulated[pair][2]
                        from_cache += simulated[pair][2]
                    lows, seconds, hits = simulated[pair]
                pairs, slab = _condition_pairs(condition, patients, lows, max_slices, sources)
                result = evaluate(entries, pairs, presets=preset_names, baselines=chosen_baselines, device=device,
                                  batch_size=batch_size, figure_slices=figure_slices, progress=progress)
                result.notes.append(_condition_note(condition, slab, simulation, first.slice_spacing_mm))
                report = f"{CONDITIONS_DIR}/{condition.key}"
                write_report(result, temp / report, command=command)
                results.append(ConditionResult(condition, summary_dict(result, command), report, seconds, hits, slab))
                bar.update(1)
        settings: dict[str, object] = {
            **asdict(simulation),
            "doses": list(dose_list),
            "filters": list(filter_list),
            "thicknesses_mm": list(thickness_list),
            "presets": preset_names,
            "baselines": list(chosen_baselines),
            "max_slices": max_slices,
            "source": str(source),
            "split": split if data_root is not None else None,
            "patients": [{"patient": p.patient, "source": p.source, "slices": p.block[1], "of": p.block[2],
                          "first": p.block[0], "slice_spacing_mm": p.slice_spacing_mm, "pixel_mm": p.pixel_mm}
                         for p in patients],
            "checkpoints": [str(c) for c in checkpoints],
            "device": device,
            "simulations_computed": computed,
            "simulations_from_cache": from_cache,
            "command": command,
        }
        benchmark = GeneralizationResult(target, tuple(results), settings)
        write_overview(benchmark, temp)
    return benchmark


def _simulate(patients: Sequence[NormalDose], condition: Condition, simulation: Simulation,
              cache: SimulationCache, progress: bool) -> tuple[list[np.ndarray], float, int]:
    """Every patient's simulated thin slices at ``condition``'s dose and filter; seconds per slice; cache hits."""
    lows, seconds, slices, hits = [], 0.0, 0, 0
    for number, patient in enumerate(patients):
        parameters = {**asdict(simulation), "seed": simulation.seed + number,
                      "source": patient.identity, "block": patient.block, "patient": patient.patient,
                      "dose": condition.dose, "filter": condition.filter_name, "pixel_mm": patient.pixel_mm,
                      "views": None}
        key = cache_key(parameters)
        found = cache.get(key, patient.hu.shape)
        if found is None:
            started = time.perf_counter()
            low = simulate_low_dose(patient.hu, patient.pixel_mm, condition.dose, simulation.photons,
                                    simulation.electronic_noise, simulation.seed + number, progress=progress,
                                    filter_name=condition.kernel, projector=simulation.projector,
                                    geometry=simulation.geometry)
            found = cache.put(key, low, (time.perf_counter() - started) / len(patient.hu), parameters)
        hits += found.hit
        lows.append(found.hu)
        seconds += found.seconds * len(patient.hu)
        slices += len(patient.hu)
    return lows, seconds / slices, hits


def _spread(n: int, count: int | None) -> np.ndarray:
    """``count`` evenly spaced indices of ``n`` (first and last included), or all."""
    if count is None or count >= n:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, count)).astype(int))


def _condition_pairs(condition: Condition, patients: Sequence[NormalDose], lows: Sequence[np.ndarray],
                     max_slices: int | None, sources: tuple[str, ...]) -> tuple[PairedSlices, int]:
    """The condition's evaluated slices (slabs of thin slices, at most ``max_slices`` per patient) and the slab size."""
    slices: list[SlicePair] = []
    images: list[tuple[np.ndarray, np.ndarray]] = []
    size = 1
    for patient, low in zip(patients, lows):
        size = slab_size(condition.thickness_mm, patient.slice_spacing_mm, patient.source)
        full_slabs, positions = average_slabs(patient.hu, patient.positions_mm, size)
        low_slabs, _ = average_slabs(low, patient.positions_mm, size)
        first = patient.block[0]
        for i in _spread(len(full_slabs), max_slices):
            where = f"[{first + i * size}]" if size == 1 else f"[{first + i * size}:{first + (i + 1) * size}] mean"
            low_name = "real low dose" if condition.real else f"simulated {condition.key}"
            slices.append(SlicePair(patient.patient, float(positions[i]), f"{low_name} of {patient.source}{where}",
                                    f"{patient.source}{where}", full_slabs.shape[1:]))
            images.append((low_slabs[i], full_slabs[i]))
    what = "real low dose" if condition.real else "simulated low dose"
    description = (f"{condition.label}: {what} vs normal dose of {', '.join(p.patient for p in patients)} "
                   f"({', '.join(sorted({p.source for p in patients}))})")
    return PairedSlices(tuple(slices), lambda index: images[index], description, sources=sources), size


def _condition_note(condition: Condition, slab: int, simulation: Simulation, spacing: float) -> str:
    """The report note saying how this condition was made."""
    thickness = (f"each evaluated slice is the mean of {slab} adjacent {spacing:g} mm slices, for the low and the "
                 "normal dose alike" if slab > 1 else f"thin {spacing:g} mm slices")
    if condition.real:
        return f"Condition {condition.label}: the scanner's own low-dose series; {thickness}."
    return (f"Condition {condition.label}: low dose simulated from the normal dose by ldct_clip.simulate "
            f"(projection-domain noise, {simulation.projector} projector, {simulation.geometry} beam, "
            f"I0 {simulation.photons:g}, electronic noise {simulation.electronic_noise:g}, "
            f"{condition.filter_name} FBP of the added noise, seed {simulation.seed}); {thickness}.")
