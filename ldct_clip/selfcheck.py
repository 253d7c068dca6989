"""``python -m ldct_clip.selfcheck``: build the model, run one CT-sized forward pass, print what it found.

It shows that the installation works end to end: open_clip builds the trunk, the weights load from the
chosen source, and a slice goes through with the expected feature and output shapes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from ldct_clip.cli import run_cli
from ldct_clip.device import DEVICES, resolve_device
from ldct_clip.models.denoiser import CLIPDenoiser


def _count(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ldct-clip-selfcheck", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--encoder-weights", default="openai",
        help="'openai' (open_clip pretrained tag), a path to RN50.pt / an open_clip checkpoint, or 'random'",
    )
    parser.add_argument("--in-channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--size", type=int, default=512, help="input height and width (default 512, a CT slice)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    model = CLIPDenoiser(in_channels=args.in_channels, encoder_weights=args.encoder_weights).to(device).eval()
    x = torch.rand(1, args.in_channels, args.size, args.size, device=device)
    with torch.inference_mode():
        image = model.adapter(x) if model.adapter is not None else x
        features = model.encoder(image)
        start = time.perf_counter()
        y = model(x)
        seconds = time.perf_counter() - start

    print(f"encoder weights : {model.encoder_weight_source}")
    if model.encoder_weight_source == "random":
        print("WARNING         : randomly initialised encoder: outputs are NOT CLIPDenoising's")
    print(f"device          : {device}")
    print(f"parameters      : adapter {_count(model.adapter):,}, encoder trunk {_count(model.encoder):,} (frozen), "
          f"decoder {_count(model.decoder):,}")
    for i, f in enumerate(features, start=1):
        print(f"F{i}              : {tuple(f.shape)}")
    print(f"input -> output : {tuple(x.shape)} -> {tuple(y.shape)} in {seconds:.2f} s")
    ok = y.shape == x.shape and bool(torch.isfinite(y).all())
    print("self-check      : " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def cli() -> int:
    """Console-script entry point (``ldct-clip-selfcheck``)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
