"""The CLIPDenoising paper's Table 3 in one command: train the four methods on AAPM-Mayo and measure them on L506.

    python pipelines/reproduce_table3.py --data-root /data/mayo2016 --encoder-weights RN50.pt --output table3
    python pipelines/reproduce_table3.py --data-root /data/mayo2016 --output t3-smoke --smoke   # a few minutes

Steps:

1. **Training.** Each method with its full recipe, in its own run folder ``OUTPUT/runs/<method>``:
   CLIPDenoising (``configs/ldct_mayo_sigma5.yaml``, ``model.encoder_weights`` from ``--encoder-weights``),
   Noise2Sim (``noise2sim_mayo.yaml``), ScoreSDE-CT (``scoresde_ct_mayo.yaml``) and RED-CNN
   (``redcnn_mayo.yaml``); ``--smoke`` takes the ``*_smoke.yaml`` variants. Rerunning the command resumes
   what was interrupted: a run folder with ``checkpoints/resume.safetensors`` continues exactly where it
   stopped (:class:`ldct_clip.training.Trainer` with ``resume=True``, its saved ``config.yaml``), and one
   whose saved step reached ``schedule.iterations`` is skipped. A run folder trained with other settings
   than this command asks for is refused rather than silently mixed.
2. **Evaluation.** The ``last.safetensors`` of every run (``best.safetensors`` is chosen on validation
   slices of L506, the test patient itself) on the same L506 slices (split ``clipdenoising``, 1 mm) under the
   ``clipdenoising`` preset, beside the low-dose input and TV, with :func:`ldct_clip.evaluation.evaluate`;
   the full report goes to ``OUTPUT/report/``.
3. **Table.** ``OUTPUT/table3.md`` and ``OUTPUT/table3.csv``: every measured row with its mean PSNR/SSIM,
   the paired differences against the low-dose input and against CLIPDenoising with their 95 % bootstrap
   confidence intervals, seconds per slice, and the paper's quoted rows marked as quoted. It is printed too.

ScoreSDE-CT samples with ``2·steps + 1`` network evaluations per slice (2001 with the official 1000 steps,
hours for L506's 526 slices even on a GPU); ``--score-steps N`` samples with N steps instead, and the
table says which steps were used.

``--set KEY=VALUE`` overrides a config value of every method and ``--set METHOD:KEY=VALUE`` of one method
(e.g. ``--set train.device=cuda``, ``--set redcnn:train.batch_size=8``). Bad input prints one line on stderr
and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ldct_clip.atomic import partial_path
from ldct_clip.cli import run_cli
from ldct_clip.config import ExperimentConfig, load_config
from ldct_clip.device import DEVICES
from ldct_clip.errors import InputError
from ldct_clip.evaluation import (
    EvaluationResult,
    evaluate,
    load_manifest,
    pairs_from_manifest,
    published_rows,
    worse_than_input,
    write_report,
)
from ldct_clip.evaluation.run import FIRST_MODEL, LOW_DOSE, load_model_entry
from ldct_clip.evaluation.statistics import PairedDifference
from ldct_clip.methods import get_method
from ldct_clip.models.checkpoint import read_checkpoint_metadata
from ldct_clip.training import CHECKPOINT_DIR, CONFIG_FILE, LAST, RESUME, Trainer

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
METHOD_CONFIGS: dict[str, str] = {
    "clipdenoising": "ldct_mayo_sigma5",
    "noise2sim": "noise2sim_mayo",
    "scoresde_ct": "scoresde_ct_mayo",
    "redcnn": "redcnn_mayo",
}
"""Method -> its config's name in ``configs/`` (``<name>_smoke.yaml`` with ``--smoke``); CLIPDenoising first:
it is the reference of the paired differences, as in the paper."""
PRESET = "clipdenoising"
"""Table 3's metric preset (HU in [-1024, 3072], data range 4096)."""
SPLIT = "clipdenoising"
"""Table 3's split: test L506, train the other nine patients."""
BASELINES = ("tv",)
"""The baseline of Table 3 (BM3D is not in it)."""
PAPER_NAMES = {"clipdenoising": "CLIPDenoising", "noise2sim": "Noise2Sim", "scoresde_ct": "ScoreSDE", "tv": "TV"}
"""Measured row key -> the method's name in the paper's rows (:func:`ldct_clip.evaluation.published_rows`)."""
COMPARABLE = "every 1 mm slice of L506, as in the paper's table (526 in the AAPM-Mayo data)"
NOT_COMPARABLE = "NOT every 1 mm slice of L506: the quoted rows are context, not a comparison"
RUNS, REPORT, TABLE_MD, TABLE_CSV = "runs", "report", "table3.md", "table3.csv"
_IGNORED_ON_RESUME = ("data.root", "train.device")  # may change between invocations without changing the run


class RunStatus(NamedTuple):
    """Where one method's training stands: ``new``, ``resume`` (at ``step``) or ``done``."""

    method: str
    run_dir: Path
    state: str
    step: int
    total: int


def parse_overrides(values: Sequence[str]) -> dict[str | None, list[str]]:
    """``--set`` values by method (None: every method).

    >>> parse_overrides(["schedule.iterations=2", "redcnn:model.channels=8"])
    {None: ['schedule.iterations=2'], 'redcnn': ['model.channels=8']}
    """
    found: dict[str | None, list[str]] = {}
    for value in values:
        key, sep, _ = value.partition("=")
        if not sep or not key:
            raise InputError(f"--set {value!r}: expected KEY=VALUE or METHOD:KEY=VALUE, "
                             "e.g. --set schedule.iterations=2")
        method: str | None = None
        if ":" in key:
            method, _, value = value.partition(":")
            if method not in METHOD_CONFIGS:
                raise InputError(f"--set {method}:...: unknown method {method!r}; "
                                 f"use one of {', '.join(METHOD_CONFIGS)}")
        found.setdefault(method, []).append(value)
    return found


def method_config(method: str, configs_dir: Path, data_root: str, smoke: bool, encoder_weights: str | None,
                  overrides: dict[str | None, list[str]], device: str | None) -> ExperimentConfig:
    """The config of ``method`` as this command trains it: data root, encoder weights, device, ``--set``s."""
    path = configs_dir / f"{METHOD_CONFIGS[method]}{'_smoke' if smoke else ''}.yaml"
    if not path.is_file():
        raise InputError(f"{path}: config not found; pass --configs-dir with the project's configs/ folder")
    sets = [f"data.root={data_root}"]
    if method == "clipdenoising" and encoder_weights is not None:
        sets.append(f"model.encoder_weights={encoder_weights}")
    if device is not None:
        sets.append(f"train.device={device}")
    sets += [*overrides.get(None, []), *overrides.get(method, [])]
    config = load_config(path, sets)
    if config.method != method:
        raise InputError(f"{path}: is a config of method {config.method!r}, not {method!r}")
    return config


def run_status(method: str, run_dir: Path, total: int) -> RunStatus:
    """Whether ``run_dir`` holds nothing to resume, an unfinished run, or a finished one (its saved step)."""
    resume = run_dir / CHECKPOINT_DIR / RESUME
    if not resume.is_file():
        return RunStatus(method, run_dir, "new", 0, total)
    step = int(read_checkpoint_metadata(resume).get("step", "0"))
    return RunStatus(method, run_dir, "done" if step >= total else "resume", step, total)


def _differences(wanted: ExperimentConfig, saved: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between two configs (those that may change on resume left out)."""
    def flat(value: object, prefix: str = "") -> dict[str, object]:
        if isinstance(value, dict):
            return {k: v for key, sub in value.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    a, b = flat(wanted.to_dict()), flat(saved.to_dict())
    return sorted(k for k in set(a) | set(b) if k not in _IGNORED_ON_RESUME and a.get(k) != b.get(k))


def train_method(config: ExperimentConfig, run_dir: Path) -> RunStatus:
    """Train ``config`` in ``run_dir``: a new run, the saved run resumed, or nothing when it finished."""
    status = run_status(config.method, run_dir, config.schedule.iterations)
    if status.state != "new":
        saved = load_config(run_dir / CONFIG_FILE)
        changed = _differences(config, saved)
        if changed:
            raise InputError(f"{run_dir}: was trained with other settings ({', '.join(changed[:5])} differ); "
                             "rerun with the same options, or pass another --output")
        config = dataclasses.replace(config, train=dataclasses.replace(saved.train, device=config.train.device),
                                     data=dataclasses.replace(saved.data, root=config.data.root))
    title = get_method(config.method).title
    if status.state == "done":
        _say(f"{title}: finished ({status.step}/{status.total} steps) in {run_dir}; skipped")
        return status
    what = "training" if status.state == "new" else f"resuming at step {status.step} of"
    _say(f"{title}: {what} {config.schedule.iterations} steps in {run_dir}")
    Trainer(config, run_dir, resume=status.state == "resume").run()
    return run_status(config.method, run_dir, config.schedule.iterations)


def evaluate_runs(runs: Sequence[RunStatus], data_root: str, score_steps: int | None, device: str,
                  max_slices: int | None, progress: bool = True) -> tuple[EvaluationResult, int | None]:
    """Every run's ``last.safetensors`` on L506 under the ``clipdenoising`` preset; also the sampler steps used."""
    entries, steps_used = [], None
    for run in runs:
        entry = load_model_entry(run.run_dir / CHECKPOINT_DIR / LAST, get_method(run.method).title)
        if get_method(run.method).samples:
            if score_steps is not None:  # evaluate() samples with the model's own n: set it on the model
                entry.model.settings = dataclasses.replace(entry.model.settings, n=score_steps)
            steps_used = entry.model.settings.n
        entries.append(entry)
    pairs = pairs_from_manifest(load_manifest(data_root), SPLIT)
    if max_slices is not None:
        pairs = pairs.evenly_spaced(max_slices)
    result = evaluate(entries, pairs, presets=(PRESET,), baselines=BASELINES, device=device, progress=progress)
    if steps_used is not None:
        result.notes.append(f"ScoreSDE-CT sampled with {steps_used} predictor-corrector steps "
                            f"({2 * steps_used + 1} network evaluations per slice; the official sampler: 1000).")
    return result, steps_used


def _interval(d: PairedDifference | None, digits: int) -> str:
    if d is None:
        return "reference"
    if d.ci_low is None or d.ci_high is None:
        return f"{d.mean:+.{digits}f} (no CI: {d.note})"
    return f"{d.mean:+.{digits}f} [{d.ci_low:+.{digits}f}, {d.ci_high:+.{digits}f}]"


def table_rows(result: EvaluationResult) -> list[dict[str, object]]:
    """One row per measured method (models, low-dose input, TV), then the paper's quoted rows.

    Measured rows carry the paired differences (mean, 95 % CI, Wilcoxon p) against the low-dose input and
    against the first model (CLIPDenoising), and seconds per slice.
    """
    rows: list[dict[str, object]] = []
    n = len(result.slices)
    for method in result.methods:
        summary = result.summary(PRESET, method.key)
        row: dict[str, object] = {
            "source": "measured", "key": method.key, "method": method.label, "n_slices": n,
            "psnr_mean": summary.psnr_mean, "psnr_std": summary.psnr_std,
            "ssim_mean": summary.ssim_mean, "ssim_std": summary.ssim_std,
            "seconds_per_slice": result.seconds[method.key] / n,
        }
        for reference, name in ((LOW_DOSE, "low_dose"), (FIRST_MODEL, "first")):
            for metric in ("psnr", "ssim"):
                d = (None if method.key == reference
                     else result.comparison(PRESET, metric, method.key, reference).difference)
                row[f"d_{metric}_vs_{name}"] = None if d is None else d.mean
                row[f"d_{metric}_vs_{name}_ci_low"] = None if d is None else d.ci_low
                row[f"d_{metric}_vs_{name}_ci_high"] = None if d is None else d.ci_high
                row[f"d_{metric}_vs_{name}_p"] = None if d is None else d.p_value
                row[f"_{metric}_{name}"] = d
        rows.append(row)
    for quoted in published_rows(PRESET):
        rows.append({"source": "quoted", "key": None, "method": quoted.method, "n_slices": None,
                     "psnr_mean": quoted.psnr, "ssim_mean": quoted.ssim})
    return rows


def _measured_key(row: dict[str, object], result: EvaluationResult) -> str | None:
    """The registry method of a measured row (``tv`` for TV), to match it with its quoted row."""
    key = str(row["key"])
    if key in ("tv", LOW_DOSE):
        return key
    return result.method(key).method


def format_markdown(result: EvaluationResult, rows: list[dict[str, object]], steps: int | None,
                    command: str) -> str:
    """Table 3 as Markdown: the measured rows with paired differences and CIs, then the quoted rows."""
    first = result.models[0].label
    paper = {row["method"]: row for row in rows if row["source"] == "quoted"}
    lines = [
        f"# Table 3, measured: {result.data_description}",
        "",
        f"Preset `{PRESET}` (HU in [-1024, 3072], data range 4096); {len(result.slices)} slices "
        f"({COMPARABLE if result.published_comparable else NOT_COMPARABLE}). "
        "Differences are paired over the same slices, mean with a 95 % bootstrap confidence interval "
        f"({'patients' if len(result.patients) > 1 else 'slices'} resampled). ",
        "",
        f"ScoreSDE-CT sampler: {steps} steps ({2 * steps + 1} network evaluations per slice; the official sampler "
        "uses 1000)." if steps is not None else "ScoreSDE-CT: not evaluated.",
        "",
        f"| Method | Source | PSNR (dB) | SSIM | ΔPSNR vs low-dose [95 % CI] | ΔSSIM vs low-dose [95 % CI] "
        f"| ΔPSNR vs {first} [95 % CI] | ΔSSIM vs {first} [95 % CI] | s/slice | Paper PSNR / SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["source"] == "quoted":
            lines.append(f"| {row['method']} | quoted (paper) | {row['psnr_mean']:.2f} | {row['ssim_mean']:.3f} "
                         "| — | — | — | — | — | — |")
            continue
        quoted = paper.get(PAPER_NAMES.get(str(_measured_key(row, result)), ""))
        paper_cell = "—" if quoted is None else f"{quoted['psnr_mean']:.2f} / {quoted['ssim_mean']:.3f}"
        lines.append(
            f"| {row['method']} | measured | {row['psnr_mean']:.2f} ± {row['psnr_std']:.2f} "
            f"| {row['ssim_mean']:.4f} ± {row['ssim_std']:.4f} "
            f"| {'—' if row['key'] == LOW_DOSE else _interval(row['_psnr_low_dose'], 2)} "
            f"| {'—' if row['key'] == LOW_DOSE else _interval(row['_ssim_low_dose'], 4)} "
            f"| {_interval(row['_psnr_first'], 2)} | {_interval(row['_ssim_first'], 4)} "
            f"| {row['seconds_per_slice']:.3g} | {paper_cell} |")
    lines += ["", "Quoted rows: " + published_rows(PRESET)[0].source + "; they were not measured here.", ""]
    lines += [f"- {note}" for note in result.notes]
    lines += [f"- WARNING: {line}" for line in worse_than_input(result)]
    if result.encoder_is_random:
        lines.append("- WARNING: a CLIPDenoiser here has a RANDOMLY INITIALISED encoder: its numbers are not "
                     "CLIPDenoising's (pass --encoder-weights RN50.pt).")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def format_csv(rows: list[dict[str, object]]) -> str:
    """The rows as CSV (private ``_`` fields left out; empty cells where a value does not apply)."""
    fields = [k for k in rows[0] if not k.startswith("_")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})
    return out.getvalue()


def _write_text(path: Path, text: str) -> None:
    temp = partial_path(path)
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="AAPM-Mayo folder or manifest CSV from prepare_mayo.py")
    parser.add_argument("--encoder-weights", help="CLIP RN50 weights for CLIPDenoising (RN50.pt or an open_clip "
                                                  "checkpoint; required without --smoke)")
    parser.add_argument("--output", type=Path, required=True,
                        help="folder for runs/<method>, report/, table3.md and table3.csv (rerun to resume)")
    parser.add_argument("--configs-dir", type=Path, default=CONFIGS_DIR, help="folder of the method configs")
    parser.add_argument("--smoke", action="store_true", help="the *_smoke.yaml recipes: minutes, numbers mean nothing")
    parser.add_argument("--device", choices=DEVICES, help="compute device of training and evaluation (default auto)")
    parser.add_argument("--max-slices", type=int, help="evaluate N evenly spread L506 slices (no longer Table 3's)")
    parser.add_argument("--score-steps", type=int,
                        help="ScoreSDE-CT sampler steps at evaluation (default: its config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[METHOD:]KEY=VALUE",
                        help="config override for every method, or for METHOD only (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="hide the evaluation progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.encoder_weights is None and not args.smoke:
        raise InputError("--encoder-weights: required for the full recipe (CLIP RN50 weights, e.g. RN50.pt); "
                         "or pass --smoke")
    for name in ("max_slices", "score_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} {value}: must be a positive integer")
    root = Path(args.data_root)
    if root.is_dir() and args.output.resolve().is_relative_to(root.resolve()):
        raise InputError(f"{args.output}: inside the data root {root}; pick an --output outside the data folder")
    overrides = parse_overrides(args.overrides)
    configs = [method_config(m, args.configs_dir, args.data_root, args.smoke, args.encoder_weights, overrides,
                             args.device) for m in METHOD_CONFIGS]  # all checked before any training
    runs = [train_method(config, args.output / RUNS / config.method) for config in configs]
    unfinished = [run for run in runs if run.state != "done"]
    if unfinished:  # a train.max_minutes budget ran out: evaluate only what finished
        raise InputError(f"{', '.join(f'{r.method} ({r.step}/{r.total})' for r in unfinished)}: training stopped "
                         "before its last step (train.max_minutes); rerun the same command to resume")
    result, steps = evaluate_runs(runs, args.data_root, args.score_steps, args.device or "auto", args.max_slices,
                                  progress=not args.no_progress)
    command = shlex.join(["python", "pipelines/reproduce_table3.py", *(argv if argv is not None else sys.argv[1:])])
    write_report(result, args.output / REPORT, overwrite=True, command=command)
    rows = table_rows(result)
    markdown = format_markdown(result, rows, steps, command)
    _write_text(args.output / TABLE_CSV, format_csv(rows))
    _write_text(args.output / TABLE_MD, markdown)
    print(markdown)
    print(f"table : {args.output / TABLE_MD} (and {TABLE_CSV}); report: {args.output / REPORT}/report.html")
    return 0


def _say(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))
