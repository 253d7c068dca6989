"""What ScoreSDE-CT's sampler costs: seconds per network evaluation and per slice, on this CPU and on a GPU.

The network is the official LDCT NCSN++ (:class:`~ldct_clip.models.ncsnpp.NCSNpp` with its default settings,
random weights: speed does not depend on them), in eval mode without autograd, one slice per call.
Per size it prints: the best of ``--evaluations`` timed evaluations after one warm-up; the seconds per slice
this implies for the official 2001 evaluations (1000 steps x 2 + the Tweedie step; the sampler's own
arithmetic is a few element-wise ops per step, negligible beside the network); floating-point operations
per evaluation counted by torch's FlopCounterMode (1 multiply-accumulate = 2 FLOPs); and what a slice
would take on a GPU sustaining ``--gpu-tflops`` (an assumption to state, not a measurement). A last check
times :func:`~ldct_clip.models.score_sde.pc_denoise` itself for a few steps at the smallest size, so the
extrapolation is seen to hold.

    python benchmarks/score_sampling.py [--sizes 512 128] [--evaluations 3] [--gpu-tflops 20 100]

On a shared machine check ``uptime`` and rerun when it is quiet.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ldct_clip.models.ncsnpp import NCSNpp, NCSNppSettings
from ldct_clip.models.score_sde import VESDE, pc_denoise

OFFICIAL_EVALUATIONS = 2 * VESDE().n + 1
"""Network evaluations per slice of the official sampler: a corrector and a predictor per step, then Tweedie."""


def seconds_per_evaluation(net: NCSNpp, size: int, evaluations: int) -> float:
    """Best wall time of ``evaluations`` forward passes of one size x size slice, after a warm-up pass."""
    x, sigma = torch.rand(1, 1, size, size), torch.tensor([1.0])
    best = float("inf")
    with torch.no_grad():
        net(x, sigma)
        for _ in range(max(evaluations, 1)):
            start = time.perf_counter()
            net(x, sigma)
            best = min(best, time.perf_counter() - start)
    return best


def flops_per_evaluation(net: NCSNpp, size: int) -> int:
    """FLOPs of one forward pass on one slice, as torch's FlopCounterMode counts them."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.rand(1, 1, size, size), torch.tensor([1.0]))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 128], help="slice sides (multiples of 64)")
    parser.add_argument("--evaluations", type=int, default=3, help="timed network evaluations per size")
    parser.add_argument("--gpu-tflops", type=float, nargs="+", default=[20.0, 100.0],
                        help="sustained GPU throughputs (TFLOP/s) to extrapolate to")
    parser.add_argument("--check-steps", type=int, default=2, help="pc_denoise steps timed at the smallest size")
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
        seconds = seconds_per_evaluation(net, size, args.evaluations)
        flops = flops_per_evaluation(net, size)
        per_slice = seconds * OFFICIAL_EVALUATIONS
        gpu = "".join(f"  {flops * OFFICIAL_EVALUATIONS / (t * 1e12):>18.1f}" for t in args.gpu_tflops)
        print(f"{size:>4}^2  {seconds:>12.3f}  {per_slice:>13.0f}  {per_slice / 60:>9.1f}  {flops / 1e9:>10.1f}{gpu}")

    size = min(args.sizes)
    y = torch.rand(1, 1, size, size)
    expected = seconds_per_evaluation(net, size, args.evaluations) * (2 * args.check_steps + 1)
    start = time.perf_counter()
    pc_denoise(net, y, VESDE(), steps=args.check_steps, generator=torch.Generator().manual_seed(0))
    measured = time.perf_counter() - start
    print(f"\npc_denoise, {args.check_steps} steps at {size}^2 ({2 * args.check_steps + 1} evaluations): "
          f"{measured:.2f} s measured vs {expected:.2f} s from s/eval")


if __name__ == "__main__":
    main()
