"""The frozen CLIP RN50 trunk that gives the four dense feature maps F1..F4.

The trunk is open_clip's ``ModifiedResNet`` (the ``RN50`` visual tower) cut after ``layer3``: the stem, then
``layer1``..``layer3``. ``layer4`` and the attention pool are never built, so they are neither held nor
computed. Module names match open_clip's, so a checkpoint's ``visual.<name>`` tensors map one to one.

Weight sources (``weights`` argument):

- ``"openai"``: open_clip's pretrained tag, fetched (or taken from the local cache) by open_clip.
- a path to OpenAI's TorchScript ``RN50.pt`` or to an open_clip checkpoint (a state dict file or
  ``.safetensors``) holding the trunk under ``visual.*``.
- ``"random"``: random initialisation, accepted only by that name and logged as a warning.
"""

from __future__ import annotations

import logging
import os
import socket
import zipfile
from pathlib import Path

import torch
from torch import nn

from ldct_clip.errors import InputError

logger = logging.getLogger(__name__)

OPENAI_TAG = "openai"
HF_HOST = "huggingface.co"
RANDOM = "random"
#: Internal marker: build the trunk without loading weights because a checkpoint will fill them in.
FROM_CHECKPOINT = "<checkpoint>"

#: open_clip's RN50 visual tower configuration.
RN50_LAYERS = (3, 4, 6, 3)
RN50_WIDTH = 64
#: Feature channels and strides of F1..F4.
FEATURE_CHANNELS = (64, 256, 512, 1024)
FEATURE_STRIDES = (2, 4, 8, 16)
#: Children of ``ModifiedResNet`` that the trunk keeps, in forward order.
TRUNK_MODULES = (
    "conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3", "act3", "avgpool",
    "layer1", "layer2", "layer3",
)
_UNUSED_PREFIXES = ("layer4.", "attnpool.")
_LOCAL_FILE_HINT = (
    "download RN50.pt (OpenAI) or an open_clip RN50 checkpoint on a machine with network access and pass "
    "its path as encoder_weights (command line: --encoder-weights PATH, or --set model.encoder_weights=PATH "
    "for training)"
)


class CLIPEncoder(nn.Module):
    """Frozen CLIP RN50 trunk returning ``[F1, F2, F3, F4]``.

    F1 is the stem's third conv + BN + ReLU (64 ch, H/2), F2..F4 the outputs of ``layer1``..``layer3``
    (256, 512, 1024 ch at H/4, H/8, H/16). Its weights never require gradients; whether its BatchNorm
    statistics adapt is decided by :class:`~ldct_clip.models.denoiser.CLIPDenoiser`.

    Args:
        weights: ``"openai"``, a path to a weights file, or ``"random"`` (see module docstring).

    >>> enc = CLIPEncoder("random")
    >>> [tuple(f.shape[1:]) for f in enc(torch.zeros(1, 3, 64, 64))]
    [(64, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4)]
    """

    def __init__(self, weights: str | os.PathLike[str] = OPENAI_TAG) -> None:
        super().__init__()
        from open_clip.modified_resnet import ModifiedResNet  # open_clip takes ~2 s to import: only when needed

        full = ModifiedResNet(layers=RN50_LAYERS, output_dim=1024, heads=32, image_size=224, width=RN50_WIDTH)
        for name in TRUNK_MODULES:
            setattr(self, name, getattr(full, name))
        del full
        self.weight_source = self._load(weights)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.act3(self.bn3(self.conv3(self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))))))
        f2 = self.layer1(self.avgpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        return [f1, f2, f3, f4]

    def _load(self, weights: str | os.PathLike[str]) -> str:
        """Fill the trunk from ``weights`` and return a one-line description of the source."""
        if isinstance(weights, str) and weights == FROM_CHECKPOINT:
            return FROM_CHECKPOINT
        if isinstance(weights, str) and weights == RANDOM:
            logger.warning(
                "encoder_weights='random': the CLIP encoder is RANDOMLY INITIALISED. Results are not "
                "CLIPDenoising's; use this only for tests and smoke runs."
            )
            return RANDOM
        if isinstance(weights, str) and weights == OPENAI_TAG:
            path = _download_openai()
            self.load_trunk_state(read_visual_state_dict(path), source=str(path))
            return f"{OPENAI_TAG} ({path})"
        path = Path(weights)
        if not path.is_file():
            raise InputError(
                f"{path}: encoder weights file not found; pass '{OPENAI_TAG}', '{RANDOM}' or the path of an "
                "existing RN50.pt / open_clip RN50 checkpoint"
            )
        self.load_trunk_state(read_visual_state_dict(path), source=str(path))
        return str(path.resolve())

    def load_trunk_state(self, visual: dict[str, torch.Tensor], source: str) -> None:
        """Copy every trunk tensor from a ``visual.*``-stripped state dict; ``layer4``/``attnpool`` are ignored."""
        trunk = {k: v for k, v in visual.items() if not k.startswith(_UNUSED_PREFIXES)}
        expected = self.state_dict()
        missing = sorted(set(expected) - set(trunk))
        if missing:
            raise InputError(
                f"{source}: not a CLIP RN50 visual checkpoint ({len(missing)} trunk tensors missing, "
                f"e.g. visual.{missing[0]}); pass OpenAI's RN50.pt or an open_clip RN50 checkpoint"
            )
        wrong = [k for k in expected if tuple(trunk[k].shape) != tuple(expected[k].shape)]
        if wrong:
            k = wrong[0]
            raise InputError(
                f"{source}: visual.{k} has shape {tuple(trunk[k].shape)}, RN50 needs {tuple(expected[k].shape)}; "
                "this is another CLIP architecture: pass an RN50 checkpoint"
            )
        self.load_state_dict({k: trunk[k].to(expected[k].dtype) for k in expected}, strict=True)


def read_visual_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the ``visual.*`` tensors of a CLIP checkpoint, keys returned without the ``visual.`` prefix.

    Accepts OpenAI's TorchScript archives, torch state-dict files (loaded with ``weights_only=True``, so
    no pickled code runs; a top-level ``state_dict`` entry and a ``module.`` prefix are unwrapped) and
    ``.safetensors`` files.
    """
    path = Path(path)
    state = _read_state_dict(path)
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise InputError(
            f"{path}: no 'visual.*' tensors in this file; pass OpenAI's RN50.pt or an open_clip RN50 checkpoint"
        )
    return visual


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise InputError(f"{path}: unreadable safetensors file ({err}); re-download it") from None
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"{path}: not a PyTorch/TorchScript checkpoint (not a zip archive); pass RN50.pt or an open_clip checkpoint"
        )
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise InputError(f"{path}: unreadable TorchScript archive ({_first_line(err)}); re-download it") from None
        return {k: v.float() for k, v in module.state_dict().items()}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or unsafe pickles
        raise InputError(f"{path}: unreadable checkpoint ({_first_line(err)}); re-download it") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state dict; pass an open_clip checkpoint")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives carry a ``code/`` folder; plain ``torch.save`` files do not."""
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in name or name.startswith("code/") for name in zf.namelist())


def _download_openai() -> Path:
    """Find the OpenAI RN50 weights in the Hugging Face cache or fetch them; one clear error when offline.

    open_clip serves the ``openai`` tag from the Hugging Face hub. The cache is checked first so a machine
    that fetched the weights once works offline; a quick reachability probe avoids the hub client's long
    retry loop on machines without network.
    """
    import open_clip
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import download_pretrained

    cfg = open_clip.get_pretrained_cfg("RN50", OPENAI_TAG)
    repo_id = cfg["hf_hub"].rstrip("/")  # "org/model/" form: open_clip's default file names apply
    for name in ("open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"):
        cached = try_to_load_from_cache(repo_id, name)
        if isinstance(cached, str):
            return Path(cached)
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or not _reachable(HF_HOST):
        raise InputError(
            f"encoder_weights='{OPENAI_TAG}': the CLIP RN50 weights are not cached and {HF_HOST} cannot be "
            f"reached; {_LOCAL_FILE_HINT}"
        )
    try:
        return Path(download_pretrained(cfg))
    except Exception as err:  # network stacks raise many types; the user needs one message
        raise InputError(
            f"encoder_weights='{OPENAI_TAG}': could not fetch the CLIP RN50 weights ({_first_line(err)}); "
            f"{_LOCAL_FILE_HINT}"
        ) from None


def _reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
