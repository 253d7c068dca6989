"""Self-contained model checkpoints: one safetensors file with every tensor and the settings in its metadata.

The file holds every tensor of the network (for CLIPDenoising also the whole encoder trunk, including the
BatchNorm running statistics that adapted during training), and its metadata name the method
(:mod:`ldct_clip.methods`) and the settings it was built from, so :func:`load_checkpoint` rebuilds any
method's network without CLIP weights or network access. Safetensors never unpickles, so opening an
untrusted file cannot run code.

Metadata keys: ``format``, ``format_version``, ``method``, ``config`` (the settings as JSON),
``ldct_clip_version``, for CLIPDenoising ``encoder_weight_source`` and ``encoder_weights_sha256``, plus what
the caller adds (training writes ``step``, ``run``, ``training_noise_sigma``). Version 1 files (written
before methods other than CLIPDenoising existed) carry no ``method`` and load as ``clipdenoising``.

Tensors whose names start with :data:`TRAINING_PREFIX` are not part of the model (the training loop keeps
its optimizer state there, so weights and state are one atomic file) and are ignored by :func:`load_checkpoint`.

The registry is imported inside the functions: :mod:`ldct_clip.methods` builds on :mod:`ldct_clip.models`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ldct_clip.atomic import partial_path
from ldct_clip.errors import InputError

FORMAT = "ldct_clip.model"
LEGACY_FORMATS = ("ldct_clip.CLIPDenoiser",)
"""Format tags of version 1 files, still read."""
FORMAT_VERSION = 2
DEFAULT_METHOD = "clipdenoising"
"""The method of files that name none (version 1)."""
TRAINING_NOISE_KEY = "training_noise_sigma"
"""Metadata key of the Gaussian training noise (config ``data.noise_sigma``, 1/255 of the model scale)."""
TRAINING_PREFIX = "training/"
"""Tensor-name prefix of training state stored beside the weights; never loaded into a model."""


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str], extra: dict[str, str] | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (a hidden temporary file beside it, then one rename).

    Args:
        model: any method's network (it carries ``method`` and ``settings``).
        path: target file, conventionally ``*.safetensors``.
        extra: additional string metadata (for example the training step).
        extra_tensors: tensors stored beside the weights under :data:`TRAINING_PREFIX` (not part of the model).

    The file gets the usual permissions of a new file (0644 under the common umask 022).

    >>> import tempfile, os
    >>> from ldct_clip import CLIPDenoiser
    >>> model = CLIPDenoiser(encoder_weights="random")
    >>> path = save_checkpoint(model, os.path.join(tempfile.mkdtemp(), "model.safetensors"))
    >>> load_checkpoint(path).config == model.config
    True
    """
    from ldct_clip import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for name, tensor in (extra_tensors or {}).items():
        tensors[TRAINING_PREFIX + name] = tensor.detach().to("cpu").contiguous()
    settings = model.settings
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "method": model.method,
        "config": json.dumps(settings.to_dict() if hasattr(settings, "to_dict") else dataclasses.asdict(settings)),
        "ldct_clip_version": __version__,
        **_encoder_metadata(model),
        **(extra or {}),
    }
    temp = partial_path(path)
    try:
        save_file(tensors, str(temp), metadata=metadata)
        os.chmod(temp, 0o666 & ~_umask())  # safetensors creates files readable by their owner only
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _encoder_metadata(model: nn.Module) -> dict[str, str]:
    """Where a CLIP encoder's weights came from (path and sha256), for models that have one."""
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "weight_source"):
        return {}
    sha = getattr(encoder, "weight_sha256", None)
    return {"encoder_weight_source": str(encoder.weight_source), **({"encoder_weights_sha256": sha} if sha else {})}


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """A checkpoint's metadata after checking that it is an ldct_clip checkpoint this version reads.

    ``method`` is filled in (``clipdenoising``) for version 1 files.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found; pass the .safetensors file written by training")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(
            f"{path}: not a readable safetensors checkpoint ({str(err).splitlines()[0][:120]}); "
            "the file is corrupt or of another format: pass a checkpoint written by ldct_clip"
        ) from None
    if metadata.get("format") not in (FORMAT, *LEGACY_FORMATS):
        raise InputError(f"{path}: a safetensors file but not an ldct_clip checkpoint (no '{FORMAT}' format tag)")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise InputError(
            f"{path}: checkpoint format version {version!r} is newer than this ldct_clip reads "
            f"({FORMAT_VERSION}); upgrade ldct_clip"
        )
    metadata.setdefault("method", DEFAULT_METHOD)
    return metadata


def checkpoint_settings(path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> tuple[str, object]:
    """``(method, settings)`` recorded in a checkpoint, checked without reading its tensors."""
    from ldct_clip.methods import get_method, settings_from_dict

    path = Path(path)
    metadata = read_checkpoint_metadata(path) if metadata is None else metadata
    method = metadata["method"]
    try:
        get_method(method)
        values = json.loads(metadata["config"])
        if not isinstance(values, dict):
            raise ValueError("the config is not a mapping")
        settings = settings_from_dict(method, values)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: checkpoint has an invalid model config ({err}); re-save it") from None
    return method, settings


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved by :func:`save_checkpoint` (any method), in eval mode.

    Raises InputError for a file of another format or architecture, and for weights that are NaN or
    infinite (a diverged training run).
    """
    from ldct_clip.methods import get_method

    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    method, settings = checkpoint_settings(path, metadata)
    model = get_method(method).skeleton(settings)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        state = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(TRAINING_PREFIX)}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise InputError(
            f"{path}: checkpoint of another architecture ({len(missing)} tensors missing, {len(unexpected)} "
            f"unexpected, {len(wrong)} with other shapes, e.g. {example}); it cannot be loaded as {method}"
        )
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise InputError(f"{path}: {len(broken)} tensor(s) hold NaN or infinite values (e.g. {broken[0]}); the "
                         "training diverged: use an earlier checkpoint or train again with a lower optim.lr")
    model.load_state_dict(state, strict=True)
    if "encoder_weight_source" in metadata and hasattr(model, "encoder"):
        model.encoder.weight_source = metadata["encoder_weight_source"]
        model.encoder.weight_sha256 = metadata.get("encoder_weights_sha256")
    return model.to(map_location).eval()

