"""The training loop: AdamW + L1 with gradient clipping, mixup, feature augmentation, validation, resume.

Reproducibility is built on one rule: everything random in a step (which slices, crops, flips, noise,
mixup and feature augmentation) is drawn from generators seeded by ``(seed, step, rank)``. A run that is
stopped and resumed therefore computes exactly the steps an uninterrupted run would, whatever the
number of DataLoader workers.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel; only the adapter
and decoder train, each process draws its own batches, and rank 0 validates, logs and saves.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ldct_clip.config import ExperimentConfig, save_config
from ldct_clip.data.hu import model_to_hu
from ldct_clip.device import resolve_device
from ldct_clip.errors import InputError
from ldct_clip.metrics import score_slices
from ldct_clip.models.checkpoint import load_checkpoint, save_checkpoint
from ldct_clip.models.denoiser import CLIPDenoiser
from ldct_clip.training_data import TrainingData, build_training_data

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST, BEST, STATE = "last.safetensors", "best.safetensors", "training_state.pt"
METRICS_LOG, CURVES, RUN_INFO, CONFIG_FILE = "metrics.jsonl", "curves.png", "run.json", "config.yaml"
_REPORTED_PACKAGES = ("torch", "torchvision", "open_clip_torch", "monai", "pydicom", "numpy", "safetensors")


def step_seed(seed: int, step: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, step, rank, stream)."""
    return int(np.random.SeedSequence([seed, step, rank, stream]).generate_state(2, dtype=np.uint64)[0] >> 1)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yield, for each step from ``start_step`` to ``total_steps``, a batch of ``(index, item_seed)`` keys.

    Indices are drawn with replacement in proportion to ``weights`` (patient-balanced for CT) from a
    generator seeded by the step, so a step's batch never depends on what came before it.
    """

    def __init__(self, weights: torch.Tensor, batch_size: int, seed: int, start_step: int, total_steps: int,
                 rank: int = 0) -> None:
        self.weights = weights.double()
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.start_step, self.total_steps = start_step, total_steps

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            g = torch.Generator().manual_seed(step_seed(self.seed, step, self.rank, stream=1))
            indices = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=g)
            seeds = torch.randint(0, 2**31 - 1, (self.batch_size,), generator=g)
            yield list(zip(indices.tolist(), seeds.tolist()))


def mixup(
    noisy: torch.Tensor, clean: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix the batch with a permutation of itself, with the same ``lam`` for noisy and clean alike.

    >>> x = torch.tensor([[0.0], [1.0]])
    >>> mixup(x, x, 0.25, torch.tensor([1, 0]))[0].flatten().tolist()
    [0.75, 0.25]
    """
    perm = perm.to(noisy.device)
    return lam * noisy + (1 - lam) * noisy[perm], lam * clean + (1 - lam) * clean[perm]


def build_scheduler(
    optimizer: torch.optim.Optimizer, iterations: int, flat: int, eta_min: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """Flat for ``flat`` steps, then cosine annealing to ``eta_min`` at ``iterations`` (released configs)."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations - flat, eta_min=eta_min)
    if flat == 0:
        return cosine
    constant = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=flat)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [constant, cosine], milestones=[flat])


@dataclass
class Distributed:
    """Process-group facts; a single process is rank 0 of a world of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if device_name != "cpu" and torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        return cls(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size())

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def validate(
    model: CLIPDenoiser, pairs: Dataset, preset: str, device: torch.device, max_items: int | None = None
) -> dict[str, float]:
    """Mean PSNR/SSIM of the model over validation pairs under a metric preset (eval mode, no grad).

    CT pairs are scored in HU; RGB pairs (preset ``natural``) at peak 255 on the clamped output.
    ``max_items`` pairs are taken evenly spread over all of them (first and last included).
    """
    was_training = model.training
    model.eval()
    psnrs, ssims = [], []
    count = len(pairs) if max_items is None else min(max_items, len(pairs))
    indices = np.unique(np.round(np.linspace(0, len(pairs) - 1, count)).astype(int))  # spread along z
    with torch.inference_mode():
        for i in indices:
            item = pairs[int(i)]
            low = item["low"][None].to(device)
            pred = model(low).float().cpu().numpy()[0]
            full = item["full"].numpy()
            if model.in_channels == 1:
                scores = score_slices(model_to_hu(pred), model_to_hu(full), preset)
            else:
                scores = score_slices(np.clip(pred, 0, 1)[None] * 255.0, full[None] * 255.0, preset)
            psnrs.append(float(scores["psnr"][0]))
            ssims.append(float(scores["ssim"][0]))
    model.train(was_training)
    return {"val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims)), "val_items": count}


class Trainer:
    """Runs one experiment in ``run_dir``; ``resume=True`` continues from the run's saved state.

    Args:
        config: the validated experiment.
        run_dir: output folder (checkpoints, logs, curves, run.json).
        data: training/validation data; built from ``config`` when not given.
        resume: continue the run in ``run_dir`` from its last checkpoint.
    """

    def __init__(self, config: ExperimentConfig, run_dir: str | os.PathLike[str], data: TrainingData | None = None,
                 resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.dist = Distributed.from_env(config.train.device)
        self.device = self._device()
        self.data = data if data is not None else build_training_data(config, self.run_dir)
        self.model = self._build_model(resume)
        self.optimizer = torch.optim.AdamW(
            self.model.trainable_parameters(), lr=config.optim.lr, betas=config.optim.betas,
            weight_decay=config.optim.weight_decay,
        )
        s = config.schedule
        self.scheduler = build_scheduler(self.optimizer, s.iterations, s.flat_iterations, s.eta_min)
        self.step = 0
        self.best_psnr = -math.inf
        if resume:
            self._load_state()
        self.ddp: torch.nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR

    def _device(self) -> torch.device:
        device = resolve_device(self.config.train.device)
        if device.type == "cuda" and self.dist.world_size > 1:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        return device

    def _build_model(self, resume: bool) -> CLIPDenoiser:
        if resume:
            return load_checkpoint(self.checkpoint_dir / LAST).train().to(self.device)
        m = self.config.model
        torch.manual_seed(self.config.train.seed)  # decoder initialisation
        model = CLIPDenoiser(in_channels=m.in_channels, encoder_weights=m.encoder_weights, bn=m.bn,
                             pfa_gamma=m.pfa_gamma)
        if m.in_channels != self.data.channels:
            raise InputError(
                f"model.in_channels={m.in_channels} but the training images have {self.data.channels} channel(s); "
                "fix model.in_channels or the data"
            )
        return model.to(self.device).train()

    # -- state -----------------------------------------------------------------------------------
    def _save(self, val: dict[str, float] | None) -> None:
        if not self.dist.is_main:
            return
        extra = {"step": str(self.step), "run": self.config.name}
        save_checkpoint(self.model, self.checkpoint_dir / LAST, extra=extra)
        if val is not None and val["val_psnr"] > self.best_psnr:
            self.best_psnr = val["val_psnr"]
            save_checkpoint(self.model, self.checkpoint_dir / BEST,
                            extra={**extra, "val_psnr": f"{self.best_psnr:.4f}"})
        state = {
            "step": self.step,
            "best_psnr": self.best_psnr,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": [int(v) for v in np.random.get_state()[1]],
                "python": random.getstate(),
            },
        }
        _atomic_torch_save(state, self.checkpoint_dir / STATE)

    def _load_state(self) -> None:
        path = self.checkpoint_dir / STATE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(f"{path}: no training state to resume from; start a new run instead") from None
        except Exception as err:  # a truncated or foreign file
            raise InputError(f"{path}: unreadable training state ({type(err).__name__}); start a new run") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best_psnr = int(state["step"]), float(state["best_psnr"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        np.random.set_state(("MT19937", np.array(state["rng"]["numpy"], dtype=np.uint32), 0, 0, 0.0))
        random.setstate(state["rng"]["python"])
        logger.info("resuming %s at step %d of %d", self.run_dir, self.step, self.config.schedule.iterations)

    # -- loop ------------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        t = self.config.train
        sampler = StepBatchSampler(self.data.weights, t.batch_size, t.seed, self.step, self.config.schedule.iterations,
                                   rank=self.dist.rank)
        workers = self.config.data.workers
        return DataLoader(self.data.train, batch_sampler=sampler, num_workers=workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False,
                          prefetch_factor=2 if workers else None)

    def train_step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimisation step on ``batch``; all its randomness is seeded by the current step."""
        t, o = self.config.train, self.config.optim
        torch.manual_seed(step_seed(t.seed, self.step, self.dist.rank, stream=2))  # PFA noise
        rng = np.random.default_rng(step_seed(t.seed, self.step, self.dist.rank, stream=3))
        noisy = batch["noisy"].to(self.device, non_blocking=True)
        clean = batch["clean"].to(self.device, non_blocking=True)
        if rng.random() < t.mixup_prob:
            lam = float(rng.beta(t.mixup_beta, t.mixup_beta))
            noisy, clean = mixup(noisy, clean, lam, torch.from_numpy(rng.permutation(noisy.shape[0])))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.amp and self.device.type == "cuda"):
            loss = F.l1_loss(self.ddp(noisy).float(), clean)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {self.step}; lower optim.lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(), o.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return float(loss.detach())

    def run(self) -> dict[str, Any]:
        """Train to ``schedule.iterations``; returns the last validation result."""
        t, total = self.config.train, self.config.schedule.iterations
        if self.dist.is_main:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / CONFIG_FILE)
            write_run_info(self.run_dir, self.config, self.model, self.data, self.dist.world_size, self.device)
        last_val: dict[str, Any] = {}
        bar = tqdm(total=total, initial=self.step, disable=not self.dist.is_main, desc=self.config.name,
                   unit="it", dynamic_ncols=True)
        window_start, window_losses = time.perf_counter(), []
        deadline = None if t.max_minutes is None else time.monotonic() + 60.0 * t.max_minutes
        for batch in self._loader():
            loss = self.train_step(batch)
            out_of_time = deadline is not None and self._agree(time.monotonic() >= deadline)
            window_losses.append(loss)
            lr = self.scheduler.get_last_lr()[0]
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.5f}", lr=f"{lr:.2e}")
            if self.step % t.log_every == 0 or self.step == total or out_of_time:
                rate = len(window_losses) / max(time.perf_counter() - window_start, 1e-9)
                self._log({"step": self.step, "loss": float(np.mean(window_losses)), "last_loss": loss, "lr": lr,
                           "it_per_s": rate})
                window_start, window_losses = time.perf_counter(), []
            val = None
            if self.step % t.val_every == 0 or self.step == total or out_of_time:
                if self.dist.is_main:
                    val = validate(self.model, self.data.validation, t.metric_preset, self.device,
                                   self.config.data.val_max_slices)
                    self._log({"step": self.step, **val})
                    bar.write(f"step {self.step}: val PSNR {val['val_psnr']:.2f} dB, SSIM {val['val_ssim']:.4f}")
                    last_val = val
                self.dist.barrier()
            if val is not None or self.step % t.checkpoint_every == 0:
                self._save(val)
                self.dist.barrier()
            if out_of_time:
                bar.write(f"train.max_minutes={t.max_minutes:g} reached at step {self.step} of {total}; "
                          "saved, continue with --resume")
                self._log({"step": self.step, "stopped": "max_minutes"})
                break
        bar.close()
        return last_val

    def _agree(self, flag: bool) -> bool:
        """True on every rank when rank 0 says so, so that all processes stop at the same step."""
        if self.dist.world_size == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.broadcast(value, src=0)
        return bool(value.item())

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        path = self.run_dir / METRICS_LOG
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if "val_psnr" in record:
            plot_curves(path, self.run_dir / CURVES)


def plot_curves(log_path: Path, png_path: Path) -> None:
    """Draw the training loss and validation PSNR against the step into ``png_path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_psnr"]) for r in records if "val_psnr" in r]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.5))
    if train:
        ax_loss.plot(*zip(*train))
    ax_loss.set(xlabel="step", ylabel="L1 loss", title="training loss", yscale="log" if train else "linear")
    if val:
        ax_psnr.plot(*zip(*val), marker="o")
    ax_psnr.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".curves.", suffix=".png", dir=png_path.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


def write_run_info(run_dir: Path, config: ExperimentConfig, model: CLIPDenoiser, data: TrainingData, world_size: int,
                   device: torch.device) -> None:
    """Record what a run was made of: config, versions, git commit, split patients, weight source."""
    from ldct_clip import __version__

    versions = {}
    for name in _REPORTED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    info = {
        "config": config.to_dict(),
        "ldct_clip_version": __version__,
        "git_commit": _git_commit(),
        "packages": versions,
        "python": platform.python_version(),
        "seed": config.train.seed,
        "split": data.split_info,
        "encoder_weights": model.encoder_weight_source,
        "encoder_is_random": model.encoder_weight_source == "random",
        "world_size": world_size,
        "device": str(device),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = run_dir / RUN_INFO
    if path.exists():  # a resumed run keeps its history
        previous = json.loads(path.read_text())
        info["started"] = previous.get("started", info["started"])
        info["resumed"] = [*previous.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")]
    path.write_text(json.dumps(info, indent=2))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _atomic_torch_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
