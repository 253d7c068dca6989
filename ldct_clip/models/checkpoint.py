"""Self-contained model checkpoints: one safetensors file with every tensor and the config in its metadata.

The file holds the adapter, the decoder and the whole encoder trunk, including the BatchNorm running
statistics that adapted during training, so :func:`load_checkpoint` needs no CLIP weights and no network.
Safetensors never unpickles, so opening an untrusted file cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ldct_clip.errors import InputError
from ldct_clip.models.denoiser import CLIPDenoiser, DenoiserConfig
from ldct_clip.models.encoder import FROM_CHECKPOINT

FORMAT = "ldct_clip.CLIPDenoiser"
FORMAT_VERSION = 1


def save_checkpoint(model: CLIPDenoiser, path: str | os.PathLike[str], extra: dict[str, str] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        model: the denoiser to save.
        path: target file, conventionally ``*.safetensors``.
        extra: additional string metadata (for example the training step).

    >>> import tempfile, os
    >>> model = CLIPDenoiser(encoder_weights="random")
    >>> path = save_checkpoint(model, os.path.join(tempfile.mkdtemp(), "model.safetensors"))
    >>> load_checkpoint(path).config == model.config
    True
    """
    from ldct_clip import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "encoder_weight_source": model.encoder_weight_source,
        "ldct_clip_version": __version__,
        **(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return a checkpoint's metadata after checking that it is an ldct_clip checkpoint this version reads."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found; pass the .safetensors file written by training")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(
            f"{path}: not a readable safetensors checkpoint ({str(err).splitlines()[0][:120]}); "
            "the file is corrupt or of another format: pass a checkpoint written by ldct_clip"
        ) from None
    if metadata.get("format") != FORMAT:
        raise InputError(f"{path}: a safetensors file but not an ldct_clip checkpoint (no '{FORMAT}' format tag)")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise InputError(
            f"{path}: checkpoint format version {version!r} is newer than this ldct_clip reads "
            f"({FORMAT_VERSION}); upgrade ldct_clip"
        )
    return metadata


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> CLIPDenoiser:
    """Build a ready :class:`CLIPDenoiser` (in eval mode) from a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    try:
        config = DenoiserConfig(**json.loads(metadata["config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: checkpoint has an invalid model config ({err}); re-save it") from None
    model = CLIPDenoiser(
        in_channels=config.in_channels, encoder_weights=FROM_CHECKPOINT, bn=config.bn, pfa_gamma=config.pfa_gamma
    )
    with safe_open(str(path), framework="pt", device="cpu") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise InputError(
            f"{path}: checkpoint of another architecture ({len(missing)} tensors missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} with other shapes, e.g. {example}); it cannot be loaded as a CLIPDenoiser"
        )
    model.load_state_dict(state, strict=True)
    model.encoder.weight_source = metadata.get("encoder_weight_source", "unknown")
    return model.to(map_location).eval()
