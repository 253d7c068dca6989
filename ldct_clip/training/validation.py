"""Validation during training: the model's PSNR/SSIM beside its low-dose input's, under a metric preset."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ldct_clip.data.hu import model_to_hu
from ldct_clip.metrics import score_slices


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
