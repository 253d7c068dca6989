"""Inference throughput on a 512×512 CT series: model alone and whole command, torch fp32 and bf16, onnxruntime fp32.

The series is pydicom-data's real CT slice (693_UNCR.dcm), shifted by a few pixels per slice so that no two
slices are equal, written as ``--slices`` files with new UIDs and 1 mm apart into a temporary folder. The
model is a CLIPDenoiser with random weights unless ``--checkpoint`` names a trained one: speed does not
depend on the weights, but the bf16-vs-fp32 difference does (a random decoder's output barely varies, so
that row is only meaningful with a trained checkpoint).

Printed, for fp32 and bf16: slices/s of the model alone (:class:`~ldct_clip.inference.VolumeDenoiser` on a
volume in memory, after one warm-up batch) and of the whole command (:func:`~ldct_clip.inference.denoise_series`:
load the checkpoint, read the DICOM series, denoise, write the DICOM series); multiply-accumulates per slice
(counted by torch's FlopCounterMode); achieved GMAC/s beside GEMM peaks measured in the same run: a large
``torch.matmul`` (MKL for fp32, oneDNN for bf16) and large convolutions through oneDNN (the library that
runs the model's convolutions); the RMS HU difference between bf16 and fp32; and the process's
peak resident memory.

The onnxruntime row (with the ``onnx`` extra installed) runs the same model exported by
:func:`ldct_clip.exporting.export_model` through :class:`~ldct_clip.exporting.OnnxDenoiser` on the CPU
execution provider, alone and as ``denoise_series(model.onnx, ...)``, against the fp32 peaks. It is fp32
only: onnxruntime's CPU provider has no bfloat16 autocast, and its lower-precision routes (fp16 graphs,
int8 quantization with calibration) change the model and its HU output rather than the arithmetic.

    python benchmarks/infer_throughput.py [--slices 64] [--batch-size 2] [--repeats 2] [--checkpoint CKPT]

64 slices by default: the whole command pays a fixed cost (checkpoint load, model preparation, the last
write) that a real series of hundreds of slices spreads thin and a very short one does not.

Runs are best-of-``--repeats``; on a shared machine check ``uptime`` and rerun when it is quiet.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from ct_series import make_series
from torch.utils.flop_counter import FlopCounterMode

from ldct_clip.errors import InputError
from ldct_clip.exporting import OnnxDenoiser, export_model
from ldct_clip.inference import BATCH_SIZES, PRECISIONS, VolumeDenoiser, denoise_series
from ldct_clip.io import read_series
from ldct_clip.models import CLIPDenoiser, load_checkpoint, save_checkpoint

T = TypeVar("T")
TARGETS = {"fp32": 0.85, "bf16": 0.70}  # fraction of the GEMM peak the model alone should reach
WHOLE_COMMAND_TARGET = 0.90  # whole command vs model alone
MEMORY_TARGET_GB = 4.0


def best_seconds(run: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Fastest wall time of ``repeats`` (at least 1) runs, and the last result."""
    best = float("inf")
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def macs_per_slice(model: CLIPDenoiser, size: int = 512) -> float:
    """Multiply-accumulates of one forward pass on a size×size slice (FLOPs / 2, convs and matmuls)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.rand(1, 1, size, size))
    return counter.get_total_flops() / 2


def gemm_peaks(dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """Peak GMAC/s of a 4096³ ``torch.matmul`` and of oneDNN convolutions (best of a 1×1 and a 3×3 conv).

    ``torch.matmul`` runs on MKL for fp32 and on oneDNN for bf16; the model's convolutions always run on
    oneDNN, so the convolution peak is the fairer yardstick where MKL is slow (MKL's fp32 GEMM on AMD CPUs).
    """
    n = 4096
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    matmul, _ = best_seconds(lambda: torch.matmul(a, b), repeats + 1)
    conv = max(conv_rate(dtype, *shape, repeats + 1) for shape in ((4, 1024, 64, 1), (2, 256, 128, 3)))
    return n**3 / matmul / 1e9, conv


def conv_rate(dtype: torch.dtype, batch: int, channels: int, size: int, kernel: int, repeats: int) -> float:
    """GMAC/s of a channels-last ``kernel``×``kernel`` convolution, ``channels`` in and out, on oneDNN."""
    x = torch.randn(batch, channels, size, size, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, kernel, kernel, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        F.conv2d(x, w, padding=kernel // 2)
        seconds, _ = best_seconds(lambda: F.conv2d(x, w, padding=kernel // 2), repeats)
    return batch * size * size * channels * channels * kernel * kernel / seconds / 1e9


def measure(
    model: CLIPDenoiser, checkpoint: Path, series: Path, out: Path, precision: str, batch_size: int, repeats: int
) -> tuple[float, float, np.ndarray]:
    """(model-alone seconds, whole-command seconds, denoised HU) for one precision."""
    hu = read_series(series).hu
    denoiser = VolumeDenoiser(model, batch_size=batch_size, device="cpu", precision=precision)
    denoiser(hu[:batch_size])  # warm-up: oneDNN builds its kernels on the first batch
    model_s, denoised = best_seconds(lambda: denoiser(hu), repeats)

    def whole() -> None:
        denoise_series(checkpoint, series, out, batch_size=batch_size, device="cpu", precision=precision,
                       overwrite=True)

    whole_s, _ = best_seconds(whole, repeats)
    return model_s, whole_s, denoised


def measure_onnx(
    model: CLIPDenoiser, root: Path, series: Path, batch_size: int, repeats: int
) -> tuple[float, float, np.ndarray] | None:
    """(model-alone seconds, whole-command seconds, denoised HU) through onnxruntime; None without the extra."""
    try:
        report = export_model(model, root / "model.onnx", "onnx")
    except InputError as err:
        print(f"onnxruntime : skipped ({err})")
        return None
    print(f"onnx export : max |diff| {report.max_diff:.2e} HU, RMS {report.rms_diff:.2e} HU on the export check")
    path = report.path
    hu = read_series(series).hu
    denoiser = OnnxDenoiser(path, batch_size=batch_size, device="cpu")
    denoiser(hu[:batch_size])  # warm-up: the first run plans the graph's memory
    model_s, denoised = best_seconds(lambda: denoiser(hu), repeats)

    def whole() -> None:
        denoise_series(path, series, root / "out-onnx", batch_size=batch_size, device="cpu", overwrite=True)

    whole_s, _ = best_seconds(whole, repeats)
    return model_s, whole_s, denoised


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=64, help="slices in the test series (default 64)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZES["cpu"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, help="trained checkpoint (default: random weights)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="ldct_infer_bench_") as tmp:
        root = Path(tmp)
        series = root / "series"
        series.mkdir()
        make_series(series, args.slices, shift=True)
        checkpoint = args.checkpoint or save_checkpoint(
            CLIPDenoiser(encoder_weights="random"), root / "random.safetensors"
        )
        model = load_checkpoint(checkpoint)
        macs = macs_per_slice(model)

        peaks = {p: gemm_peaks(torch.float32 if p == "fp32" else torch.bfloat16, args.repeats) for p in PRECISIONS}
        rows, outputs = {}, {}
        for precision in PRECISIONS:
            model_s, whole_s, outputs[precision] = measure(
                model, checkpoint, series, root / f"out-{precision}", precision, args.batch_size, args.repeats
            )
            rows[precision] = (args.slices / model_s, args.slices / whole_s)
        onnx = measure_onnx(model, root, series, args.batch_size, args.repeats)
        if onnx is not None:
            rows["onnxruntime fp32"] = (args.slices / onnx[0], args.slices / onnx[1])
            outputs["onnxruntime fp32"] = onnx[2]

    gmac = macs / 1e9
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    diff = outputs["bf16"] - outputs["fp32"]
    weights = f"checkpoint {args.checkpoint.name}" if args.checkpoint else "random weights"
    print(f"machine     : {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"model       : CLIPDenoiser, {weights}, {gmac:.2f} GMAC per 512x512 slice; {args.slices} slices, "
          f"batch size {args.batch_size}, best of {args.repeats}")
    for precision in PRECISIONS:
        matmul, conv = peaks[precision]
        print(f"GEMM peak   : {precision} torch.matmul {matmul:6.1f} GMAC/s, oneDNN conv {conv:6.1f} GMAC/s")
    print()
    print("backend, precision | model slices/s | model GMAC/s | % matmul peak | % oneDNN peak | "
          "whole command slices/s | % of model")
    for name, (model_rate, whole_rate) in rows.items():
        achieved = model_rate * gmac
        matmul, conv = peaks[name if name in PRECISIONS else "fp32"]
        label = f"torch {name}" if name in PRECISIONS else name
        print(f"{label:18s} | {model_rate:14.3f} | {achieved:12.1f} | {100 * achieved / matmul:12.0f}% | "
              f"{100 * achieved / conv:12.0f}% | {whole_rate:22.3f} | {100 * whole_rate / model_rate:9.0f}%")
    print()
    print(f"bf16 vs fp32: RMS {np.sqrt(np.mean(diff**2)):.3f} HU, max |diff| {np.abs(diff).max():.3f} HU, "
          f"for an fp32 output spread (std) of {outputs['fp32'].std():.1f} HU"
          + ("" if args.checkpoint else " (random weights: pass --checkpoint for a trained model's figure)"))
    if "onnxruntime fp32" in outputs:
        onnx_diff = outputs["onnxruntime fp32"] - outputs["fp32"]
        print(f"onnxruntime vs torch fp32: RMS {np.sqrt(np.mean(onnx_diff**2)):.2e} HU, "
              f"max |diff| {np.abs(onnx_diff).max():.2e} HU")
    print(f"peak memory : {peak_gb:.2f} GB resident (ru_maxrss, whole run)")
    print()
    checks = [
        *(f"{p} model >= {TARGETS[p]:.0%} of torch.matmul peak: "
          f"{'yes' if rows[p][0] * gmac >= TARGETS[p] * peaks[p][0] else 'NO'}" for p in PRECISIONS),
        *(f"{p} whole command >= {WHOLE_COMMAND_TARGET:.0%} of model alone: "
          f"{'yes' if rows[p][1] >= WHOLE_COMMAND_TARGET * rows[p][0] else 'NO'}" for p in PRECISIONS),
        f"peak memory <= {MEMORY_TARGET_GB:.0f} GB: {'yes' if peak_gb <= MEMORY_TARGET_GB else 'NO'}",
    ]
    print("targets     : " + "\n              ".join(checks))


if __name__ == "__main__":
    main()
