"""Experiment configuration: typed dataclasses, YAML loading and ``--set key=value`` overrides.

A YAML file maps onto :class:`ExperimentConfig`. Every key is checked: an unknown key is an error that
names it and the nearest valid key, and every value is checked against its field's type, so a typo never
silently falls back to a default.

The top-level ``method`` (default ``clipdenoising``) picks the denoising method from
:mod:`ldct_clip.methods`; the ``model`` section holds that method's own settings dataclass (for
clipdenoising :class:`~ldct_clip.models.denoiser.DenoiserConfig`), so the settings a checkpoint records
and the settings a config accepts are one and the same class.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ldct_clip.errors import InputError
from ldct_clip.metrics import CT_PRESETS, PRESETS

DATA_KINDS = ("mayo", "image_folder", "paired_folder")


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
    neighbor_slices: int = 2
    mask_threshold_hu: float = 30.0
    train_on_test_low_dose: bool = False
    patches_per_slice: int = 10


OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("cosine", "ramped", "step", "warmup")


@dataclass
class OptimConfig:
    """Optimizer (``adamw`` or ``adam``, torch's), gradient-norm clipping and an optional weight EMA.

    Defaults are CLIPDenoising's released recipe (AdamW, lr 3e-4, weight decay 1e-4, clip 0.01).
    ``grad_clip: null`` clips nothing; ``ema_decay`` keeps an exponential moving average of the weights
    (torch's ``AveragedModel``), which validation, ``best`` and ``last`` then use (ScoreSDE: 0.9999).
    """

    name: Literal["adamw", "adam"] = "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 0.01
    ema_decay: float | None = None


@dataclass
class ScheduleConfig:
    """Learning rate over ``iterations`` steps, one of :data:`SCHEDULES`:

    - ``cosine``: flat for ``flat_iterations`` then cosine down to ``eta_min`` (CLIPDenoising);
    - ``ramped``: cosine ramp-up over the first ``rampup_fraction`` of the steps and squared-cosine
      ramp-down over the last ``rampdown_fraction`` (Noise2Sim's RampedLR, here per step, not per epoch);
    - ``step``: multiplied by ``gamma`` at each of ``milestones`` (RED-CNN: once, at 3000);
    - ``warmup``: linear warm-up over ``warmup_iterations`` then constant (ScoreSDE).
    """

    kind: Literal["cosine", "ramped", "step", "warmup"] = "cosine"
    iterations: int = 40_000
    flat_iterations: int = 0
    eta_min: float = 1e-6
    rampup_fraction: float = 0.1
    rampdown_fraction: float = 0.3
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    warmup_iterations: int = 0


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
    method: str = "clipdenoising"
    model: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from ldct_clip.methods import get_method

        method = get_method(self.method)
        if self.model is None:
            self.model = method.settings_type()
        elif not isinstance(self.model, method.settings_type):
            raise InputError(f"invalid config: model settings of type {type(self.model).__name__} do not belong to "
                             f"method {self.method!r} ({method.settings_type.__name__})")
        if self.train.metric_preset is None:  # the paper's recipe for the model's kind of image
            self.train.metric_preset = "natural" if self.in_channels == 3 else method.paper_preset
        multiple = max(method.multiple(self.model), 32 if self.method == "clipdenoising" else 1)
        o, s = self.optim, self.schedule
        finite = all(math.isfinite(v) for v in (o.lr, o.weight_decay, s.eta_min, s.gamma, *o.betas))
        checks = [
            (self.data.patch_size >= multiple and self.data.patch_size % multiple == 0,
             f"data.patch_size must be a multiple of {multiple} (>= {multiple}) for method {self.method}"),
            (self.data.noise_sigma >= 0, "data.noise_sigma must be >= 0"),
            (self.data.workers >= 0, "data.workers must be >= 0"),
            (self.data.val_max_slices is None or self.data.val_max_slices >= 1,
             "data.val_max_slices must be >= 1 (or null for all)"),
            (self.train.metric_preset in PRESETS,
             f"train.metric_preset must be one of {', '.join(PRESETS)}, got {self.train.metric_preset!r}"),
            ((self.train.metric_preset == "natural") == (self.in_channels == 3),
             "train.metric_preset must be 'natural' for RGB models (in_channels 3) and a CT preset "
             f"({', '.join(CT_PRESETS)}) for CT models (in_channels 1)"),
            (not self.data.validation_patients or self.data.kind == "mayo",
             "data.validation_patients applies to data.kind mayo only; use data.val_root for image folders"),
            (finite, "optim.lr, optim.weight_decay, optim.betas, schedule.eta_min and schedule.gamma must be finite"),
            (o.lr > 0, f"optim.lr must be > 0, got {o.lr}"),
            (o.grad_clip is None or (math.isfinite(o.grad_clip) and o.grad_clip > 0),
             f"optim.grad_clip must be > 0 (or null for no clipping), got {o.grad_clip}"),
            (o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}"),
            (all(0 <= b < 1 for b in o.betas), f"optim.betas must both be in [0, 1), got {list(o.betas)}"),
            (o.ema_decay is None or 0 < o.ema_decay < 1,
             f"optim.ema_decay must be in (0, 1) or null, got {o.ema_decay}"),
            (s.iterations > 0, "schedule.iterations must be > 0"),
            (0 <= s.flat_iterations < s.iterations, "schedule.flat_iterations must be in [0, schedule.iterations)"),
            (0 <= s.eta_min < o.lr, f"schedule.eta_min must be in [0, optim.lr), got {s.eta_min}"),
            (0 <= s.rampup_fraction and 0 <= s.rampdown_fraction and s.rampup_fraction + s.rampdown_fraction <= 1,
             "schedule.rampup_fraction and schedule.rampdown_fraction must be >= 0 and add up to at most 1"),
            (all(0 < m < s.iterations for m in s.milestones) and list(s.milestones) == sorted(set(s.milestones)),
             "schedule.milestones must be increasing steps inside (0, schedule.iterations)"),
            (0 < s.gamma <= 1, f"schedule.gamma must be in (0, 1], got {s.gamma}"),
            (0 <= s.warmup_iterations < s.iterations, "schedule.warmup_iterations must be in [0, schedule.iterations)"),
            (self.data.neighbor_slices >= 1, "data.neighbor_slices must be >= 1"),
            (math.isfinite(self.data.mask_threshold_hu) and self.data.mask_threshold_hu > 0,
             "data.mask_threshold_hu must be > 0"),
            (self.data.patches_per_slice >= 1, "data.patches_per_slice must be >= 1"),
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

    @property
    def in_channels(self) -> int:
        """Image channels of the method's network (1 for CT, 3 for RGB)."""
        return int(getattr(self.model, "in_channels", 1))

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
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (not UTF-8); pass a YAML config such as configs/*.yaml") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(f"{path}: not valid YAML{line} ({_yaml_problem(err)}); fix the file") from None
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
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise InputError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)}); "
                             "quote it or fix the brackets") from None
        _set_path(raw, key.strip(), value)
    return _build(ExperimentConfig, raw, prefix="")


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's one-line reason (e.g. an unknown ``!!python/...`` tag, which safe_load never executes)."""
    problem = getattr(err, "problem", None) or type(err).__name__
    return " ".join(str(problem).split())[:120]


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
    if cls is ExperimentConfig:  # the model section's type is the chosen method's settings
        from ldct_clip.methods import get_method

        method = raw.get("method", ExperimentConfig.method)
        if not isinstance(method, str):
            raise InputError(f"config key 'method' must be a method name, got {method!r}")
        hints = {**hints, "model": get_method(method).settings_type}
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
    try:
        return cls(**values)
    except ValueError as err:  # a settings dataclass's own check (InputError is a ValueError too)
        if isinstance(err, InputError):
            raise
        raise InputError(f"invalid config: {where}: {err}") from None


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
