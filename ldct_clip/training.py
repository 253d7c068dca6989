"""The training loop of every method: optimizer, schedule, optional weight EMA, mixup, validation, resume.

The method (:mod:`ldct_clip.methods`) decides the network, what a batch holds and the loss; this loop is
the same for all of them (CLIPDenoising: AdamW + L1 with gradient clipping, mixup and feature augmentation).

Reproducibility is built on one rule: everything random in a step (which slices, crops, flips, noise,
mixup and feature augmentation) is drawn from generators seeded by ``(seed, step, rank)``. A run that is
stopped and resumed therefore computes exactly the steps an uninterrupted run would, whatever the
number of DataLoader workers.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel; only parameters that
require gradients train (CLIPDenoising: the adapter and decoder), each process draws its own batches, and
rank 0 validates, logs and saves.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ldct_clip.atomic import partial_path
from ldct_clip.config import ExperimentConfig, ScheduleConfig, save_config
from ldct_clip.data.hu import model_to_hu
from ldct_clip.device import resolve_device
from ldct_clip.errors import InputError
from ldct_clip.metrics import score_slices
from ldct_clip.models.checkpoint import (
    TRAINING_NOISE_KEY,
    TRAINING_PREFIX,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from ldct_clip.models.encoder import RANDOM
from ldct_clip.training_data import TrainingData, build_training_data

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST, BEST, RESUME = "last.safetensors", "best.safetensors", "resume.safetensors"
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


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of ``schedule.kind`` (see :class:`~ldct_clip.config.ScheduleConfig`), stepped
    once per iteration; torch's schedulers, with :class:`~torch.optim.lr_scheduler.LambdaLR` for the two
    shapes torch lacks (Noise2Sim's ramps, ScoreSDE's warm-up)."""
    s, lr = schedule, optimizer.param_groups[0]["lr"]
    if s.kind == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(s.milestones), gamma=s.gamma)
    if s.kind == "warmup":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(_warmup, s.warmup_iterations))
    if s.kind == "ramped":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(_ramped, s.iterations, s.rampup_fraction, s.rampdown_fraction))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.iterations - s.flat_iterations,
                                                        eta_min=min(s.eta_min, lr))
    if s.flat_iterations == 0:
        return cosine
    constant = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=s.flat_iterations)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [constant, cosine], milestones=[s.flat_iterations])


def _warmup(warmup: int, step: int) -> float:
    """Linear warm-up factor (ScoreSDE: ``lr * min(step / warmup, 1)``)."""
    return 1.0 if warmup == 0 else min(1.0, (step + 1) / warmup)


def _ramped(total: int, up: float, down: float, step: int) -> float:
    """Noise2Sim's RampedLR factor: cosine ramp-up over the first ``up`` of the steps, squared-cosine
    ramp-down over the last ``down``, 1 in between.

    >>> [round(_ramped(100, 0.1, 0.3, s), 3) for s in (0, 5, 50, 85, 99)]
    [0.0, 0.5, 1.0, 0.25, 0.0]
    """
    t = step / total
    if up > 0 and t < up:
        return 0.5 - 0.5 * math.cos(math.pi * t / up)
    if down > 0 and t > 1 - down:
        return (0.5 + 0.5 * math.cos(math.pi * (t - (1 - down)) / down)) ** 2
    return 1.0


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
    model: nn.Module, pairs: Dataset, preset: str, device: torch.device, max_items: int | None = None,
    input_scores: dict[str, float] | None = None,
) -> dict[str, float]:
    """Mean PSNR/SSIM of the model over validation pairs under a metric preset (eval mode, no grad).

    CT pairs are scored in HU after the method's own inference (:func:`ldct_clip.inference.denoise_hu`);
    RGB pairs (preset ``natural``) at peak 255 on the clamped output. ``max_items`` pairs are taken evenly
    spread over all of them (first and last included). The low-dose input's own scores are returned beside
    the model's (``val_input_psnr``/``val_input_ssim``; pass ``input_scores`` from an earlier call to skip
    recomputing them), so a run that has not yet caught up with its input shows it.
    """
    from ldct_clip.inference import denoise_hu
    from ldct_clip.methods import get_method

    was_training = model.training
    model.eval()
    method = get_method(model.method)
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "input_psnr": [], "input_ssim": []}
    count = len(pairs) if max_items is None else min(max_items, len(pairs))
    indices = np.unique(np.round(np.linspace(0, len(pairs) - 1, count)).astype(int))  # spread along z
    with torch.inference_mode():
        for i in indices:
            item = pairs[int(i)]
            low = item["low"][None].to(device)
            full = item["full"].numpy()
            if model.in_channels == 1:
                low_hu = model_to_hu(low.float())
                pred_hu = denoise_hu(method, model, low_hu).float().cpu().numpy()[0]
                pairs_scored = [("", pred_hu, model_to_hu(full))]
                if input_scores is None:
                    pairs_scored.append(("input_", low_hu.cpu().numpy()[0], model_to_hu(full)))
            else:
                pred = model(low).float().cpu().numpy()[0]
                pairs_scored = [("", np.clip(pred, 0, 1)[None] * 255.0, full[None] * 255.0)]
                if input_scores is None:
                    pairs_scored.append(("input_", np.clip(item["low"].numpy(), 0, 1)[None] * 255.0,
                                         full[None] * 255.0))
            for prefix, pred_image, target in pairs_scored:
                result = score_slices(pred_image, target, preset)
                scores[f"{prefix}psnr"].append(float(result["psnr"][0]))
                scores[f"{prefix}ssim"].append(float(result["ssim"][0]))
    model.train(was_training)
    inputs = input_scores or {"val_input_psnr": float(np.mean(scores["input_psnr"])),
                              "val_input_ssim": float(np.mean(scores["input_ssim"]))}
    return {"val_psnr": float(np.mean(scores["psnr"])), "val_ssim": float(np.mean(scores["ssim"])),
            "val_items": count, **inputs}


class Trainer:
    """Runs one experiment in ``run_dir``; ``resume=True`` continues from the run's saved state.

    The method (``config.method``, :mod:`ldct_clip.methods`) supplies the network, the training data and the
    loss; the loop itself is the same for every method.

    Checkpoints: ``checkpoints/resume.safetensors`` holds the weights and the whole training state (optimizer
    tensors, schedule, RNG, step) in one atomically written file, so a kill at any moment leaves a consistent
    state to resume from; ``last.safetensors`` and ``best.safetensors`` are the model alone (the weight
    average when ``optim.ema_decay`` is set), for inference and evaluation.

    Args:
        config: the validated experiment.
        run_dir: output folder (checkpoints, logs, curves, run.json).
        data: training/validation data; built from ``config`` when not given.
        resume: continue the run in ``run_dir`` from its last checkpoint.
    """

    def __init__(self, config: ExperimentConfig, run_dir: str | os.PathLike[str], data: TrainingData | None = None,
                 resume: bool = False) -> None:
        from ldct_clip.methods import get_method

        self.config = config
        self.method = get_method(config.method)
        self.run_dir = Path(run_dir)
        self.dist = Distributed.from_env(config.train.device)
        self.device = self._device()
        self.data = data if data is not None else build_training_data(config, self.run_dir)
        self.model = self._build_model(resume)
        o = config.optim
        optimizer = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        self.optimizer = optimizer(self._trainable(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, config.schedule)
        self.ema = None
        if o.ema_decay is not None:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(o.ema_decay), use_buffers=True)
        self.step = 0
        self.best_psnr = -math.inf
        self.input_scores: dict[str, float] | None = None
        if resume:
            self._load_state()
        self.ddp: torch.nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR

    @property
    def published_model(self) -> nn.Module:
        """The model that is validated and saved: the weight average when there is one."""
        return self.model if self.ema is None else self.ema.module

    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _device(self) -> torch.device:
        device = resolve_device(self.config.train.device)
        if device.type == "cuda" and self.dist.world_size > 1:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        return device

    def _build_model(self, resume: bool) -> nn.Module:
        if resume:
            return load_checkpoint(self.checkpoint_dir / RESUME).train().to(self.device)
        torch.manual_seed(self.config.train.seed)  # network initialisation
        model = self.method.build(self.config.model)
        if model.in_channels != self.data.channels:
            raise InputError(
                f"model.in_channels={model.in_channels} but the training images have {self.data.channels} "
                "channel(s); fix model.in_channels or the data"
            )
        return model.to(self.device).train()

    # -- state -----------------------------------------------------------------------------------
    def _metadata(self) -> dict[str, str]:
        meta = {"step": str(self.step), "run": self.config.name}
        if self.method.trains_on_added_noise:
            meta[TRAINING_NOISE_KEY] = f"{self.config.data.noise_sigma:g}"
        return meta

    def _save(self, val: dict[str, float] | None) -> None:
        if not self.dist.is_main:
            return
        extra = self._metadata()
        state, tensors = self._training_state()
        save_checkpoint(self.model, self.checkpoint_dir / RESUME,
                        extra={**extra, "training_state": json.dumps(state)}, extra_tensors=tensors)
        save_checkpoint(self.published_model, self.checkpoint_dir / LAST, extra=extra)
        if val is not None and val["val_psnr"] > self.best_psnr:
            self.best_psnr = val["val_psnr"]
            save_checkpoint(self.published_model, self.checkpoint_dir / BEST,
                            extra={**extra, "val_psnr": f"{self.best_psnr:.4f}"})

    def _training_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Everything but the weights, as JSON plus tensors (no pickle): optimizer, schedule, RNG, step, EMA."""
        optim = self.optimizer.state_dict()
        tensors: dict[str, torch.Tensor] = {"rng/torch": torch.get_rng_state()}
        values: dict[str, dict[str, Any]] = {}
        for index, entry in optim["state"].items():
            values[str(index)] = {}
            for name, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer/{index}/{name}"] = value
                else:
                    values[str(index)][name] = value
        if torch.cuda.is_available():
            for i, rng in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng/cuda/{i}"] = rng
        if self.ema is not None:
            tensors.update({f"ema/{k}": v for k, v in self.ema.state_dict().items()})
        state = {
            "step": self.step,
            "best_psnr": self.best_psnr if math.isfinite(self.best_psnr) else None,
            "input_scores": self.input_scores,
            "optimizer": {"param_groups": optim["param_groups"], "values": values},
            "scheduler": self.scheduler.state_dict(),
            "rng": {"numpy": [int(v) for v in np.random.get_state()[1]], "python": random.getstate()},
        }
        return state, tensors

    def _load_state(self) -> None:
        path = self.checkpoint_dir / RESUME
        try:
            state = json.loads(read_checkpoint_metadata(path)["training_state"])
            with safe_open(str(path), framework="pt", device="cpu") as f:
                tensors = {k[len(TRAINING_PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(TRAINING_PREFIX)}
            optim_state: dict[int, dict[str, Any]] = {}
            for index, values in state["optimizer"]["values"].items():
                optim_state[int(index)] = dict(values)
            for key, tensor in tensors.items():
                if key.startswith("optimizer/"):
                    _, index, name = key.split("/")
                    optim_state.setdefault(int(index), {})[name] = tensor
            self.optimizer.load_state_dict({"state": optim_state, "param_groups": state["optimizer"]["param_groups"]})
            self.scheduler.load_state_dict(state["scheduler"])
            if self.ema is not None:
                self.ema.load_state_dict({k[len("ema/"):]: v for k, v in tensors.items() if k.startswith("ema/")})
            self.step = int(state["step"])
            self.best_psnr = -math.inf if state["best_psnr"] is None else float(state["best_psnr"])
            self.input_scores = state.get("input_scores")
            torch.set_rng_state(tensors["rng/torch"])
            cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
            if cuda and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(cuda)
            np.random.set_state(("MT19937", np.array(state["rng"]["numpy"], dtype=np.uint32), 0, 0, 0.0))
            version, internal, gauss = state["rng"]["python"]
            random.setstate((version, tuple(internal), gauss))
        except InputError:
            raise
        except (KeyError, ValueError, TypeError, RuntimeError) as err:  # a foreign, truncated or mismatched state
            reason = str(err).splitlines()[0][:120] if str(err) else "incomplete"
            raise InputError(f"{path}: training state does not fit this run ({type(err).__name__}: {reason}); "
                             "start a new run") from None
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
        """One optimisation step on ``batch``; all its randomness is seeded by the current step.

        Items that hold several patches (RED-CNN's patches per slice) arrive as B×K×C×H×W and are
        flattened to (B·K)×C×H×W. Mixup (when ``train.mixup_prob`` > 0) mixes every image key alike.
        """
        t, o = self.config.train, self.config.optim
        torch.manual_seed(step_seed(t.seed, self.step, self.dist.rank, stream=2))  # PFA noise
        rng = np.random.default_rng(step_seed(t.seed, self.step, self.dist.rank, stream=3))
        generator = torch.Generator(self.device).manual_seed(step_seed(t.seed, self.step, self.dist.rank, stream=4))
        images = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.flatten(0, 1) if value.ndim == 5 else value
                images[key] = value.to(self.device, non_blocking=True)
        if t.mixup_prob > 0 and rng.random() < t.mixup_prob:
            lam = float(rng.beta(t.mixup_beta, t.mixup_beta))
            perm = torch.from_numpy(rng.permutation(next(iter(images.values())).shape[0])).to(self.device)
            images = {k: lam * v + (1 - lam) * v[perm] for k, v in images.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.amp and self.device.type == "cuda"):
            loss = self.method.loss(self.ddp, self.model, images, generator)
        if not torch.isfinite(loss):
            raise InputError(f"training diverged: the loss became {loss.item()} at step {self.step}; lower optim.lr "
                             "or check the data (the last good checkpoint is in checkpoints/)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self._trainable(), o.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
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
                    val = validate(self.published_model, self.data.validation, t.metric_preset, self.device,
                                   self.config.data.val_max_slices, self.input_scores)
                    self.input_scores = {k: val[k] for k in ("val_input_psnr", "val_input_ssim")}
                    self._log({"step": self.step, **val})
                    behind = "  (below its input)" if val["val_psnr"] < val["val_input_psnr"] else ""
                    bar.write(f"step {self.step}: val PSNR {val['val_psnr']:.2f} dB, SSIM {val['val_ssim']:.4f}; "
                              f"low-dose input {val['val_input_psnr']:.2f} dB, {val['val_input_ssim']:.4f}{behind}")
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
    temp = partial_path(png_path, ".png")
    fig.savefig(temp, dpi=100)
    plt.close(fig)
    os.replace(temp, png_path)


def write_run_info(run_dir: Path, config: ExperimentConfig, model: nn.Module, data: TrainingData, world_size: int,
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
        "method": config.method,
        "encoder_weights": getattr(model, "encoder_weight_source", None),
        "encoder_weights_sha256": getattr(getattr(model, "encoder", None), "weight_sha256", None),
        "encoder_is_random": getattr(model, "encoder_weight_source", None) == RANDOM,
        "world_size": world_size,
        "device": str(device),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = run_dir / RUN_INFO
    if path.exists():  # a resumed run keeps its history
        previous = json.loads(path.read_text())
        info["started"] = previous.get("started", info["started"])
        info["resumed"] = [*previous.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S%z")]
    temp = partial_path(path)
    temp.write_text(json.dumps(info, indent=2))
    os.replace(temp, path)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None
