"""Loading CLIP weights from files, as users pass them: OpenAI TorchScript, open_clip state dicts, safetensors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet
from safetensors.torch import save_file
from torch import nn

from ldct_clip.errors import InputError
from ldct_clip.models.denoiser import CLIPDenoiser
from ldct_clip.models.encoder import CLIPEncoder, read_visual_state_dict


class _FakeCLIP(nn.Module):
    """A CLIP-shaped module: the full RN50 visual tower under ``visual`` plus a text-side tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, heads=32, image_size=224, width=64)
        self.logit_scale = nn.Parameter(torch.ones([]))
        with torch.no_grad():  # distinctive values, so a tensor mapped to the wrong place is noticed
            for i, t in enumerate(self.visual.state_dict().values()):
                if t.is_floating_point():
                    t.copy_(torch.randn_like(t) * 0.1 + i * 1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale


@pytest.fixture(scope="module")
def fake_clip() -> _FakeCLIP:
    torch.manual_seed(0)
    return _FakeCLIP().half()  # OpenAI's RN50.pt stores float16 weights


def _assert_trunk_equals(encoder: CLIPEncoder, clip: _FakeCLIP) -> None:
    reference = clip.visual.state_dict()
    trunk = encoder.state_dict()
    assert len(trunk) == len([k for k in reference if not k.startswith(("layer4", "attnpool"))])
    for key, value in trunk.items():
        assert value.dtype == torch.float32 or not value.is_floating_point()
        assert torch.equal(value, reference[key].to(value.dtype)), key


def test_openai_torchscript_file_maps_every_trunk_tensor(fake_clip: _FakeCLIP, tmp_path: Path) -> None:
    path = tmp_path / "RN50.pt"
    torch.jit.trace(fake_clip, torch.zeros(1, dtype=torch.float16)).save(str(path))
    encoder = CLIPEncoder(path)
    _assert_trunk_equals(encoder, fake_clip)
    assert encoder.weight_source == str(path.resolve())


def test_open_clip_state_dict_file_with_wrapper_and_module_prefix(fake_clip: _FakeCLIP, tmp_path: Path) -> None:
    path = tmp_path / "open_clip_rn50.pt"
    state = {f"module.{k}": v for k, v in fake_clip.state_dict().items()}
    torch.save({"epoch": 32, "state_dict": state}, path)
    _assert_trunk_equals(CLIPEncoder(path), fake_clip)


def test_safetensors_file(fake_clip: _FakeCLIP, tmp_path: Path) -> None:
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in fake_clip.state_dict().items()}, str(path))
    model = CLIPDenoiser(encoder_weights=path)
    _assert_trunk_equals(model.encoder, fake_clip)
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_pickled_code_is_never_executed(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # noqa: D105 - would run on unpickling
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"visual.conv1.weight": Evil()}, path)
    with pytest.raises(InputError, match="unreadable checkpoint"):
        read_visual_state_dict(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("content", "name", "match"),
    [
        (b"not a checkpoint at all", "RN50.pt", "not a PyTorch/TorchScript checkpoint"),
        (b"garbage", "w.safetensors", "unreadable safetensors"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, name: str, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as info:
        CLIPEncoder(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_of_another_clip_architecture(tmp_path: Path) -> None:
    wide = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, heads=32, image_size=224, width=80)  # RN50x4-like
    path = tmp_path / "rn50x4.safetensors"
    save_file({f"visual.{k}": v.contiguous() for k, v in wide.state_dict().items()}, str(path))
    with pytest.raises(InputError, match="another CLIP architecture"):
        CLIPEncoder(path)


def test_file_without_visual_tensors(tmp_path: Path) -> None:
    path = tmp_path / "text_only.safetensors"
    save_file({"transformer.weight": torch.zeros(2)}, str(path))
    with pytest.raises(InputError, match="no 'visual.\\*' tensors"):
        CLIPEncoder(path)


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        CLIPEncoder(tmp_path / "RN50.pt")
    with pytest.raises(InputError, match="not found"):
        CLIPEncoder("Random")  # only the exact name 'random' means random weights


def test_openai_tag_offline_says_how_to_pass_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(InputError, match="encoder_weights") as info:
        CLIPDenoiser(encoder_weights="openai")
    message = str(info.value)
    assert "openai" in message and "--encoder-weights PATH" in message and "\n" not in message


def test_random_weights_are_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        encoder = CLIPEncoder("random")
    assert encoder.weight_source == "random"
    assert "RANDOMLY INITIALISED" in caplog.text
