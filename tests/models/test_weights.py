"""Loading CLIP weights from files, as users pass them: OpenAI TorchScript, open_clip state dicts, safetensors."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import open_clip
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


def _openai_rn50_url() -> str:
    """OpenAI's published RN50.pt URL from open_clip's table; its folder name is the file's sha256."""
    return open_clip.get_pretrained_cfg("RN50", "openai")["url"]


@pytest.fixture(scope="module")
def torchscript_rn50(fake_clip: _FakeCLIP, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openai") / "RN50.pt"
    torch.jit.trace(fake_clip, torch.zeros(1, dtype=torch.float16)).save(str(path))
    return path


def test_openai_torchscript_file_maps_every_trunk_tensor(
    fake_clip: _FakeCLIP, torchscript_rn50: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        encoder = CLIPEncoder(torchscript_rn50)
    _assert_trunk_equals(encoder, fake_clip)
    assert encoder.weight_source == str(torchscript_rn50.resolve())
    assert encoder.weight_sha256 == hashlib.sha256(torchscript_rn50.read_bytes()).hexdigest()
    # named like OpenAI's file but not its bytes: loaded, and the user is told it is not the published file
    assert "not that of OpenAI's published RN50.pt" in caplog.text


def test_weight_sha256_is_none_without_a_file() -> None:
    assert CLIPEncoder("random").weight_sha256 is None


@pytest.mark.parametrize("name", ["RN50.pt", "my_clip.pt"])
def test_truncated_torchscript_file_says_download_again(torchscript_rn50: Path, tmp_path: Path, name: str) -> None:
    data = torchscript_rn50.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="looks truncated or corrupt") as info:
        CLIPEncoder(path)
    message = str(info.value)
    assert str(path) in message and "download it again" in message and "\n" not in message
    published = _openai_rn50_url().split("/")[-2]
    if name == "RN50.pt":  # OpenAI's name: the file's sha256 is compared with the published one
        assert published[:12] in message and hashlib.sha256(path.read_bytes()).hexdigest()[:12] in message
        assert _openai_rn50_url() in message
    else:
        assert published[:12] not in message


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
    with pytest.raises(InputError, match="refused") as info:
        read_visual_state_dict(path)
    assert not (tmp_path / "pwned").exists()
    message = str(info.value)
    assert str(path) in message and "getattr" in message and "\n" not in message
    # torch's own advice (set weights_only=False, "if you trust the source") must never reach the user
    for advice in ("weights_only", "trust", "can still be loaded", "\x1b"):
        assert advice not in message


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


def _hollow_visual(layers: tuple[int, ...], width: int, output_dim: int, image_size: int) -> ModifiedResNet:
    """A ModifiedResNet with the real tensor shapes but one stored element per tensor, so files stay tiny."""
    with torch.device("meta"):
        visual = ModifiedResNet(layers, output_dim, heads=width // 2, image_size=image_size, width=width)
    for module in visual.modules():
        for group in (module._parameters, module._buffers):
            for name, value in group.items():
                if value is None:  # a conv without bias
                    continue
                hollow = torch.zeros((), dtype=value.dtype).expand(value.shape)
                group[name] = nn.Parameter(hollow, requires_grad=False) if name in module._parameters else hollow
    return visual


class _HollowCLIP(nn.Module):
    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale


# open_clip's vision configs (model_configs/*.json) of the other ResNet CLIPs
_OTHER_RESNETS = {
    "RN101": ((3, 4, 23, 3), 64, 512, 224),
    "RN50x4": ((4, 6, 10, 6), 80, 640, 288),
}


@pytest.mark.parametrize("form", ["torchscript", "open_clip"])
@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ("RN101", "layer3 has 23 blocks, RN50 has 6: this looks like RN101"),
        ("RN50x4", "layer1 has 4 blocks, RN50 has 3: this looks like RN50x4"),
    ],
)
def test_other_resnet_clip_checkpoints_are_refused_by_name(tmp_path: Path, arch: str, match: str, form: str) -> None:
    clip = _HollowCLIP(_hollow_visual(*_OTHER_RESNETS[arch]))
    if form == "torchscript":  # OpenAI's published form
        path = tmp_path / f"{arch}.pt"
        torch.jit.trace(clip, torch.zeros(1)).save(str(path))
    else:  # an open_clip training checkpoint
        path = tmp_path / f"{arch.lower()}_open_clip.pt"
        torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path)
    with pytest.raises(InputError, match=match) as info:
        CLIPEncoder(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_rn101_trunk_without_head_is_refused(tmp_path: Path) -> None:
    """Only stem..layer3 kept: the extra layer3 blocks alone give RN101 away."""
    visual = _hollow_visual(*_OTHER_RESNETS["RN101"])
    path = tmp_path / "rn101_trunk.pt"
    torch.save({f"visual.{k}": v for k, v in visual.state_dict().items() if not k.startswith(("layer4", "attnpool"))},
               path)
    with pytest.raises(InputError, match="layer3 has 23 blocks, RN50 has 6: this looks like RN101"):
        CLIPEncoder(path)


def test_rn50_trunk_with_another_attention_pool_is_refused(tmp_path: Path) -> None:
    """RN50's blocks but a 512-wide output projection: not RN50's head, so not RN50's weights."""
    visual = _hollow_visual((3, 4, 6, 3), 64, 512, 224)
    path = tmp_path / "rn50_512.pt"
    torch.save({f"visual.{k}": v for k, v in visual.state_dict().items()}, path)
    with pytest.raises(InputError, match=r"visual\.attnpool\.c_proj\.weight has shape \(512, 2048\)"):
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


def test_random_weights_are_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        encoder = CLIPEncoder("random")
    assert encoder.weight_source == "random"
    assert "RANDOMLY INITIALISED" in caplog.text
