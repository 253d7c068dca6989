"""The frozen CLIP RN50 trunk that gives the four dense feature maps F1..F4.

The trunk is open_clip's ``ModifiedResNet`` (the ``RN50`` visual tower) cut after ``layer3``: the stem, then
``layer1``..``layer3``. ``layer4`` and the attention pool are never built, so they are neither held nor
computed. Module names match open_clip's, so a checkpoint's ``visual.<name>`` tensors map one to one.

Weight sources (``weights`` argument):

- ``"openai"``: open_clip's pretrained tag, taken from the Hugging Face cache under the repository and file
  names open_clip itself downloads (so a cache filled by open_clip works offline), or fetched by open_clip.
- a path to OpenAI's TorchScript ``RN50.pt`` or to an open_clip checkpoint (a state dict file or
  ``.safetensors``) holding the trunk under ``visual.*``.
- ``"random"``: random initialisation, accepted only by that name and logged as a warning.

A file is accepted only if its visual tower is RN50's: a checkpoint of another ResNet CLIP (RN101, RN50x4, ...)
is refused by name, because loading just the tensors RN50 shares with it would give meaningless features.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import socket
import zipfile
from functools import cache
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

#: open_clip's name of the architecture whose visual tower the trunk is (its model config builds the tower).
ARCHITECTURE = "RN50"
#: Feature channels and strides of F1..F4.
FEATURE_CHANNELS = (64, 256, 512, 1024)
FEATURE_STRIDES = (2, 4, 8, 16)
#: Children of ``ModifiedResNet`` that the trunk keeps, in forward order.
TRUNK_MODULES = (
    "conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3", "act3", "avgpool",
    "layer1", "layer2", "layer3",
)
_UNUSED_PREFIXES = ("layer4.", "attnpool.")
_RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")
_HASH_CHUNK = 1 << 20
#: Local file header that starts every zip archive (so a file with it but no valid archive was cut short).
_ZIP_MAGIC = b"PK\x03\x04"
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

    Attributes:
        weight_source: where the weights came from: ``"random"``, the absolute path of the file as given
            (a hub snapshot path stays a snapshot path, not its blob), or ``"openai (<repo>/<file> at <path>)"``.
        weight_sha256: hex sha256 of the weights file read, ``None`` for random weights or when a model
            checkpoint supplies them.

    Args:
        weights: ``"openai"``, a path to a weights file, or ``"random"`` (see module docstring).

    >>> enc = CLIPEncoder("random")
    >>> [tuple(f.shape[1:]) for f in enc(torch.zeros(1, 3, 64, 64))]
    [(64, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4)]
    >>> enc.weight_source, enc.weight_sha256
    ('random', None)
    """

    def __init__(self, weights: str | os.PathLike[str] = OPENAI_TAG) -> None:
        super().__init__()
        full = _visual_tower(ARCHITECTURE)
        for name in TRUNK_MODULES:
            setattr(self, name, getattr(full, name))
        del full
        self.weight_sha256: str | None = None
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
            self._load_file(path)
            return f"{OPENAI_TAG} ({_openai_hub_files()[0]}/{path.name} at {path})"
        path = Path(weights)
        if not path.is_file():
            raise InputError(
                f"{path}: encoder weights file not found; pass '{OPENAI_TAG}', '{RANDOM}' or the path of an "
                "existing RN50.pt / open_clip RN50 checkpoint"
            )
        self._load_file(path)
        return os.path.abspath(path)  # not resolve(): a hub snapshot symlink must not become its blob path

    def _load_file(self, path: Path) -> None:
        """Hash ``path`` once, then fill the trunk from it."""
        self.weight_sha256 = _sha256(path)
        self.load_trunk_state(read_visual_state_dict(path, sha256=self.weight_sha256), source=str(path))

    def load_trunk_state(self, visual: dict[str, torch.Tensor], source: str) -> None:
        """Copy every trunk tensor from a ``visual.*``-stripped state dict after checking it is RN50's tower.

        ``layer4``/``attnpool`` are not loaded, but where present their shapes must be RN50's; blocks or tensors
        RN50 lacks (RN101's ``layer3.6``..``layer3.22``, say) are refused, naming the architecture found.
        """
        reference = _tower_shapes(ARCHITECTURE)
        _check_architecture(visual, reference, source)
        expected = self.state_dict()
        missing = sorted(set(expected) - set(visual))
        if missing:
            raise InputError(
                f"{source}: not a CLIP RN50 visual checkpoint ({len(missing)} trunk tensors missing, "
                f"e.g. visual.{missing[0]}); pass OpenAI's RN50.pt or an open_clip RN50 checkpoint"
            )
        wrong = [k for k in visual if k in reference and tuple(visual[k].shape) != reference[k]]
        if wrong:
            k = wrong[0]
            raise InputError(
                f"{source}: visual.{k} has shape {tuple(visual[k].shape)}, {ARCHITECTURE} needs {reference[k]}; "
                f"this is another CLIP architecture: pass an {ARCHITECTURE} checkpoint"
            )
        unknown = sorted(set(visual) - set(reference))
        if unknown:
            raise InputError(
                f"{source}: visual.{unknown[0]} (and {len(unknown) - 1} more) is not part of {ARCHITECTURE}'s "
                f"visual tower; this is another CLIP architecture: pass an {ARCHITECTURE} checkpoint"
            )
        self.load_state_dict({k: visual[k].to(expected[k].dtype) for k in expected}, strict=True)


def _visual_tower(name: str) -> nn.Module:
    """open_clip's visual tower for model ``name``, built from open_clip's own model config."""
    from open_clip import get_model_config  # open_clip takes ~2 s to import: only when needed
    from open_clip.model import _build_vision_tower

    cfg = get_model_config(name)
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])


@cache
def _tower_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape of open_clip's visual tower ``name`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in _visual_tower(name).state_dict().items()}


def _blocks_and_width(shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, int], int | None]:
    """Blocks per ``layerN`` present in a ModifiedResNet state dict, and its width (the stem's conv3 channels).

    Blocks are counted as open_clip counts them when it rebuilds a model from OpenAI's state dict.
    """
    blocks = {}
    for layer in _RESNET_LAYERS:
        indices = {k.split(".")[1] for k in shapes if k.startswith(f"{layer}.")}
        if indices:
            blocks[layer] = len(indices)
    width = shapes["conv3.weight"][0] if "conv3.weight" in shapes else None
    return blocks, width


def _check_architecture(visual: dict[str, torch.Tensor], reference: dict[str, tuple[int, ...]], source: str) -> None:
    """Refuse a ResNet visual tower whose block counts or width are not ``reference``'s, naming what it is."""
    found_blocks, found_width = _blocks_and_width({k: tuple(v.shape) for k, v in visual.items()})
    blocks, width = _blocks_and_width(reference)
    differs = [layer for layer, n in found_blocks.items() if n != blocks[layer]]
    if differs:
        what = f"{differs[0]} has {found_blocks[differs[0]]} blocks, {ARCHITECTURE} has {blocks[differs[0]]}"
    elif found_width is not None and found_width != width:
        what = f"the stem is {found_width} channels wide (visual.conv3.weight), {ARCHITECTURE}'s is {width}"
    else:
        return
    name = _name_resnet(found_blocks, found_width)
    looks = f"this looks like {name}" if name else "this is another CLIP architecture"
    raise InputError(f"{source}: {what}: {looks}; pass an {ARCHITECTURE} checkpoint (OpenAI's RN50.pt or open_clip's)")


def _name_resnet(blocks: dict[str, int], width: int | None) -> str | None:
    """The open_clip ResNet CLIP whose model config has these blocks per layer and this width, if any."""
    import open_clip

    names = []
    for name in open_clip.list_models():
        vision = open_clip.get_model_config(name).get("vision_cfg", {})
        layers = vision.get("layers")
        if not isinstance(layers, (list, tuple)) or len(layers) != len(_RESNET_LAYERS):
            continue
        config_blocks = dict(zip(_RESNET_LAYERS, layers))
        if all(config_blocks[k] == n for k, n in blocks.items()) and width in (None, vision.get("width")):
            names.append(name)
    return min(names, key=lambda n: (len(n), n)) if names else None  # "RN101" rather than "RN101-quickgelu"


def read_visual_state_dict(path: str | os.PathLike[str], sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read the ``visual.*`` tensors of a CLIP checkpoint, keys returned without the ``visual.`` prefix.

    Accepts OpenAI's TorchScript archives, torch state-dict files (loaded with ``weights_only=True``, so
    no pickled code runs; a top-level ``state_dict`` entry and a ``module.`` prefix are unwrapped) and
    ``.safetensors`` files. A file named like OpenAI's published ``RN50.pt`` is compared with its published
    sha256 (from open_clip's table): a warning when it loads but differs, part of the error when it is
    unreadable. ``sha256`` is the file's hash when the caller has it already (it is computed otherwise).
    """
    path = Path(path)
    state = _read_state_dict(path, sha256)
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise InputError(
            f"{path}: no 'visual.*' tensors in this file; pass OpenAI's RN50.pt or an open_clip RN50 checkpoint"
        )
    return visual


def _read_state_dict(path: Path, sha256: str | None) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise _corrupt(path, f"unreadable safetensors file ({_first_line(err)})", sha256) from None
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
        if head == _ZIP_MAGIC or not head:
            raise _corrupt(path, "a zip archive cut short" if head else "an empty file", sha256)
        if path.name == _published_openai_file()[0]:
            raise _corrupt(path, "not a PyTorch/TorchScript checkpoint (not a zip archive)", sha256)
        raise InputError(
            f"{path}: not a PyTorch/TorchScript checkpoint (not a zip archive); pass RN50.pt or an open_clip checkpoint"
        )
    _warn_if_not_published(path, sha256)
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise _corrupt(path, f"unreadable TorchScript archive ({_first_line(err)})", sha256) from None
        return {k: v.float() for k, v in module.state_dict().items()}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # what torch raises when weights_only meets anything but tensors
        raise _refused_pickle(path, err) from None
    except Exception as err:  # torch raises many types for corrupt archives
        raise _corrupt(path, f"unreadable checkpoint ({_first_line(err)})", sha256) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state dict; pass an open_clip checkpoint")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _refused_pickle(path: Path, err: pickle.UnpicklingError) -> InputError:
    """The one-line refusal of a pickle holding more than tensors, without torch's advice to unpickle it anyway."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    what = f"Python objects ({found.group(1)})" if found else "Python objects"
    return InputError(
        f"{path}: refused: besides tensors the file holds pickled {what}, and ldct_clip reads only tensors "
        "from pickle files so that no code in them can run; pass a .safetensors file, OpenAI's RN50.pt or an "
        "open_clip state dict of plain tensors"
    )


def _corrupt(path: Path, problem: str, sha256: str | None) -> InputError:
    """A damaged weights file; where it is named like OpenAI's RN50.pt, compare it with the published sha256."""
    name, published, url = _published_openai_file()
    if path.name != name:
        return InputError(f"{path}: {problem}: the file looks truncated or corrupt; download it again")
    digest = sha256 or _sha256(path)
    if digest == published:
        return InputError(
            f"{path}: {problem}, although its sha256 is that of OpenAI's published {name}; this torch "
            f"({torch.__version__}) cannot read it: upgrade torch"
        )
    return InputError(
        f"{path}: {problem}: the file looks truncated or corrupt ({path.stat().st_size} bytes, sha256 "
        f"{digest[:12]}..., OpenAI's published {name} has sha256 {published[:12]}...); download it again from {url}"
    )


def _warn_if_not_published(path: Path, sha256: str | None) -> None:
    """Warn when a readable file carries the name of OpenAI's RN50.pt but not its published sha256."""
    name, published, url = _published_openai_file()
    if path.name == name and (sha256 or _sha256(path)) != published:
        logger.warning(
            "%s: sha256 is not that of OpenAI's published %s (%s...); loading it as given. If it is meant to be "
            "OpenAI's file, download it again from %s", path, name, published[:12], url,
        )


@cache
def _published_openai_file() -> tuple[str, str, str]:
    """``(file name, sha256, url)`` of OpenAI's published RN50 weights, from open_clip's pretrained table.

    OpenAI's URLs carry the file's sha256 as their last folder, which open_clip checks on download.
    """
    import open_clip

    url = open_clip.get_pretrained_cfg(ARCHITECTURE, OPENAI_TAG)["url"]
    folder, name = url.rsplit("/", 2)[-2:]
    return name, folder, url


def _sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (hand-written: hashlib.file_digest needs Python 3.11)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as err:
        raise InputError(f"{path}: cannot read the encoder weights file ({err.strerror}); check its permissions") \
            from None
    return digest.hexdigest()


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives carry a ``code/`` folder; plain ``torch.save`` files do not."""
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in name or name.startswith("code/") for name in zf.namelist())


def _openai_hub_files() -> tuple[str, list[str]]:
    """The hub repository of open_clip's RN50 ``openai`` weights and its file names, in open_clip's order.

    This is :func:`open_clip.pretrained.download_pretrained`'s resolution: the ``hf_hub`` entry is
    ``org/model/`` (then open_clip's default ``HF_WEIGHTS_NAME``) or ``org/model/file``, and a safetensors
    alternative is tried before that file.
    """
    import open_clip
    from open_clip.constants import HF_WEIGHTS_NAME
    from open_clip.pretrained import _get_safe_alternatives

    repo_id, filename = os.path.split(open_clip.get_pretrained_cfg(ARCHITECTURE, OPENAI_TAG)["hf_hub"])
    filename = filename or HF_WEIGHTS_NAME
    return repo_id, [*_get_safe_alternatives(filename), filename]


def _download_openai() -> Path:
    """Find the OpenAI RN50 weights in the Hugging Face cache or fetch them; one clear error when offline.

    open_clip serves the ``openai`` tag from the Hugging Face hub. The cache (``HF_HUB_CACHE``) is read first,
    under the names open_clip downloads, so a machine that fetched the weights once works offline with no
    network attempt; with ``HF_HUB_OFFLINE`` set nothing else is tried, and otherwise a quick reachability
    probe avoids the hub client's long retry loop on machines without network.
    """
    import open_clip
    from huggingface_hub import constants, try_to_load_from_cache
    from open_clip.pretrained import download_pretrained

    repo_id, names = _openai_hub_files()
    for name in names:
        cached = try_to_load_from_cache(repo_id, name)
        if isinstance(cached, str):
            return Path(cached)
    if constants.is_offline_mode() or not _reachable(HF_HOST):
        reason = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else f"{HF_HOST} cannot be reached"
        raise InputError(
            f"encoder_weights='{OPENAI_TAG}': the CLIP RN50 weights are not cached in {constants.HF_HUB_CACHE} "
            f"({repo_id}: {' or '.join(names)}) and {reason}; {_LOCAL_FILE_HINT}"
        )
    try:
        return Path(download_pretrained(open_clip.get_pretrained_cfg(ARCHITECTURE, OPENAI_TAG)))
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
    """The first line of an error message, without terminal colour codes, for quoting in a one-line error."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
