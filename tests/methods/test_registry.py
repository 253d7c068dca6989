"""The method registry: every method builds, saves, loads and denoises through the same interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ldct_clip import denoise_volume, load_checkpoint, save_checkpoint
from ldct_clip.errors import InputError
from ldct_clip.methods import create_model, get_method, list_methods

SETTINGS = {"clipdenoising": {"encoder_weights": "random"}, "noise2sim": {"features": (8, 16, 32)},
            "redcnn": {"channels": 8},
            "scoresde_ct": {"image_size": 32, "nf": 8, "ch_mult": (1, 2, 2), "attn_resolutions": (8,), "n": 2}}


def test_the_comparison_methods_are_registered() -> None:
    assert {"clipdenoising", "noise2sim", "redcnn", "scoresde_ct"} <= set(list_methods())
    assert get_method("scoresde_ct").samples and not get_method("redcnn").samples
    assert get_method("noise2sim").paper_preset == "noise2sim" and get_method("redcnn").paper_preset == "redcnn"
    with pytest.raises(InputError, match="method 'red-cnn': unknown; use one of clipdenoising"):
        get_method("red-cnn")


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_checkpoint_round_trip_names_the_method(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SETTINGS[name]).eval()
    path = save_checkpoint(model, tmp_path / f"{name}.safetensors", extra={"step": "3"})
    loaded = load_checkpoint(path)
    assert loaded.method == name and loaded.settings == model.settings
    x = torch.rand(1, 1, 64, 64)
    args = (x, torch.tensor([1.0])) if name == "scoresde_ct" else (x,)
    with torch.no_grad():
        assert torch.equal(loaded(*args), model(*args))


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_method_denoises_hu_volumes_of_any_size(name: str) -> None:
    model = create_model(name, **SETTINGS[name])
    hu = np.random.default_rng(0).normal(40.0, 30.0, (3, 45, 38)).astype(np.float32)
    out = denoise_volume(model, hu, device="cpu")
    assert out.shape == hu.shape and out.dtype == np.float32 and np.isfinite(out).all()


def test_noise2sim_keeps_hu_outside_its_window_from_the_input() -> None:
    """The network sees only [-160, 240] HU; air and bone keep their low-dose values, inside it is denoised."""
    model = create_model("noise2sim", features=(8, 16, 32))
    hu = np.full((1, 32, 32), 40.0, np.float32)
    hu[0, :8] = -1000.0
    hu[0, -8:] = 1500.0
    out = denoise_volume(model, hu, device="cpu")
    assert np.array_equal(out[0, :8], hu[0, :8]) and np.array_equal(out[0, -8:], hu[0, -8:])
    assert out[0, 8:-8].min() >= -160.0 and out[0, 8:-8].max() <= 240.0


def test_settings_are_checked() -> None:
    with pytest.raises(InputError, match="unknown setting"):
        create_model("redcnn", width=3)
    with pytest.raises(InputError, match="invalid settings"):
        create_model("noise2sim", window_hu=(240.0, -160.0))


def test_score_sampler_steps_are_chosen_by_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """``steps`` reaches the sampler: 2 * steps + 1 network evaluations per batch."""
    model = create_model("scoresde_ct", **SETTINGS["scoresde_ct"])
    calls = {"n": 0}
    original = type(model).forward

    def counted(self, x, sigma):  # noqa: ANN001, ANN202
        calls["n"] += 1
        return original(self, x, sigma)

    monkeypatch.setattr(type(model), "forward", counted)
    denoise_volume(model, np.zeros((1, 32, 32), np.float32), device="cpu", steps=3)
    assert calls["n"] == 2 * 3 + 1
