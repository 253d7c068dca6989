"""Experiment configuration: typed dataclasses, YAML loading and ``--set key=value`` overrides.

A YAML file maps onto :class:`ExperimentConfig`. Every key is checked: an unknown key is an error that
names it and the nearest valid key, and every value is checked against its field's type, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ldct_clip.errors import InputError
from ldct_clip.metrics import PRESETS

DATA_KINDS = ("mayo", "image_folder", "paired_folder")


@dataclass
class ModelConfig:
    """Arguments of :class:`~ldct_clip.models.denoiser.CLIPDenoiser`."""

    in_channels: int = 1
    encoder_weights: str = "openai"
    bn: Literal["adapt", "frozen"] = "adapt"
    pfa_gamma: float = 0.025


@dataclass
class DataConfig:
    """Where training and validation images come from and how patches are made.

    ``kind`` is ``mayo`` (AAPM-Mayo layout tree or manifest, split by patient), ``image_folder`` (clean
    images, noise added online) or ``paired_folder`` (``clean/`` and ``noisy/`` folders matched by name).
    ``noise_sigma`` is in 1/255 units of the model scale, as in the paper (5 for LDCT, about 80 HU).

    Validation (``mayo``): on ``validation_patients``, training patients of the split held out for it;
    when empty, on the split's test patients, as the released code does. Then ``best.safetensors`` is
    chosen on the test set and its test numbers are optimistic: report ``last.safetensors`` or hold out
    validation patients. ``val_max_slices`` scores that many slices spread evenly along the patients.
    """

    kind: Literal["mayo", "image_folder", "paired_folder"] = "mayo"
    root: str | None = None
    val_root: str | None = None
    split: str = "clipdenoising"
    thickness_mm: float = 1.0
    patch_size: int = 128
    noise_sigma: float = 5.0
    cache: bool = False
    workers: int = 2
    val_max_slices: int | None = None
    validation_patients: tuple[str, ...] = ()


@dataclass
class OptimConfig:
    """AdamW, L1 loss and gradient clipping (released configs)."""

    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 0.01


@dataclass
class ScheduleConfig:
    """Learning rate: flat for ``flat_iterations`` then cosine down to ``eta_min`` at ``iterations``."""

    iterations: int = 40_000
    flat_iterations: int = 0
    eta_min: float = 1e-6


@dataclass
class TrainConfig:
    """Loop settings. ``batch_size`` is per process (per GPU under torchrun).

    ``max_minutes`` is a wall-clock budget: when it runs out the loop validates, saves and stops early
    (the learning-rate schedule still spans ``schedule.iterations``; ``--resume`` continues the run).
    """

    batch_size: int = 16
    mixup_prob: float = 0.5
    mixup_beta: float = 1.2
    seed: int = 100
    val_every: int = 2_000
    log_every: int = 50
    checkpoint_every: int = 2_000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False
    metric_preset: str | None = None
    max_minutes: float | None = None


@dataclass
class ExperimentConfig:
    """One training experiment; see ``configs/*.yaml``."""

    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.train.metric_preset is None:  # the paper's recipe for the model's kind of image
            self.train.metric_preset = "natural" if self.model.in_channels == 3 else "clipdenoising"
        checks = [
            (self.model.in_channels in (1, 3), "model.in_channels must be 1 (CT) or 3 (RGB)"),
            (self.model.pfa_gamma >= 0, "model.pfa_gamma must be >= 0"),
            (self.data.patch_size >= 32 and self.data.patch_size % 32 == 0,
             "data.patch_size must be a multiple of 32 (>= 32)"),
            (self.data.noise_sigma >= 0, "data.noise_sigma must be >= 0"),
            (self.data.workers >= 0, "data.workers must be >= 0"),
            (self.data.val_max_slices is None or self.data.val_max_slices >= 1,
             "data.val_max_slices must be >= 1 (or null for all)"),
            (self.train.metric_preset in PRESETS,
             f"train.metric_preset must be one of {', '.join(PRESETS)}, got {self.train.metric_preset!r}"),
            ((self.train.metric_preset == "natural") == (self.model.in_channels == 3),
             "train.metric_preset must be 'natural' for RGB models (in_channels 3) and a CT preset "
             "(clipdenoising, redcnn, noise2sim) for CT models (in_channels 1)"),
            (not self.data.validation_patients or self.data.kind == "mayo",
             "data.validation_patients applies to data.kind mayo only; use data.val_root for image folders"),
            (self.optim.lr > 0 and self.optim.grad_clip > 0, "optim.lr and optim.grad_clip must be > 0"),
            (self.schedule.iterations > 0, "schedule.iterations must be > 0"),
            (0 <= self.schedule.flat_iterations < self.schedule.iterations,
             "schedule.flat_iterations must be in [0, schedule.iterations)"),
            (self.train.batch_size > 0, "train.batch_size must be > 0"),
            (0 <= self.train.mixup_prob <= 1, "train.mixup_prob must be in [0, 1]"),
            (self.train.mixup_beta > 0, "train.mixup_beta must be > 0"),
            (self.train.max_minutes is None or self.train.max_minutes > 0, "train.max_minutes must be > 0"),
            (min(self.train.val_every, self.train.log_every, self.train.checkpoint_every) > 0,
             "train.val_every, train.log_every and train.checkpoint_every must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"invalid config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples become lists so the YAML/JSON written is plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config, apply ``key.sub=value`` overrides, and validate everything.

    >>> cfg = config_from_dict({"train": {"batch_size": 4}}, overrides=["model.pfa_gamma=0.05"])
    >>> cfg.train.batch_size, cfg.model.pfa_gamma
    (4, 0.05)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found; pass one of the YAML files in configs/")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(f"{path}: not valid YAML{line}; fix the file") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a config must be a YAML mapping of sections, got {type(raw).__name__}")
    try:
        return config_from_dict(raw, overrides)
    except InputError as err:
        source = f"{path} with --set overrides" if overrides else str(path)
        raise InputError(f"{source}: {err}") from None


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from nested dicts plus ``--set`` style overrides."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r} must look like section.key=value, e.g. model.pfa_gamma=0.05")
        _set_path(raw, key.strip(), yaml.safe_load(text) if text.strip() else None)
    return _build(ExperimentConfig, raw, prefix="")


def save_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (readable back by :func:`load_config`)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise InputError(f"override {dotted!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise InputError(f"{where} must be a mapping of keys, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys: {', '.join(fields)}"
            raise InputError(f"unknown config key '{prefix}{key}'{hint}")
        hint_type = hints[key]
        if dataclasses.is_dataclass(hint_type):
            values[key] = _build(hint_type, value, prefix=f"{prefix}{key}.")
        else:
            values[key] = _coerce(value, hint_type, f"{prefix}{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a type hint; ints are accepted for floats, lists for tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except InputError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise InputError(f"config key '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config key '{key}' must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise InputError(f"config key '{key}' must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-6" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise InputError(f"config key '{key}' must be {getattr(hint, '__name__', hint)}, got {value!r}")
