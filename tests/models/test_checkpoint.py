"""Self-contained checkpoints: save -> load gives the same model, bad files give clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import ldct_clip
from ldct_clip import CLIPDenoiser, load_checkpoint, save_checkpoint
from ldct_clip.errors import InputError


def test_save_load_gives_identical_eval_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CLIPDenoiser(in_channels=1, encoder_weights="random", bn="adapt", pfa_gamma=0.03)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 1, 64, 64))  # adapt the encoder's BN statistics
        model.adapter.weight.mul_(1.5)
    path = save_checkpoint(model, tmp_path / "model.safetensors", extra={"step": "7"})
    loaded = load_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    x = torch.rand(1, 1, 96, 80)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    bn_mean = loaded.encoder.bn1.running_mean
    assert torch.equal(bn_mean, model.encoder.bn1.running_mean) and bn_mean.abs().sum() > 0
    assert loaded.encoder_weight_source == "random"


def test_metadata_records_config_and_version(tmp_path: Path) -> None:
    model = CLIPDenoiser(in_channels=3, encoder_weights="random", bn="frozen", pfa_gamma=0.05)
    path = save_checkpoint(model, tmp_path / "rgb.safetensors", extra={"step": "12"})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"]) == {"in_channels": 3, "encoder_weights": "random", "bn": "frozen",
                                          "pfa_gamma": 0.05}
    assert meta["method"] == "clipdenoising" and meta["format_version"] == "2"
    assert meta["ldct_clip_version"] == ldct_clip.__version__
    assert meta["step"] == "12"
    assert load_checkpoint(path).in_channels == 3
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: p.write_bytes(b"\x00" * 64), "not a readable safetensors checkpoint"),
        (lambda p: save_file({"x": torch.zeros(1)}, str(p)), "not an ldct_clip checkpoint"),
        (lambda p: save_file({"x": torch.zeros(1)}, str(p), metadata={"format": "ldct_clip.CLIPDenoiser",
                                                                      "format_version": "99"}), "newer"),
    ],
)
def test_bad_files(tmp_path: Path, write, match: str) -> None:
    path = tmp_path / "bad.safetensors"
    write(path)
    with pytest.raises(InputError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = save_checkpoint(CLIPDenoiser(encoder_weights="random"), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a readable safetensors checkpoint"):
        load_checkpoint(path)


def test_checkpoint_of_another_architecture(tmp_path: Path) -> None:
    path = save_checkpoint(CLIPDenoiser(encoder_weights="random"), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state["decoder.output.weight"] = torch.zeros(2, 64, 3, 3)
    save_file(state, str(path), metadata=meta)
    with pytest.raises(InputError, match="another architecture"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_version_1_checkpoints_load_as_clipdenoising(tmp_path: Path) -> None:
    """Files written before the method registry (format tag ldct_clip.CLIPDenoiser, no method) keep loading."""
    model = CLIPDenoiser(encoder_weights="random")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "v1.safetensors"
    save_file(state, str(path), metadata={"format": "ldct_clip.CLIPDenoiser", "format_version": "1",
                                          "config": json.dumps({"in_channels": 1, "bn": "adapt", "pfa_gamma": 0.025}),
                                          "encoder_weight_source": "random", "ldct_clip_version": "0.1.0"})
    loaded = load_checkpoint(path)
    assert loaded.method == "clipdenoising" and loaded.encoder_weight_source == "random"
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_diverged_weights_are_refused(tmp_path: Path) -> None:
    model = CLIPDenoiser(encoder_weights="random")
    with torch.no_grad():
        model.decoder.output.weight[0, 0, 0, 0] = float("nan")
    path = save_checkpoint(model, tmp_path / "nan.safetensors")
    with pytest.raises(InputError, match="NaN or infinite values.*decoder.output.weight.*diverged"):
        load_checkpoint(path)


def test_checkpoints_are_readable_by_others(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = save_checkpoint(CLIPDenoiser(encoder_weights="random"), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
