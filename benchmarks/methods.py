"""Every method trained for a stated budget on the same data and measured on the same held-out slices.

    python benchmarks/methods.py [--minutes-per-method N] [--output bench_methods]          # the demo data
    python benchmarks/methods.py --data-root /data/mayo --split clipdenoising --minutes-per-method 30

Data: by default the demo's (:func:`ldct_clip.demo.build_demo_data`): five real CT slices from pydicom's test
data, stacked as two patients (DEMO01 trains, DEMO02 is held out) with a simulated quarter dose; or any
AAPM-Mayo-layout folder (``--data-root``, split ``--split``). Recipes: the smoke-sized ones of the demo,
:func:`ldct_clip.demo.demo_config` for CLIPDenoising and :func:`ldct_clip.demo.comparison_config` for
Noise2Sim, RED-CNN and ScoreSDE-CT (the official recipes shrunk to 64×64 patches and batch 4), each schedule
fitted to the budget by timing a few of its steps first (see :func:`method_config`). CLIPDenoising's
encoder is RANDOMLY INITIALISED here (the CLIP weights cannot be downloaded offline; ``--encoder-weights
RN50.pt`` uses real ones): its row is then not CLIPDenoising's, and the output says so.

Evaluation: :func:`ldct_clip.evaluation.evaluate` of every ``last.safetensors`` on the held-out patient
under the three CT presets, beside the low-dose input and TV. One table: PSNR/SSIM per preset, HU bias and
noise SD in flat soft-tissue ROIs, seconds per slice, training minutes and steps, and for each method the
paired PSNR difference against the low-dose input under its own paper's preset with its 95 % bootstrap CI
(ScoreSDE-CT's own preset is ``clipdenoising``: its paper has no denoising task). Writes
``OUTPUT/benchmark.md`` and the full evaluation report ``OUTPUT/report/``; prints the table with the machine
load before and after (the machine may be shared: seconds are comparable within one run only).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from infer_throughput import cpu_name

from ldct_clip.cli import run_cli
from ldct_clip.config import ExperimentConfig
from ldct_clip.demo import SPLIT as DEMO_SPLIT
from ldct_clip.demo import build_demo_data, comparison_config, demo_config, shout
from ldct_clip.device import DEVICES
from ldct_clip.errors import InputError
from ldct_clip.evaluation import (
    CT_PRESETS,
    EvaluationResult,
    evaluate,
    load_manifest,
    pairs_from_manifest,
    write_report,
)
from ldct_clip.evaluation.run import LOW_DOSE
from ldct_clip.methods import get_method
from ldct_clip.models.checkpoint import load_checkpoint
from ldct_clip.models.encoder import RANDOM
from ldct_clip.training import CHECKPOINT_DIR, LAST, Trainer

METHODS = ("clipdenoising", "noise2sim", "redcnn", "scoresde_ct")
"""Benchmarked methods; the first is the reference of the report's paired statistics."""
DEFAULT_MINUTES = {"clipdenoising": 3.0, "noise2sim": 4.0, "redcnn": 8.0, "scoresde_ct": 10.0}
"""Training budget of each method: on 2 quiet CPU cores about 450 steps of CLIPDenoising (0.34 s a step),
400 of Noise2Sim (0.5 s) and 165 of RED-CNN (2.5 s: full-resolution 96-channel 5×5 convolutions on 4 × 4
patches), which each method needs to pass its input on the demo data; the score model gets what fits in 10."""
DEFAULT_SLICE_SIZE = 256
"""Demo slices are resampled to 256×256 (the demo: 512): ScoreSDE-CT's sampler costs 4× less per slice."""


def method_config(method: str, data_root: Path, minutes: float, split: str, encoder_weights: str, device: str,
                  score_steps: int | None) -> ExperimentConfig:
    """The demo's recipe of ``method`` on ``split`` of ``data_root``, its schedule fitted to ``minutes``.

    The demo's configs time a few training steps here and now to size the schedule
    (:func:`ldct_clip.training.budget.steps_in_budget`); the run then completes that schedule even if the
    machine slows down (no ``train.max_minutes``): a schedule cut short leaves a model at its peak learning
    rate, which would measure the load, not the method. The table states the minutes each run took.
    Validation runs once, at the end (the benchmark evaluates ``last.safetensors`` anyway, and a ScoreSDE-CT
    validation costs a sampler run per slice).
    """
    if method == "clipdenoising":
        config = demo_config(data_root, minutes, encoder_weights, device=device)
    else:
        config = comparison_config(method, data_root, minutes, device=device)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, split=split),
                                 train=dataclasses.replace(config.train, val_every=config.schedule.iterations,
                                                           max_minutes=None))
    if method == "scoresde_ct" and score_steps is not None:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, n=score_steps))
    return config


def train(config: ExperimentConfig, run_dir: Path) -> tuple[float, int]:
    """Train ``config`` in ``run_dir``; wall-clock minutes and the steps reached."""
    started = time.perf_counter()
    trainer = Trainer(config, run_dir)
    trainer.run()
    return (time.perf_counter() - started) / 60.0, trainer.step


def format_table(result: EvaluationResult, training: dict[str, tuple[float, int]]) -> str:
    """One Markdown table: a row per method (models, low-dose input, TV), the columns of the module docstring."""
    presets = [p.name for p in result.presets]
    head = ["Method"] + [f"{p} PSNR / SSIM" for p in presets] + [
        "HU bias / noise SD", "s/slice", "train min (steps)", "own preset: ΔPSNR vs low-dose [95 % CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    n = len(result.slices)
    for method in result.methods:
        cells = [method.label]
        for preset in presets:
            s = result.summary(preset, method.key)
            cells.append(f"{s.psnr_mean:.2f} / {s.ssim_mean:.4f}")
        roi = result.roi_summary(method.key)
        cells.append("—" if roi is None else f"{roi['bias_hu']:+.1f} / {roi['noise_sd_hu']:.1f}")
        cells.append("—" if method.key == LOW_DOSE else f"{result.seconds[method.key] / n:.3g}")
        if method.method is None:
            cells += ["—", "—"]
        else:
            minutes, steps = training[method.method]
            cells.append(f"{minutes:.2f} ({steps})")
            own = get_method(method.method).paper_preset
            d = result.comparison(own, "psnr", method.key, LOW_DOSE).difference
            ci = "no CI" if d.ci_low is None else f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
            verdict = "beats the input" if d.mean > 0 else "DOES NOT beat the input"
            cells.append(f"{own}: {d.mean:+.2f} dB {ci}, {verdict}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPU(s)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, help="AAPM-Mayo-layout folder (default: build the demo data)")
    parser.add_argument("--split", help=f"split whose test patients are held out (default {DEMO_SPLIT} for the demo "
                                        "data, clipdenoising for --data-root)")
    parser.add_argument("--minutes-per-method", type=float,
                        help="training budget of every method in wall-clock minutes (default: "
                             + ", ".join(f"{m} {v:g}" for m, v in DEFAULT_MINUTES.items()) + ")")
    parser.add_argument("--output", type=Path, default=Path("bench_methods"), help="new folder for runs and report")
    parser.add_argument("--slice-size", type=int, default=DEFAULT_SLICE_SIZE,
                        help=f"demo slices resampled to N×N (default {DEFAULT_SLICE_SIZE})")
    parser.add_argument("--encoder-weights", default=RANDOM,
                        help="CLIPDenoising's encoder: 'random' (default: CLIP weights cannot be had offline) "
                             "or RN50.pt")
    parser.add_argument("--score-steps", type=int, help="ScoreSDE-CT sampler steps (default: the demo's)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to benchmark")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.minutes_per_method is not None and not args.minutes_per_method > 0:
        raise InputError(f"--minutes-per-method {args.minutes_per_method}: must be a positive number of minutes")
    if args.score_steps is not None and args.score_steps < 1:
        raise InputError(f"--score-steps {args.score_steps}: must be a positive integer")
    if args.output.exists() and any(args.output.iterdir()):
        raise InputError(f"{args.output}: already holds files; pass a new --output")
    print(f"{platform.platform()}, {cpu_name()}, torch {torch.__version__} with {torch.get_num_threads()} thread(s); "
          f"{_load()} at the start", flush=True)
    if args.encoder_weights == RANDOM and "clipdenoising" in args.methods:
        shout("CLIPDenoising runs with a RANDOMLY INITIALISED encoder (the CLIP RN50 weights are not available "
               "offline): its numbers are NOT CLIPDenoising's. Pass --encoder-weights RN50.pt for real ones.")
    if args.data_root is None:
        print(f"building the demo data ({args.slice_size}×{args.slice_size}, simulated quarter dose) in "
              f"{args.output / 'data'}", flush=True)
        data_root, split = build_demo_data(args.output, args.slice_size), args.split or DEMO_SPLIT
    else:
        data_root, split = args.data_root, args.split or "clipdenoising"
    budgets = {m: args.minutes_per_method or DEFAULT_MINUTES[m] for m in args.methods}
    training: dict[str, tuple[float, int]] = {}
    for method, budget in budgets.items():  # each schedule fitted just before its run, under the load of that moment
        config = method_config(method, data_root, budget, split, args.encoder_weights, args.device, args.score_steps)
        print(f"training {get_method(method).title}: {config.schedule.iterations} steps fitted to "
              f"{budget:g} min; {_load()}", flush=True)
        training[method] = train(config, args.output / "runs" / method)
    entries = [(get_method(m).title, load_checkpoint(args.output / "runs" / m / CHECKPOINT_DIR / LAST))
               for m in args.methods]
    pairs = pairs_from_manifest(load_manifest(data_root), split)
    print(f"evaluating on {len(pairs)} held-out slice(s) of {', '.join(dict.fromkeys(s.patient for s in pairs.slices))}"
          f"; {_load()}", flush=True)
    result = evaluate(entries, pairs, presets=CT_PRESETS, baselines=("tv",), device=args.device, progress=True)
    write_report(result, args.output / "report",
                 command=" ".join(["python", "benchmarks/methods.py", *(sys.argv[1:] if argv is None else argv)]))
    lines = [
        f"Methods benchmark: {result.data_description}; {len(result.slices)} held-out slice(s).",
        "Budget: schedules fitted to " + ", ".join(f"{get_method(m).title} {b:g}" for m, b in budgets.items())
        + f" wall-clock minute(s) of training (device {result.settings['device']}); the train min column is what "
        "each run took.",
        "",
        format_table(result, training),
        "",
        "HU bias / noise SD: mean over the automatically found flat soft-tissue ROIs of the held-out slices.",
    ]
    if result.encoder_is_random:
        lines.append("WARNING: CLIPDenoising's encoder is RANDOMLY INITIALISED: its row is NOT CLIPDenoising's.")
    lines.append(f"Machine: {cpu_name()}; {_load()} at the end.")
    text = "\n".join(lines) + "\n"
    (args.output / "benchmark.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
