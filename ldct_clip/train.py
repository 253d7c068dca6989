"""``python -m ldct_clip.train``: train a CLIPDenoiser from a YAML config.

Examples::

    python -m ldct_clip.train --config configs/ldct_mayo_sigma5.yaml --data-root /data/mayo2016
    python -m ldct_clip.train --config configs/ldct_mayo_sigma5.yaml --data-root manifest.csv \\
        --set model.pfa_gamma=0.05 --set train.batch_size=8 --output-dir runs/gamma005
    python -m ldct_clip.train --resume runs/gamma005
    torchrun --nproc_per_node 2 -m ldct_clip.train --config ... --output-dir runs/ddp
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from ldct_clip.cli import run_cli
from ldct_clip.config import ExperimentConfig, load_config
from ldct_clip.errors import InputError
from ldct_clip.training import BEST, CHECKPOINT_DIR, CONFIG_FILE, LAST, RESUME, RUN_INFO, Trainer

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldct-clip-train", description="Train a CLIPDenoiser from a YAML config.")
    parser.add_argument("--config", type=Path, help="YAML experiment config (see configs/)")
    parser.add_argument("--data-root", help="AAPM-Mayo folder or manifest CSV (mayo), or image folder")
    parser.add_argument("--output-dir", type=Path, help="run folder (default: runs/<name>-<date>-<time>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set model.pfa_gamma=0.05 (repeatable)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    return parser


def _with_data_root(config: ExperimentConfig, data_root: str | None) -> ExperimentConfig:
    if data_root is None:
        return config
    return dataclasses.replace(config, data=dataclasses.replace(config.data, root=data_root))


def _new_run_dir(config: ExperimentConfig, output_dir: Path | None) -> Path:
    if output_dir is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise InputError("under torchrun pass --output-dir so that every process writes to the same run folder")
        output_dir = Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (output_dir / RUN_INFO).exists():
        raise InputError(f"{output_dir}: already holds a run; continue it with --resume {output_dir} "
                         "or pick another --output-dir")
    return output_dir


def _check_outside_data(config: ExperimentConfig, run_dir: Path) -> None:
    """Refuse a run folder inside the data root before anything is written (the data is never written to)."""
    root = config.data.root
    if root is not None and Path(root).is_dir() and run_dir.resolve().is_relative_to(Path(root).resolve()):
        raise InputError(f"{run_dir}: inside the data root {root}; pick an --output-dir outside the data folder")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.resume is not None:
        if args.config is not None or args.overrides:
            raise InputError("--resume continues with the config saved in the run folder (only --data-root may change, "
                             "if the data moved); drop --config/--set, or start a new run to change settings")
        run_dir = args.resume
        if not (run_dir / CHECKPOINT_DIR / RESUME).is_file():
            older = (run_dir / CHECKPOINT_DIR / LAST).is_file()
            raise InputError(f"{run_dir}: no {CHECKPOINT_DIR}/{RESUME} to resume from; " + (
                "the run was made by an ldct_clip before 0.2, whose training state cannot be resumed exactly: "
                f"start a new run (its {CHECKPOINT_DIR}/{LAST} still works for inference)" if older else
                "pass a run folder made by ldct-clip-train"))
        config = _with_data_root(load_config(run_dir / CONFIG_FILE, args.overrides), args.data_root)
    else:
        if args.config is None:
            raise InputError("pass --config CONFIG.yaml (see configs/) or --resume RUN_DIR")
        config = _with_data_root(load_config(args.config, args.overrides), args.data_root)
        run_dir = _new_run_dir(config, args.output_dir)
    _check_outside_data(config, run_dir)
    created = not run_dir.exists()
    try:
        trainer = Trainer(config, run_dir, resume=args.resume is not None)
        try:
            result = trainer.run()
        finally:
            trainer.dist.close()  # the group's threads end before the interpreter does
    except BaseException:
        if created and not (run_dir / RUN_INFO).exists():  # a run that never started leaves nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if trainer.dist.is_main:
        print(f"run folder      : {run_dir}")
        print(f"last checkpoint : {run_dir / CHECKPOINT_DIR / LAST}")
        print(f"best checkpoint : {run_dir / CHECKPOINT_DIR / BEST}")
        if result:
            print(f"validation      : PSNR {result['val_psnr']:.2f} dB, SSIM {result['val_ssim']:.4f} "
                  f"({config.train.metric_preset} preset, {result['val_items']} images)")
    return 0


def cli() -> int:
    """Console-script entry point (``ldct-clip-train``)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
