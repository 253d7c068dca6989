"""``python -m ldct_clip.demo``: the whole toolkit on real CT in a few minutes, without the AAPM-Mayo data.

Steps, each with the toolkit's own public pieces:

1. **Data.** Five real CT slices that ship offline with ``pydicom-data`` (and pydicom's own test files),
   from different scanners and body regions, become two demo patients: ``DEMO01`` (three slices, trains)
   and ``DEMO02`` (two slices, tests). Each patient's slices are stacked as a normal-dose volume on a
   nominal grid (512×512, 1 mm apart, the first slice's pixel spacing; smaller slices are resized),
   saved as NIfTI, and :func:`ldct_clip.simulate.simulate_series` writes the AAPM-Mayo layout
   ``data/<patient>/{full,quarter}_1mm/`` with a simulated 25 % dose.
2. **Training.** :class:`ldct_clip.training.Trainer` with the LDCT recipe shrunk to small patches and
   split ``loo-DEMO02``, for a wall-clock budget (``--minutes``, default :data:`DEFAULT_MINUTES`), and beside
   it Noise2Sim and RED-CNN with their official recipes shrunk the same way (:data:`BUDGET_SHARES`; a small
   ScoreSDE-CT too with ``--with-scoresde``), so the report compares measured methods on the same slices.
3. **Inference.** :func:`ldct_clip.inference.denoise_series` denoises DEMO02's quarter-dose series into a
   new DICOM series, as ``python -m ldct_clip.infer`` would.
4. **Evaluation.** :func:`ldct_clip.evaluation.evaluate` and :func:`ldct_clip.evaluation.write_report` score the
   model beside the low-dose input and TV (BM3D too when installed), as ``python -m ldct_clip.evaluate``.
5. **Generalization** (only with ``--doses``). :func:`ldct_clip.generalization.run_generalization` on DEMO02's
   normal dose at those doses, with ramp and hann noise, over two slices and every demo checkpoint, written to
   ``generalization/`` (:func:`run_demo_generalization`).

The encoder uses CLIP's ``openai`` RN50 weights when they can be had (cached, downloadable, or a file
passed with ``--encoder-weights``). When ``openai`` was asked for and cannot be had (no network), the demo
alone carries on with a randomly initialised encoder and says so in the terminal and in the report: its
numbers are then not CLIPDenoising's. Five slices and minutes of CPU training show that everything
works and what the outputs look like; they say nothing about the method's quality.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.transform import resize

from ldct_clip.atomic import partial_path
from ldct_clip.cli import run_cli
from ldct_clip.config import ExperimentConfig, config_from_dict
from ldct_clip.data.hu import HU_MAX, HU_MIN
from ldct_clip.data.mayo import scan_mayo
from ldct_clip.device import DEVICES
from ldct_clip.errors import InputError
from ldct_clip.evaluation import (
    default_baselines,
    evaluate,
    load_model_entry,
    pairs_from_manifest,
    worse_than_input,
    write_report,
)
from ldct_clip.generalization import run_generalization
from ldct_clip.generalization.conditions import check_doses
from ldct_clip.inference import denoise_series
from ldct_clip.io import CTVolume, read_slice_header, read_slice_hu, write_nifti
from ldct_clip.methods import get_method
from ldct_clip.models.encoder import OPENAI_TAG, RANDOM, CLIPEncoder
from ldct_clip.simulate import FULL_DOSE_FOLDER, LOW_DOSE_FOLDER, simulate_series
from ldct_clip.training import CHECKPOINT_DIR, LAST, Trainer
from ldct_clip.training.budget import steps_in_budget

__all__ = [
    "DEFAULT_MINUTES",
    "DEMO_PATIENTS",
    "DemoResult",
    "build_demo_data",
    "choose_encoder_weights",
    "demo_config",
    "demo_volume",
    "run_demo",
    "run_demo_generalization",
    "shout",
]

DEMO_PATIENTS: dict[str, tuple[str, ...]] = {
    "DEMO01": ("693_UNCR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm"),
    "DEMO02": ("J2K_pixelrep_mismatch.dcm", "CT_small.dcm"),
}
"""Demo patient -> real CT slices from pydicom's test data (head, neck, abdomen; raw, JPEG Lossless, JPEG 2000)."""
TRAIN_PATIENT, TEST_PATIENT = "DEMO01", "DEMO02"
SPLIT = f"loo-{TEST_PATIENT}"
"""Split preset of the demo: test DEMO02, train DEMO01."""
DOSE = 0.25
"""Simulated dose fraction (the AAPM-Mayo quarter dose)."""
SLICE_SIZE = 512
SLICE_SPACING_MM = 1.0
DEFAULT_MINUTES = 10.0
"""Default training budget in minutes (2.5 for CLIPDenoising, 1.5 for Noise2Sim, 6 for RED-CNN, see
:data:`BUDGET_SHARES`); with data, inference and evaluation the demo takes about 14 on 2 quiet cores."""
MIN_ITERATIONS = 4
"""Fewest schedule steps of a demo run, however short its budget."""
SUMMARY_NAME = "demo.json"
"""Written last in the demo folder: its presence means the demo completed."""
MARKER_NAME = ".ldct_clip_demo"
"""Written first in the demo folder: ``--overwrite`` replaces only folders that hold it."""
GENERALIZATION_SLICES = 2
"""Slices per condition of the demo's small generalization benchmark (``--doses``)."""
GENERALIZATION_FILTERS: tuple[str, ...] = ("ramp", "hann")
"""Noise kernels of the demo's generalization benchmark: sharp and smooth."""


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things, and which encoder weights it used."""

    output: Path
    data_root: Path
    run_dir: Path
    checkpoint: Path
    denoised: Path
    report: Path
    encoder_weights: str
    random_encoder_reason: str | None
    worse_than_input: tuple[str, ...] = ()
    generalization: Path | None = None

    @property
    def figures(self) -> Path:
        return self.report / "figures"


# --- data --------------------------------------------------------------------------------------------------


def _testdata_file(name: str) -> Path:
    """A file of pydicom's test data, found locally only (pydicom would otherwise try to download it)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        raise InputError(f"{name}: pydicom test data not found; install it with 'pip install pydicom-data'")
    return Path(str(path))


@contextmanager
def _tolerant_pydicom() -> Iterator[None]:
    """Read without pydicom's value warnings: some test files carry hashed, non-numeric UIDs (anonymised),
    which do not matter here since the demo writes new headers."""
    from pydicom import config

    previous = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.IGNORE
    try:
        yield
    finally:
        config.settings.reading_validation_mode = previous


def demo_volume(patient: str, size: int = SLICE_SIZE) -> CTVolume:
    """The normal-dose volume of a demo patient: its slices in HU [-1024, 3072] on a size×size, 1 mm grid."""
    names = DEMO_PATIENTS[patient]
    slices, spacing = [], None
    for name in names:
        path = _testdata_file(name)
        with _tolerant_pydicom():
            info = read_slice_header(path)
            hu = np.clip(read_slice_hu(path), HU_MIN, HU_MAX)  # outside the scan circle some scanners store -3024
        if hu.shape != (size, size):
            hu = resize(hu, (size, size), order=3, preserve_range=True, anti_aliasing=size < max(hu.shape))
        spacing = spacing or info.pixel_spacing[0] * info.rows / size
        slices.append(np.clip(hu, HU_MIN, HU_MAX).astype(np.float32))
    assert spacing is not None
    return CTVolume(np.stack(slices), (SLICE_SPACING_MM, spacing, spacing), (0.0, 0.0, 0.0), np.eye(3), None,
                    f"pydicom test data: {', '.join(names)}")


def build_demo_data(folder: Path, size: int = SLICE_SIZE, seed: int = 0, progress: bool = False) -> Path:
    """Write ``folder/sources/<patient>.nii.gz`` and the Mayo-layout ``folder/data``; returns the data root.

    The projector's round-trip error is measured on one slice per patient (each costs a simulation's time).
    """
    sources, root = folder / "sources", folder / "data"
    sources.mkdir(parents=True, exist_ok=True)
    for index, patient in enumerate(DEMO_PATIENTS):
        volume = demo_volume(patient, size)
        source = write_nifti(volume, volume.hu, sources / f"{patient}.nii.gz", overwrite=True)
        simulate_series(source, root, patient=patient, dose=DOSE, seed=seed + index, roundtrip_slices=1,
                        overwrite=True, progress=progress)
    return root


# --- training ----------------------------------------------------------------------------------------------


def demo_config(data_root: Path, minutes: float, encoder_weights: str, iterations: int | None = None,
                device: str = "auto") -> ExperimentConfig:
    """The LDCT recipe (``configs/ldct_mayo_sigma5.yaml``) shrunk to the demo's data and time budget.

    Without ``iterations`` the schedule spans the steps that fit in ``minutes``, timed on this machine
    (:func:`ldct_clip.training.budget.steps_in_budget`), so that its decay is reached within the budget.
    """
    def build(total: int) -> ExperimentConfig:
        return config_from_dict({
            "name": "demo",
            "model": {"in_channels": 1, "encoder_weights": encoder_weights},
            "data": {"kind": "mayo", "root": str(data_root), "split": SPLIT, "patch_size": 64, "noise_sigma": 5.0,
                     "workers": 0, "val_max_slices": 2},
            "schedule": {"iterations": total},
            "train": {"batch_size": 4, "val_every": math.ceil(total / 4), "log_every": max(1, min(25, total // 4)),
                      "checkpoint_every": math.ceil(total / 4), "max_minutes": minutes, "device": device},
        })
    return _fitted(build, minutes, iterations)


def _fitted(build: Callable[[int], ExperimentConfig], minutes: float, iterations: int | None) -> ExperimentConfig:
    """``build(iterations)``; without ``iterations``, ``build`` of the steps that fit in ``minutes`` here and now."""
    if iterations is None:
        _say(f"timing a few training steps to fit the schedule in {minutes:g} minute(s)")
        iterations = steps_in_budget(build(MIN_ITERATIONS), minutes, MIN_ITERATIONS)
    return build(iterations)


COMPARISON_METHODS: tuple[str, ...] = ("noise2sim", "redcnn")
"""Methods the demo trains beside CLIPDenoising (``--with-scoresde`` adds ``scoresde_ct``)."""
BUDGET_SHARES = {"clipdenoising": 0.25, "noise2sim": 0.15, "redcnn": 0.6}
"""How the training budget is split, by what each method needs to pass its input on the demo data (measured
in ``docs/methods.md``): RED-CNN's steps cost 2.5 s on 2 CPU cores (full-resolution 96-channel 5×5
convolutions) and it needs about 100 of them, CLIPDenoising and Noise2Sim about 0.3 and 0.5 s."""
SCORESDE_SHARES = {"clipdenoising": 0.2, "noise2sim": 0.1, "redcnn": 0.4, "scoresde_ct": 0.3}
"""The split with ``--with-scoresde``."""
SCORESDE_STEPS = 20
"""Sampler steps of the demo's score model (41 network evaluations per slice instead of 2001)."""


def comparison_config(method: str, data_root: Path, minutes: float, iterations: int | None = None,
                      device: str = "auto") -> ExperimentConfig:
    """The official recipe of ``method`` (``configs/<method>_mayo.yaml``) shrunk to the demo's data and budget.

    Noise2Sim also learns from the test patient's own low-dose slices (``data.train_on_test_low_dose``): the
    demo's training patient has only three unrelated slices, and a self-supervised method may. The schedule
    is fitted to ``minutes`` as in :func:`demo_config`.
    """
    return _fitted(functools.partial(_comparison_config, method, data_root, minutes, device), minutes, iterations)


def _comparison_config(method: str, data_root: Path, minutes: float, device: str, total: int) -> ExperimentConfig:
    recipes: dict[str, dict[str, object]] = {
        "noise2sim": {"optim": {"name": "adam", "lr": 5e-4, "betas": [0.1, 0.99], "weight_decay": 0.0,
                                "grad_clip": None},
                      "schedule": {"kind": "ramped", "iterations": total},
                      "data_extra": {"train_on_test_low_dose": True}},
        "redcnn": {"optim": {"name": "adam", "lr": 1e-4, "weight_decay": 0.0, "grad_clip": None},
                   "schedule": {"kind": "cosine", "iterations": total}, "data_extra": {"patches_per_slice": 4}},
        "scoresde_ct": {"model": {"image_size": 64, "nf": 16, "ch_mult": [1, 2, 2, 2], "attn_resolutions": [8],
                                  "n": SCORESDE_STEPS},
                        "optim": {"name": "adam", "lr": 2e-4, "weight_decay": 0.0, "grad_clip": 1.0,
                                  "ema_decay": 0.99},
                        "schedule": {"kind": "warmup", "warmup_iterations": max(1, total // 10),
                                     "iterations": total}},
    }
    recipe = recipes[method]
    return config_from_dict({
        "name": f"demo_{method}",
        "method": method,
        "model": recipe.get("model", {}),
        "data": {"kind": "mayo", "root": str(data_root), "split": SPLIT, "patch_size": 64, "workers": 0,
                 "val_max_slices": 2, "cache": True, **recipe.get("data_extra", {})},
        "optim": recipe["optim"],
        "schedule": recipe["schedule"],
        "train": {"batch_size": 4, "mixup_prob": 0.0, "val_every": math.ceil(total / 2),
                  "log_every": max(1, min(25, total // 4)), "checkpoint_every": math.ceil(total / 2),
                  "max_minutes": minutes, "device": device},
    })


def choose_encoder_weights(requested: str) -> tuple[str, str | None]:
    """``(weights, reason)``: ``requested``, or ``random`` with the reason when ``openai`` cannot be had.

    Only ``openai`` falls back, and never quietly: the fallback is announced on stderr at once. A weights
    file that fails to load is an error like anywhere else. Only the encoder trunk is built to check.
    """
    if requested != OPENAI_TAG:
        CLIPEncoder(requested)  # fail now, with the loader's one-line error
        return requested, None
    try:
        CLIPEncoder(OPENAI_TAG)
    except InputError as err:
        shout(random_encoder_notice(str(err)))
        return RANDOM, str(err)
    return OPENAI_TAG, None


def random_encoder_notice(reason: str) -> str:
    """The warning printed and written into the report when the demo runs with a random encoder."""
    return (f"The CLIP 'openai' encoder weights could not be had ({reason}). The demo carries on with a RANDOMLY "
            "INITIALISED encoder: its numbers are NOT CLIPDenoising's. Run it again with network access, or "
            "pass --encoder-weights /path/to/RN50.pt.")


# --- the whole demo ----------------------------------------------------------------------------------------


def run_demo(
    output: str | os.PathLike[str],
    minutes: float = DEFAULT_MINUTES,
    encoder_weights: str = OPENAI_TAG,
    iterations: int | None = None,
    slice_size: int = SLICE_SIZE,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    with_scoresde: bool = False,
    doses: Sequence[float] | None = None,
) -> DemoResult:
    """Build the demo data, train, denoise the test series and write the evaluation report under ``output``.

    ``iterations`` fixes the schedule length (tests use a handful); by default it follows ``minutes``.
    ``slice_size`` resamples the slices (smaller is faster, mostly in the simulation; at least 64).
    An existing demo folder is refused unless ``overwrite``; :data:`SUMMARY_NAME` is written last.
    ``doses`` adds a small generalization benchmark at those doses (:func:`run_demo_generalization`).
    """
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise InputError(f"--minutes {minutes!r}: must be a positive number of minutes")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1):
        raise InputError(f"--iterations {iterations!r}: must be a positive integer")
    if isinstance(slice_size, bool) or not isinstance(slice_size, int) or slice_size < 64:
        raise InputError(f"--slice-size {slice_size!r}: must be an integer of at least 64 pixels")
    if doses is not None:
        check_doses(doses)  # a bad dose fails before the data and the training
    folder = Path(output)
    _check_folder(folder, overwrite)
    weights, reason = choose_encoder_weights(encoder_weights)  # announces a fallback itself
    if folder.exists():
        shutil.rmtree(folder)  # an earlier demo's folder, replaced as --overwrite asked
    folder.mkdir(parents=True)
    (folder / MARKER_NAME).write_text("made by python -m ldct_clip.demo; --overwrite may replace this folder\n")

    _say(f"[1/4] building the demo data set (real CT slices, simulated {DOSE:.0%} dose) in {folder / 'data'}")
    data_root = build_demo_data(folder, slice_size, progress=progress)

    shares = SCORESDE_SHARES if with_scoresde else BUDGET_SHARES
    _say(f"[2/4] training for at most {minutes:g} minute(s) on patient {TRAIN_PATIENT}: "
         + ", ".join(f"{get_method(m).title} {share:.0%}" for m, share in shares.items()))
    run_dir = folder / "run"
    clip_minutes = minutes * shares["clipdenoising"]
    Trainer(demo_config(data_root, clip_minutes, weights, iterations, device), run_dir).run()
    checkpoint = run_dir / CHECKPOINT_DIR / LAST  # "best" is chosen on DEMO02, the test patient itself
    comparisons = {}
    for method in (m for m in shares if m != "clipdenoising"):
        method_dir = folder / f"run_{method}"
        Trainer(comparison_config(method, data_root, minutes * shares[method], iterations, device), method_dir).run()
        comparisons[method] = method_dir / CHECKPOINT_DIR / LAST

    _say(f"[3/4] denoising {TEST_PATIENT}'s low-dose series")
    denoised = folder / "denoised" / TEST_PATIENT
    low_dose = data_root / TEST_PATIENT / LOW_DOSE_FOLDER
    denoise_series(checkpoint, low_dose, denoised, device=device, overwrite=True, progress=progress)

    _say("[4/4] evaluating against the full dose")
    entries = [load_model_entry(checkpoint, "CLIPDenoiser (demo)")]  # with its training noise, for the report
    entries += [load_model_entry(path, f"{get_method(m).title} (demo)") for m, path in comparisons.items()]
    pairs = pairs_from_manifest(scan_mayo(data_root), SPLIT)
    result = evaluate(entries, pairs, baselines=default_baselines(), device=device, progress=progress)
    result.notes.extend(_report_notes(reason, minutes, shares))
    command = _command(folder, minutes, encoder_weights, iterations, slice_size, doses)
    report = write_report(result, folder / "report", overwrite=True, command=command)
    generalization = None
    if doses is not None:
        _say(f"[+] generalization benchmark at {', '.join(f'{d:.0%}' for d in check_doses(doses))} dose")
        generalization = run_demo_generalization(folder, data_root, [checkpoint, *comparisons.values()],
                                                 [entry.label for entry in entries], doses, device, progress, command)

    demo = DemoResult(folder, data_root, run_dir, checkpoint, denoised, report, weights, reason,
                      tuple(worse_than_input(result)), generalization)
    _write_summary(demo)
    return demo


def run_demo_generalization(folder: Path, data_root: Path, checkpoints: Sequence[Path], labels: Sequence[str],
                            doses: Sequence[float], device: str = "auto", progress: bool = True,
                            command: str | None = None) -> Path:
    """The generalization benchmark, small: the test patient's normal dose at ``doses``, the sharp and the smooth
    noise kernel (:data:`GENERALIZATION_FILTERS`), thin slices, :data:`GENERALIZATION_SLICES` slices, every
    checkpoint and TV; written to ``folder/generalization``, which is returned."""
    result = run_generalization(checkpoints, folder / "generalization",
                                input_path=data_root / TEST_PATIENT / FULL_DOSE_FOLDER, doses=doses,
                                filters=GENERALIZATION_FILTERS, thicknesses=(SLICE_SPACING_MM,), labels=labels,
                                max_slices=GENERALIZATION_SLICES, device=device, progress=progress, command=command)
    return result.output


def _command(folder: Path, minutes: float, weights: str, iterations: int | None, slice_size: int,
             doses: Sequence[float] | None = None) -> str:
    """The demo command line that reproduces this run (for the report)."""
    parts = ["python", "-m", "ldct_clip.demo", "--output", str(folder), "--minutes", f"{minutes:g}"]
    if weights != OPENAI_TAG:
        parts += ["--encoder-weights", weights]
    if iterations is not None:
        parts += ["--iterations", str(iterations)]
    if slice_size != SLICE_SIZE:
        parts += ["--slice-size", str(slice_size)]
    if doses is not None:
        parts += ["--doses", *(f"{d:g}" for d in doses)]
    return shlex.join(parts)


def _report_notes(reason: str | None, minutes: float, shares: dict[str, float]) -> list[str]:
    split = ", ".join(f"{get_method(m).title} {minutes * share:.2g} min" for m, share in shares.items())
    notes = [
        f"Training budget split: {split}. Minutes of CPU training on a handful of slices say nothing about the "
        "methods' quality; the comparison shows how the toolkit measures them on the same slices.",
        f"Demo data: {sum(map(len, DEMO_PATIENTS.values()))} real CT slices from pydicom's test data "
        f"(different scanners and body regions), stacked per demo patient and given a simulated {DOSE:.0%} dose "
        "(ldct_clip.simulate). Not AAPM-Mayo data: the quoted paper rows are context, not a comparison.",
        f"Training: at most {minutes:g} minute(s) on {len(DEMO_PATIENTS[TRAIN_PATIENT])} slices; a real model "
        "trains for 40,000 iterations on nine AAPM-Mayo patients (configs/ldct_mayo_sigma5.yaml).",
    ]
    if reason is not None:
        notes.insert(0, random_encoder_notice(reason))
    return notes


def _check_folder(folder: Path, overwrite: bool) -> None:
    """Refuse a file, a folder with files (unless ``overwrite`` and the demo made it), before any work."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder; pass another --output")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise InputError(f"{folder}: already holds files; pass another --output or --overwrite to replace it")
        if not (folder / MARKER_NAME).is_file():
            raise InputError(f"{folder}: not a demo folder; --overwrite only replaces a folder the demo made")


def _write_summary(demo: DemoResult) -> None:
    summary = {
        "data_root": str(demo.data_root),
        "run_dir": str(demo.run_dir),
        "checkpoint": str(demo.checkpoint),
        "denoised_series": str(demo.denoised),
        "report": str(demo.report / "report.html"),
        "figures": str(demo.figures),
        "encoder_weights": demo.encoder_weights,
        "random_encoder_reason": demo.random_encoder_reason,
        "worse_than_input": list(demo.worse_than_input),
        "generalization": None if demo.generalization is None else str(demo.generalization / "report.html"),
    }
    temp = partial_path(demo.output / SUMMARY_NAME)
    temp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    temp.replace(demo.output / SUMMARY_NAME)


def _say(message: str) -> None:
    print(message, flush=True)


def shout(message: str) -> None:
    """Print ``message`` as a WARNING between two rows of exclamation marks, impossible to miss in a log."""
    bar = "!" * 100
    print(f"{bar}\nWARNING: {message}\n{bar}", file=sys.stderr, flush=True)


# --- command line ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldct-clip-demo",
        description="Build a small CT data set with simulated low dose, train briefly, denoise and evaluate.",
    )
    parser.add_argument("--output", type=Path, default=Path("ldct_clip_demo"),
                        help="demo folder (default ./ldct_clip_demo)")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help=f"training budget in minutes (default {DEFAULT_MINUTES:g})")
    parser.add_argument("--encoder-weights", default=OPENAI_TAG,
                        help="'openai' (default; falls back to a random encoder, loudly, when offline), "
                             "a path to RN50.pt or an open_clip checkpoint, or 'random'")
    parser.add_argument("--iterations", type=int, help="training iterations (default: what fits in --minutes)")
    parser.add_argument("--slice-size", type=int, default=SLICE_SIZE,
                        help=f"resample the slices to N×N pixels (default {SLICE_SIZE}; smaller runs faster)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="compute device (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo folder")
    parser.add_argument("--with-scoresde", action="store_true",
                        help=f"also train a small ScoreSDE-CT score model (its sampler: {SCORESDE_STEPS} steps)")
    parser.add_argument("--doses", nargs="+", type=float, metavar="D",
                        help=f"after the evaluation, run a small generalization benchmark at these dose fractions "
                             f"({GENERALIZATION_SLICES} slices, ramp and hann noise) into OUTPUT/generalization")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo and print where its outputs are."""
    args = _parser().parse_args(argv)
    demo = run_demo(args.output, args.minutes, args.encoder_weights, args.iterations, args.slice_size, args.device,
                    args.overwrite, with_scoresde=args.with_scoresde, doses=args.doses)
    print()
    print(f"denoised series : {demo.denoised}")
    print(f"report          : {demo.report / 'report.html'} (also report.md, metrics.csv, summary.json)")
    print(f"figures         : {demo.figures}")
    print(f"checkpoint      : {demo.checkpoint}")
    print(f"training run    : {demo.run_dir} (curves.png, metrics.jsonl)")
    if demo.generalization is not None:
        print(f"generalization  : {demo.generalization / 'report.html'} (dose and kernel benchmark)")
    for line in demo.worse_than_input:
        print(f"WARNING: {line}", file=sys.stderr)
    if demo.random_encoder_reason is not None:
        shout(random_encoder_notice(demo.random_encoder_reason))
    return 0


def cli() -> int:
    """Console-script entry point (``ldct-clip-demo``)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
