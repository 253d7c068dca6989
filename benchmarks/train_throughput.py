"""Training throughput of the LDCT recipe: steps/s and achieved FLOP/s as a fraction of the GEMM peak.

One step is what :meth:`ldct_clip.training.Trainer.train_step` does, rebuilt from the public model API:
forward of a :class:`~ldct_clip.models.CLIPDenoiser` in training mode (feature augmentation on, BatchNorm
statistics adapting), L1 loss, backward (through the frozen encoder too: its input gradient reaches the
trainable 1×1 adapter), gradient-norm clipping at ``optim.grad_clip`` and an AdamW step with the config's
lr, betas and weight decay. Mixup (a weighted sum of two batches) and data loading are left out: they cost
nothing next to the network. Patch size and batch size come from the config (default
configs/ldct_mayo_sigma5.yaml: 128×128 patches, batch 16); the encoder has random weights, which does not
change the speed.

FLOPs of one step (forward + backward) are counted by torch's ``FlopCounterMode`` (convolutions and
matmuls; the optimizer's element-wise work is not counted). The GEMM peak is a 4096³ ``torch.matmul``
timed in the same run just before each row's steps (so under the same machine load), in fp32 for the fp32
rows and in bf16 for the AMP rows (bf16 autocast, as ``train.amp: true``; note that the trainer enables
autocast on CUDA only, the CPU AMP row shows what it would give there). Runs on CPU, and on CUDA when
present.

    python benchmarks/train_throughput.py [--config configs/ldct_mayo_sigma5.yaml] [--steps 3] [--warmup 1]

Step times are the fastest of ``--steps`` timed steps after ``--warmup`` untimed ones. On a shared
machine the load average is printed before and after: compare rows of one run, rerun when it is quiet.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from infer_throughput import cpu_name
from torch.utils.flop_counter import FlopCounterMode

from ldct_clip.config import ExperimentConfig, load_config
from ldct_clip.models import CLIPDenoiser

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ldct_mayo_sigma5.yaml"
GEMM_SIZE = 4096


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest_seconds(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Fastest wall time of ``repeats`` (at least 1) calls of ``run``."""
    best = float("inf")
    for _ in range(max(repeats, 1)):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def gemm_peak(device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """FLOP/s of a GEMM_SIZE³ ``torch.matmul`` in ``dtype`` (2 FLOPs per multiply-accumulate)."""
    a = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device, dtype=dtype)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE, device=device, dtype=dtype)
    torch.matmul(a, b)
    return 2 * GEMM_SIZE**3 / fastest_seconds(lambda: torch.matmul(a, b), repeats, device)


def make_step(config: ExperimentConfig, device: torch.device, amp: bool) -> tuple[Callable[[], float], CLIPDenoiser]:
    """A training step on a fixed random batch of the config's size, as the trainer runs it."""
    m, o = config.model, config.optim
    model = CLIPDenoiser(in_channels=m.in_channels, encoder_weights="random", bn=m.bn, pfa_gamma=m.pfa_gamma)
    model.to(device).train()
    params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    size, batch = config.data.patch_size, config.train.batch_size
    noisy = torch.rand(batch, m.in_channels, size, size, device=device)
    clean = torch.rand(batch, m.in_channels, size, size, device=device)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.l1_loss(model(noisy).float(), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        optimizer.step()
        return float(loss.detach())

    return step, model


def count_flops(step: Callable[[], float]) -> float:
    """FLOPs of one step's forward and backward, counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="training config (patch and batch size)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    args = parser.parse_args()
    config = load_config(args.config)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()
    print(f"machine : {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; load average before {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}")
    print(f"config  : {args.config.name}: patch {config.data.patch_size}, batch {config.train.batch_size}, "
          f"AdamW lr {config.optim.lr:g}, grad clip {config.optim.grad_clip}; random encoder")
    rows = []
    for device in devices:
        for amp in (False, True):
            step, model = make_step(config, device, amp)
            flops = count_flops(step)
            for _ in range(args.warmup):
                step()
            peak = gemm_peak(device, torch.bfloat16 if amp else torch.float32, 3)  # just before: same load
            seconds = fastest_seconds(step, args.steps, device)
            rows.append((device.type, "bf16 autocast" if amp else "fp32", seconds, flops, peak))
            del step, model
    load_after = os.getloadavg()
    print()
    print("device | precision     | s/step | steps/s | patches/s | GFLOP/step | achieved GFLOP/s | GEMM peak GFLOP/s "
          "| % of peak")
    print("-------|---------------|--------|---------|-----------|------------|------------------|-------------------"
          "|----------")
    for device_type, precision, seconds, flops, peak in rows:
        print(f"{device_type:6s} | {precision:13s} | {seconds:6.2f} | {1 / seconds:7.3f} | "
              f"{config.train.batch_size / seconds:9.2f} | {flops / 1e9:10.1f} | {flops / seconds / 1e9:16.1f} | "
              f"{peak / 1e9:17.1f} | {100 * flops / seconds / peak:8.0f}%")
    print()
    print(f"load average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} "
          "(shared machine: compare rows of this run, not runs on different days)")


if __name__ == "__main__":
    main()
