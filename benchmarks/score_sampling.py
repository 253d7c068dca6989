"""What ScoreSDE-CT's sampler costs: seconds per network evaluation and per slice, on this CPU and on a GPU.

The network is the official LDCT NCSN++ (:class:`~ldct_clip.models.ncsnpp.NCSNpp` with its default settings,
random weights: speed does not depend on them), in eval mode without autograd, one slice per call.
Per size it prints: the best of ``--evaluations`` timed evaluations after ``--warmup`` untimed ones (here the
first four or so passes at a new input size are several times slower than the rest; a sampler pays that once
per 2001 evaluations); the seconds per slice this implies for the official 2001 evaluations (1000 steps x 2 +
the Tweedie step; the sampler's own arithmetic is a few element-wise ops per step, negligible beside the
network); floating-point operations per evaluation counted by torch's FlopCounterMode (1 multiply-accumulate =
2 FLOPs); and what a slice would take on a GPU sustaining ``--gpu-tflops`` (an assumption to state, not a
measurement). A check times :func:`~ldct_clip.models.score_sde.pc_denoise` itself for a few steps at the
smallest size, so the extrapolation is seen to hold; a last line times one training step (DSM loss, forward
and backward) per image at ``--train-size``, for sizing smoke runs.

    python benchmarks/score_sampling.py [--sizes 512 128] [--evaluations 3] [--gpu-tflops 20 100] [--train-size 64]

On a shared machine check ``uptime`` and rerun when it is quiet.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from ldct_clip.models.ncsnpp import NCSNpp, NCSNppSettings
from ldct_clip.models.score_sde import VESDE, dsm_loss, pc_denoise

OFFICIAL_EVALUATIONS = 2 * VESDE().n + 1
"""Network evaluations per slice of the official sampler: a corrector and a predictor per step, then Tweedie."""


def best_seconds(run: Callable[[], object], warmup: int, repeats: int) -> float:
    """Fastest wall time of ``repeats`` (at least 1) runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    best = float("inf")
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def seconds_per_evaluation(net: NCSNpp, size: int, warmup: int, evaluations: int) -> float:
    """Best wall time of one forward pass on one size x size slice, without autograd."""
    x, sigma = torch.rand(1, 1, size, size), torch.tensor([1.0])
    with torch.no_grad():
        return best_seconds(lambda: net(x, sigma), warmup, evaluations)


def flops_per_evaluation(net: NCSNpp, size: int) -> int:
    """FLOPs of one forward pass on one slice, as torch's FlopCounterMode counts them."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.rand(1, 1, size, size), torch.tensor([1.0]))
    return counter.get_total_flops()


def seconds_per_training_image(net: NCSNpp, size: int, warmup: int, batch: int = 2) -> float:
    """Best wall time of one DSM loss forward and backward on ``batch`` slices, per slice."""
    x0 = torch.rand(batch, 1, size, size)
    generator = torch.Generator().manual_seed(0)
    net.train()
    seconds = best_seconds(lambda: dsm_loss(net, x0, VESDE(), generator).backward(), warmup, 2)
    net.zero_grad(set_to_none=True)
    net.eval()
    return seconds / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 128], help="slice sides (multiples of 64)")
    parser.add_argument("--evaluations", type=int, default=3, help="timed network evaluations per size")
    parser.add_argument("--warmup", type=int, default=4,
                        help="untimed evaluations first (the first few at a new size are slow)")
    parser.add_argument("--gpu-tflops", type=float, nargs="+", default=[20.0, 100.0],
                        help="sustained GPU throughputs (TFLOP/s) to extrapolate to")
    parser.add_argument("--check-steps", type=int, default=2, help="pc_denoise steps timed at the smallest size")
    parser.add_argument("--train-size", type=int, default=64, help="slice side of the timed training step")
    args = parser.parse_args()

    torch.manual_seed(0)
    net = NCSNpp(NCSNppSettings()).eval()
    parameters = sum(p.numel() for p in net.parameters())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"NCSN++ (official LDCT config): {parameters:,} parameters; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    print(f"{OFFICIAL_EVALUATIONS} network evaluations per slice (official 1000 steps)\n")
    gpu_heads = "".join(f"  GPU@{t:g}TF s/slice" for t in args.gpu_tflops)
    print(f"{'size':>7}  {'s/eval (CPU)':>12}  {'s/slice (CPU)':>13}  {'min/slice':>9}  {'GFLOP/eval':>10}{gpu_heads}")
    for size in args.sizes:
        seconds = seconds_per_evaluation(net, size, args.warmup, args.evaluations)
        flops = flops_per_evaluation(net, size)
        per_slice = seconds * OFFICIAL_EVALUATIONS
        gpu = "".join(f"  {flops * OFFICIAL_EVALUATIONS / (t * 1e12):>18.1f}" for t in args.gpu_tflops)
        print(f"{size:>4}^2  {seconds:>12.3f}  {per_slice:>13.0f}  {per_slice / 60:>9.1f}  {flops / 1e9:>10.1f}{gpu}")

    size = min(args.sizes)
    y = torch.rand(1, 1, size, size)
    expected = seconds_per_evaluation(net, size, 0, args.evaluations) * (2 * args.check_steps + 1)
    start = time.perf_counter()
    pc_denoise(net, y, VESDE(), steps=args.check_steps, generator=torch.Generator().manual_seed(0))
    measured = time.perf_counter() - start
    print(f"\npc_denoise, {args.check_steps} steps at {size}^2 ({2 * args.check_steps + 1} evaluations): "
          f"{measured:.2f} s measured vs {expected:.2f} s from s/eval")
    train = seconds_per_training_image(net, args.train_size, args.warmup)
    print(f"training step (DSM loss forward + backward) at {args.train_size}^2: {train:.2f} s per slice")


if __name__ == "__main__":
    main()
