"""The training loop of every method: :class:`Trainer` (optimizer, schedule, weight EMA, mixup, validation,
atomic checkpoints and exact resume)."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ldct_clip.config import ExperimentConfig, save_config
from ldct_clip.device import resolve_device
from ldct_clip.errors import InputError
from ldct_clip.models.checkpoint import (
    TRAINING_NOISE_KEY,
    TRAINING_PREFIX,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from ldct_clip.training.distributed import Distributed
from ldct_clip.training.records import (
    BEST,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVES,
    LAST,
    METRICS_LOG,
    RESUME,
    plot_curves,
    write_run_info,
)
from ldct_clip.training.sampling import StepBatchSampler, step_seed
from ldct_clip.training.schedule import build_scheduler
from ldct_clip.training.validation import validate
from ldct_clip.training_data import TrainingData, build_training_data

logger = logging.getLogger(__name__)


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
