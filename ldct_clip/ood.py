"""Out-of-distribution noise benchmark: checkpoints x noises x levels on a folder of test images.

Reproduces the evaluation behind the paper's Tables 1 and 9 (synthetic noise on CBSD68, McMaster,
Kodak24, Urban100) and Table 2 (real sRGB noise on SIDD validation, PolyU, CC):

- Synthetic noise (:mod:`ldct_clip.data.noise`) is drawn from ``np.random.RandomState(seed)`` created
  afresh for every image and every case, as the released test script re-seeded ``np.random.seed(0)``
  before each image: every run, and every model, sees the same noisy inputs.
- A paired folder (:class:`~ldct_clip.data.images.RealNoisePairs`) adds the case ``real``: its stored
  noisy images.
- Scores use the ``natural`` metric preset: the output clamped to [0, 1] and scaled to 0–255 (rounded to
  integers for real sRGB noise, as published), PSNR at peak 255 over the whole image, MATLAB-style SSIM
  per channel, averaged; then the mean over images.

When the folder's name (or its parent's) is one of the paper's test sets, the paper's CLIPDenoising
numbers are listed beside the measured ones, marked as quoted.

>>> [case_label(c) for c in parse_cases(["gaussian:25", "real"])]
['Gauss σ=25', 'Real noise']
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from ldct_clip.data.images import RealNoisePairs, is_paired_folder, list_images, read_image
from ldct_clip.data.noise import LEVEL_SYMBOLS, NOISES, default_cases, make_noise, parse_noise_spec
from ldct_clip.device import resolve_device
from ldct_clip.errors import InputError
from ldct_clip.metrics import get_preset, score_slices
from ldct_clip.models.checkpoint import load_checkpoint
from ldct_clip.models.denoiser import SIZE_MULTIPLE, CLIPDenoiser

REAL = "real"
"""The case of a paired folder's stored noisy images."""
PRESET = "natural"
TABLE_MD, TABLE_CSV, PER_IMAGE_CSV = "ood_table.md", "ood_table.csv", "ood_per_image.csv"

Case = tuple[str, Optional[float]]
"""``(noise name, level)``; the level is None for :data:`REAL`."""

_DISPLAY = {"gaussian": "Gauss", "spatial_gaussian": "Spatial Gauss", "poisson": "Poisson", "speckle": "Speckle",
            "salt_pepper": "Salt&Pepper"}

DATASET_ALIASES = {
    "cbsd68": "CBSD68", "mcmaster": "McMaster", "mcm": "McMaster", "kodak24": "Kodak24", "kodak": "Kodak24",
    "urban100": "Urban100", "sidd": "SIDD Val", "siddval": "SIDD Val", "siddvalidation": "SIDD Val",
    "polyu": "PolyU", "cc": "CC", "cc15": "CC",
}
"""Folder names (lower case, letters and digits only) of the paper's test sets."""

_TEST_SETS = ("CBSD68", "McMaster", "Kodak24", "Urban100")
_SYNTHETIC_QUOTES: dict[Case, tuple[tuple[float, float], ...]] = {
    # CLIPDenoising ("Ours"), PSNR/SSIM on CBSD68, McMaster, Kodak24, Urban100; Table 9 unless noted.
    ("gaussian", 15.0): ((33.97, 0.930), (33.86, 0.910), (34.69, 0.922), (33.15, 0.930)),
    ("gaussian", 25.0): ((31.02, 0.878), (31.50, 0.866), (31.86, 0.871), (30.72, 0.893)),
    ("gaussian", 50.0): ((26.69, 0.731), (27.43, 0.727), (27.39, 0.723), (26.27, 0.769)),  # Table 1
    ("spatial_gaussian", 45.0): ((29.43, 0.849), (29.82, 0.825), (30.12, 0.838), (29.42, 0.868)),
    ("spatial_gaussian", 50.0): ((28.51, 0.825), (29.10, 0.803), (29.21, 0.815), (28.55, 0.847)),
    ("spatial_gaussian", 55.0): ((27.60, 0.797), (28.31, 0.775), (28.29, 0.786), (27.68, 0.822)),  # Table 1
    ("poisson", 2.5): ((29.94, 0.874), (30.93, 0.864), (30.93, 0.869), (29.51, 0.884)),
    ("poisson", 3.0): ((28.71, 0.846), (29.82, 0.843), (29.71, 0.841), (28.27, 0.862)),
    ("poisson", 3.5): ((27.67, 0.818), (28.81, 0.820), (28.66, 0.813), (27.15, 0.838)),  # Table 1
    ("speckle", 0.02): ((31.82, 0.904), (32.28, 0.870), (32.91, 0.908), (30.94, 0.904)),
    ("speckle", 0.03): ((30.48, 0.886), (31.31, 0.858), (31.64, 0.891), (29.69, 0.889)),
    ("speckle", 0.04): ((29.49, 0.870), (30.47, 0.845), (30.67, 0.876), (28.69, 0.875)),
    ("salt_pepper", 0.012): ((31.95, 0.890), (31.90, 0.863), (32.72, 0.882), (31.50, 0.901)),
    ("salt_pepper", 0.016): ((30.85, 0.857), (30.85, 0.838), (31.67, 0.863), (30.30, 0.889)),
    ("salt_pepper", 0.02): ((29.81, 0.844), (29.79, 0.807), (30.61, 0.837), (29.40, 0.869)),  # Table 1
}
PAPER_RESULTS: dict[str, dict[Case, tuple[float, float]]] = {
    **{name: {case: rows[i] for case, rows in _SYNTHETIC_QUOTES.items()} for i, name in enumerate(_TEST_SETS)},
    "SIDD Val": {(REAL, None): (34.79, 0.866)},  # Table 2
    "PolyU": {(REAL, None): (37.54, 0.960)},
    "CC": {(REAL, None): (36.30, 0.941)},
}
"""CLIPDenoising's published PSNR/SSIM (Cheng et al., CVPR 2024, Tables 1, 2 and 9) by test set and case."""
PAPER_SOURCE = "Cheng et al., CVPR 2024, CLIPDenoising ('Ours'): Tables 1 and 9 (synthetic), Table 2 (real sRGB)"


def case_label(case: Case) -> str:
    """How the paper writes a case, e.g. ``Poisson α=2.5``."""
    name, level = case
    if name == REAL:
        return "Real noise"
    return f"{_DISPLAY[name]} {LEVEL_SYMBOLS[name]}={level:g}"


def parse_cases(specs: Sequence[str]) -> list[Case]:
    """``NAME:LEVEL,...`` specs (see :func:`~ldct_clip.data.noise.parse_noise_spec`) and ``real``, in order.

    >>> parse_cases(["salt_pepper:0.02", "real"])
    [('salt_pepper', 0.02), ('real', None)]
    """
    cases: list[Case] = []
    for spec in specs:
        name = spec.partition(":")[0].strip()
        if name == REAL:
            if ":" in spec:
                raise InputError(f"--noise {spec!r}: '{REAL}' takes no levels (it is the folder's stored noisy images)")
            new: list[Case] = [(REAL, None)]
        elif name not in NOISES:
            raise InputError(f"unknown noise {name!r} in --noise {spec!r}; valid noises: {', '.join([*NOISES, REAL])}")
        else:
            new = list(parse_noise_spec(spec))
        cases.extend(case for case in new if case not in cases)
    return cases


def dataset_name(folder: str | os.PathLike[str]) -> str | None:
    """The paper's name for a test-set folder (its own name, else its parent's), or None.

    >>> dataset_name("/data/testsets/Kodak24"), dataset_name("/data/McMaster/images"), dataset_name("/x/mine")
    ('Kodak24', 'McMaster', None)
    """
    path = Path(folder).resolve()
    for part in (path.name, path.parent.name):
        key = re.sub(r"[^a-z0-9]", "", part.lower())
        if key in DATASET_ALIASES:
            return DATASET_ALIASES[key]
    return None


def _labels(checkpoints: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    if labels:
        if len(labels) != len(checkpoints) or len(set(labels)) != len(labels):
            raise InputError(f"give one distinct --label per --checkpoint ({len(checkpoints)}), got {list(labels)}")
        return list(labels)
    names = [p.stem for p in checkpoints]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.stem}" for p in checkpoints]
    if len(set(names)) < len(names):
        names = [f"{i + 1}:{name}" for i, name in enumerate(names)]
    return names


@dataclass
class OODResult:
    """Mean scores per (case, model) with the per-image values behind them.

    Attributes:
        images: the test folder; dataset: the paper's name for it (None if it is not one of its sets).
        models: model labels (columns); checkpoints: their files; encoders: their encoder weight sources
            (``random`` marks a smoke-test model); cases: the rows.
        scores: ``{(case, model): (mean PSNR, mean SSIM)}``.
        per_image: one dict per image, case and model (image, noise, level, model, psnr, ssim).
        seed: the noise seed; n_images: images scored.
    """

    images: Path
    dataset: str | None
    models: list[str]
    checkpoints: list[Path]
    encoders: list[str]
    cases: list[Case]
    seed: int
    n_images: int = 0
    scores: dict[tuple[Case, str], tuple[float, float]] = field(default_factory=dict)
    per_image: list[dict[str, object]] = field(default_factory=list)

    def quoted(self, case: Case) -> tuple[float, float] | None:
        """The paper's CLIPDenoising PSNR/SSIM for this case on this test set, if published."""
        return PAPER_RESULTS.get(self.dataset or "", {}).get(case)

    @property
    def has_quotes(self) -> bool:
        return any(self.quoted(case) is not None for case in self.cases)


def _denoise(model: CLIPDenoiser, noisy: np.ndarray, device: torch.device) -> np.ndarray:
    with torch.inference_mode():
        out = model(torch.from_numpy(noisy)[None].to(device)).float().cpu().numpy()[0]
    return np.clip(out, 0.0, 1.0)


def run_ood_benchmark(
    checkpoints: Sequence[str | os.PathLike[str]],
    images: str | os.PathLike[str],
    cases: Sequence[Case] | None = None,
    *,
    labels: Sequence[str] | None = None,
    device: str = "auto",
    seed: int = 0,
    dataset: str | None = None,
    progress: bool = True,
) -> OODResult:
    """Score every checkpoint on every case over the images in ``images``.

    Args:
        checkpoints: model files written by :func:`~ldct_clip.models.checkpoint.save_checkpoint`.
        images: a folder of clean images, or a paired real-noise folder (SIDD, PolyU, CC, clean/ + noisy/).
        cases: ``(noise, level)`` rows (see :func:`parse_cases`); default: the paper's OOD cases for a clean
            folder, ``real`` for a paired one.
        labels: column names, one per checkpoint (default: the file names).
        device: ``auto``, ``cpu`` or ``cuda``. seed: noise seed, the same for every image.
        dataset: the paper's test-set name for quoting (default: from the folder name).
        progress: show a tqdm bar.
    """
    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise InputError("pass at least one --checkpoint")
    torch_device = resolve_device(device)
    models = [load_checkpoint(p, map_location=torch_device) for p in paths]
    channels = {m.in_channels for m in models}
    if len(channels) > 1:
        raise InputError(f"the checkpoints take different channel counts {sorted(channels)}; compare like with like")
    (n_channels,) = channels
    paired = is_paired_folder(images)
    cases = list(cases) if cases else ([(REAL, None)] if paired else default_cases())
    if (REAL, None) in cases and not paired:
        raise InputError(f"{images}: '{REAL}' noise needs a paired folder (clean/ + noisy/, SIDD, PolyU or CC names)")
    if dataset is not None and dataset not in PAPER_RESULTS:
        raise InputError(f"unknown --dataset {dataset!r}; the paper's test sets are: {', '.join(PAPER_RESULTS)}")
    real_pairs = RealNoisePairs(images, n_channels) if paired else None
    files = [] if paired else list_images(images)
    count = len(real_pairs) if real_pairs is not None else len(files)
    result = OODResult(Path(images), dataset or dataset_name(images), _labels(paths, labels), paths,
                       [m.encoder_weight_source for m in models], cases, seed, count)
    preset = get_preset(PRESET)
    totals: dict[tuple[Case, str], list[tuple[float, float]]] = {}
    bar = tqdm(total=count * len(cases), desc="OOD benchmark", unit="case", disable=not progress)
    for index in range(count):
        if real_pairs is not None:
            item = real_pairs[index]
            clean, stored, name = item["clean"], item["noisy"], str(item["name"])
        else:
            clean, stored, name = read_image(files[index], n_channels), None, files[index].name
        if min(clean.shape[1:]) < SIZE_MULTIPLE:
            raise InputError(f"{name}: {clean.shape[1]}x{clean.shape[2]} image is smaller than {SIZE_MULTIPLE} "
                             "pixels; the model needs at least that")
        for case in cases:
            noise_name, level = case
            noisy = stored if noise_name == REAL else make_noise(noise_name, level)(clean, np.random.RandomState(seed))
            for label, model in zip(result.models, models, strict=True):
                pred = _denoise(model, noisy, torch_device) * 255.0
                if noise_name == REAL:
                    pred = np.round(pred)
                scores = score_slices(pred[None], clean[None] * 255.0, preset)
                psnr, ssim = float(scores["psnr"][0]), float(scores["ssim"][0])
                totals.setdefault((case, label), []).append((psnr, ssim))
                result.per_image.append({"image": name, "noise": noise_name, "level": level, "model": label,
                                         "psnr": psnr, "ssim": ssim})
            bar.update()
    bar.close()
    result.scores = {key: (float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals])))
                     for key, vals in totals.items()}
    return result


def _best(values: Sequence[float]) -> set[int]:
    top = max(values)
    return {i for i, v in enumerate(values) if v == top} if len(values) > 1 else set()


def format_markdown(result: OODResult) -> str:
    """The table as Markdown, shaped like the paper's Table 9: rows noise x level, a PSNR/SSIM column per model.

    The best PSNR and the best SSIM among the evaluated models (after rounding to the shown digits) are
    bold; quoted paper numbers are shown beside them and take no part in that.
    """
    title = result.dataset or result.images.name
    quote_column = result.has_quotes
    header = ["Noise", "Level", *result.models] + (["CLIPDenoising (paper, quoted)"] if quote_column else [])
    lines = [
        f"# OOD noise benchmark: {title} ({result.n_images} images)",
        "",
        f"PSNR (dB) / SSIM, metric preset `{PRESET}`: {get_preset(PRESET).description}"
        + ("; real-noise outputs rounded to integers first" if (REAL, None) in result.cases else "")
        + f"; synthetic noise from `RandomState({result.seed})` re-seeded for every image. "
        "**Bold**: best of the models evaluated here.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    for case in result.cases:
        psnrs = [round(result.scores[(case, m)][0], 2) for m in result.models]
        ssims = [round(result.scores[(case, m)][1], 3) for m in result.models]
        best_p, best_s = _best(psnrs), _best(ssims)
        cells = [
            (f"**{p:.2f}**" if i in best_p else f"{p:.2f}") + "/" + (f"**{s:.3f}**" if i in best_s else f"{s:.3f}")
            for i, (p, s) in enumerate(zip(psnrs, ssims, strict=True))
        ]
        label = case_label(case)
        noise_text, _, level_text = label.rpartition(" ") if case[0] != REAL else (label, "", "stored")
        if quote_column:
            quote = result.quoted(case)
            cells.append(f"{quote[0]:.2f}/{quote[1]:.3f}" if quote else "–")
        lines.append("| " + " | ".join([noise_text, level_text, *cells]) + " |")
    lines.append("")
    for label, path, encoder in zip(result.models, result.checkpoints, result.encoders, strict=True):
        lines.append(f"- `{label}`: {path} (encoder weights: {encoder})")
    if quote_column:
        lines.append(f"- Quoted, not measured here: {PAPER_SOURCE}.")
    return "\n".join(lines) + "\n"


def format_csv(result: OODResult) -> str:
    """The table as CSV: noise, level, then PSNR and SSIM per model (and the paper's, when quoted)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    quote_column = result.has_quotes
    quoted = ["paper CLIPDenoising PSNR (quoted)", "paper CLIPDenoising SSIM (quoted)"] if quote_column else []
    writer.writerow(["noise", "level", *[f"{m} {metric}" for m in result.models for metric in ("PSNR", "SSIM")],
                     *quoted])
    for case in result.cases:
        row: list[object] = [case[0], "" if case[1] is None else f"{case[1]:g}"]
        for m in result.models:
            psnr, ssim = result.scores[(case, m)]
            row += [f"{psnr:.4f}", f"{ssim:.5f}"]
        if quote_column:
            quote = result.quoted(case)
            row += [f"{quote[0]:.2f}", f"{quote[1]:.3f}"] if quote else ["", ""]
        writer.writerow(row)
    return buffer.getvalue()


def write_ood_tables(result: OODResult, output_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``ood_table.md``, ``ood_table.csv`` and ``ood_per_image.csv`` into ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_image = io.StringIO()
    writer = csv.DictWriter(per_image, fieldnames=["image", "noise", "level", "model", "psnr", "ssim"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "level": "" if row["level"] is None else f"{row['level']:g}"} for row in result.per_image)
    written = []
    for name, text in ((TABLE_MD, format_markdown(result)), (TABLE_CSV, format_csv(result)),
                       (PER_IMAGE_CSV, per_image.getvalue())):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written
