"""``encoder_weights="openai"`` finds the weights in a Hugging Face cache laid out as open_clip leaves it.

The cache is built on disk exactly as huggingface_hub writes it after a real ``open_clip`` download:
``models--<org>--<name>/blobs/<sha256>``, ``snapshots/<commit>/<file>`` as a relative symlink to the blob and
``refs/main`` holding the commit hash. Nothing in the lookup is mocked; the network is cut at the socket.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import huggingface_hub.constants
import open_clip
import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet
from safetensors.torch import save_file

from ldct_clip.errors import InputError
from ldct_clip.models.encoder import CLIPEncoder

#: The real hub repository and file names that open_clip 2.24+ uses for RN50/openai (checked below).
REPO_ID = "timm/resnet50_clip.openai"
REPO_FOLDER = "models--timm--resnet50_clip.openai"
SAFETENSORS_NAME = "open_clip_model.safetensors"
BIN_NAME = "open_clip_pytorch_model.bin"
COMMIT = hashlib.sha1(b"ldct_clip test snapshot").hexdigest()


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    """An open_clip-format RN50 state dict (``visual.*`` plus a text-side tensor) with distinctive values."""
    torch.manual_seed(1)
    visual = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, heads=32, image_size=224, width=64)
    state = {}
    for i, (key, value) in enumerate(visual.state_dict().items()):
        if value.is_floating_point():  # float16 as in OpenAI's release, and half the bytes to write
            value = (torch.randn_like(value) * 0.1 + i * 1e-3).half()
        state[f"visual.{key}"] = value
    state["logit_scale"] = torch.ones([])
    return state


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache that huggingface_hub (which reads its settings at import) is redirected to."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every DNS look-up or socket connection made during the test, each refused."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def _offline(monkeypatch: pytest.MonkeyPatch, offline: bool) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)


def _put_in_cache(cache: Path, filename: str, state: dict[str, torch.Tensor], scratch: Path) -> tuple[Path, str]:
    """Store ``state`` as huggingface_hub stores a downloaded file; return the snapshot path and its sha256."""
    scratch.mkdir(parents=True, exist_ok=True)
    staged = scratch / filename
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(staged))
    else:
        torch.save(state, staged)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    repo = cache / REPO_FOLDER
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    blob = repo / "blobs" / digest
    staged.rename(blob)
    snapshot = repo / "snapshots" / COMMIT / filename
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot, digest


def _assert_trunk_is(encoder: CLIPEncoder, state: dict[str, torch.Tensor]) -> None:
    trunk = encoder.state_dict()
    unused = ("visual.layer4.", "visual.attnpool.")
    assert len(trunk) == len([k for k in state if k.startswith("visual.") and not k.startswith(unused)])
    for key, value in trunk.items():
        assert torch.equal(value, state[f"visual.{key}"].to(value.dtype)), key


def test_the_cache_layout_written_here_is_open_clips() -> None:
    """The names this test writes are the ones the installed open_clip downloads, in the order it tries them."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    assert open_clip.get_pretrained_cfg("RN50", "openai")["hf_hub"] == f"{REPO_ID}/"
    assert (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME) == (SAFETENSORS_NAME, BIN_NAME)
    assert huggingface_hub.file_download.repo_folder_name(repo_id=REPO_ID, repo_type="model") == REPO_FOLDER


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE=1", "online"])
def test_cache_filled_by_open_clip_is_used_without_network(
    offline: bool, weights: dict[str, torch.Tensor], hub_cache: Path, tmp_path: Path,
    network_attempts: list[object], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _offline(monkeypatch, offline)
    snapshot, digest = _put_in_cache(hub_cache, SAFETENSORS_NAME, weights, tmp_path / "staged")
    encoder = CLIPEncoder("openai")
    _assert_trunk_is(encoder, weights)
    assert network_attempts == []
    assert encoder.weight_sha256 == digest
    assert encoder.weight_source.startswith("openai (")
    assert f"{REPO_ID}/{SAFETENSORS_NAME}" in encoder.weight_source and str(snapshot) in encoder.weight_source
    assert "blobs" not in encoder.weight_source


def test_safetensors_is_preferred_to_bin_as_open_clip_does(
    weights: dict[str, torch.Tensor], hub_cache: Path, tmp_path: Path,
    network_attempts: list[object], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _offline(monkeypatch, True)
    bin_weights = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
    _, bin_digest = _put_in_cache(hub_cache, BIN_NAME, bin_weights, tmp_path / "bin")
    only_bin = CLIPEncoder("openai")
    _assert_trunk_is(only_bin, bin_weights)
    assert only_bin.weight_sha256 == bin_digest and only_bin.weight_source.endswith(f"{BIN_NAME})")

    _, safe_digest = _put_in_cache(hub_cache, SAFETENSORS_NAME, weights, tmp_path / "safe")
    both = CLIPEncoder("openai")
    _assert_trunk_is(both, weights)
    assert both.weight_sha256 == safe_digest
    assert network_attempts == []


def test_offline_without_cached_weights_is_one_line(
    hub_cache: Path, network_attempts: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, True)
    with pytest.raises(InputError, match="encoder_weights='openai'") as info:
        CLIPEncoder("openai")
    message = str(info.value)
    assert "not cached" in message and "--encoder-weights PATH" in message and "\n" not in message
    assert network_attempts == []


def test_snapshot_file_passed_as_a_path_is_recorded_by_its_snapshot_path(
    weights: dict[str, torch.Tensor], hub_cache: Path, tmp_path: Path
) -> None:
    snapshot, digest = _put_in_cache(hub_cache, SAFETENSORS_NAME, weights, tmp_path / "staged")
    encoder = CLIPEncoder(snapshot)
    _assert_trunk_is(encoder, weights)
    assert encoder.weight_source == str(snapshot) and encoder.weight_sha256 == digest


_CHILD = """
import socket, sys

def refuse(*args, **kwargs):
    raise SystemExit(f"network attempt: {args!r}")

socket.getaddrinfo = socket.socket.connect = refuse
from ldct_clip.models.encoder import CLIPEncoder

encoder = CLIPEncoder("openai")
print(encoder.weight_sha256)
print(encoder.weight_source)
"""


@pytest.mark.slow
def test_offline_cache_through_the_environment_alone(weights: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """As a user runs it: HF_HUB_CACHE and HF_HUB_OFFLINE set before Python starts, nothing patched in-process."""
    import subprocess
    import sys

    cache = tmp_path / "hub"
    snapshot, digest = _put_in_cache(cache, SAFETENSORS_NAME, weights, tmp_path / "staged")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sha, source = done.stdout.splitlines()[-2:]
    assert sha == digest and str(snapshot) in source
