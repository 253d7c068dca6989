"""The one interface every denoising method implements, and the registry that holds them.

A :class:`Method` says, for one way of denoising CT:

- which network it builds from which settings (:attr:`Method.settings_type`, stored in checkpoints);
- on which intensity scale that network works (:meth:`Method.scale`: HU <-> the network's input);
- how a training batch is built (:attr:`Method.training_data`) and what the loss of a batch is
  (:attr:`Method.loss`);
- how it denoises (:meth:`Method.denoise`: one forward pass, or a sampler).

The training loop, checkpoints, inference and evaluation call this interface and never ask which method
they hold (timm's ``create_model`` lesson). A built network carries ``method`` (its registry name) and
``settings`` (the frozen settings dataclass it was built from), which is all a checkpoint needs to rebuild it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ldct_clip.data.hu import MODEL_SCALE, IntensityScale
from ldct_clip.errors import InputError

if TYPE_CHECKING:
    from ldct_clip.config import ExperimentConfig
    from ldct_clip.training_data import TrainingData

__all__ = ["Method", "create_model", "get_method", "list_methods", "register", "settings_from_dict"]

#: ``loss(network, model, batch, generator) -> scalar``: ``network`` is the module to call (``model`` or its
#: DistributedDataParallel wrapper), ``model`` the bare model (for its settings), ``generator`` a torch
#: generator seeded by the step for any randomness the loss draws (e.g. a score model's noise levels).
LossFn = Callable[[nn.Module, nn.Module, Mapping[str, torch.Tensor], torch.Generator], torch.Tensor]
#: ``training_data(config, run_dir) -> TrainingData``.
TrainingDataFn = Callable[["ExperimentConfig", Path], "TrainingData"]


def _one_pass(model: nn.Module, x: torch.Tensor, steps: int | None, progress: bool) -> torch.Tensor:
    return model(x)


def _prepare_copy(model: nn.Module, device: torch.device) -> nn.Module:
    import copy

    return copy.deepcopy(model).eval().requires_grad_(False).to(device)


@dataclass(frozen=True)
class Method:
    """One denoising method: its network, scale, training batches, loss and inference procedure.

    Attributes:
        name: registry key (``clipdenoising``, ``noise2sim``, ``redcnn``, ``scoresde_ct``).
        title: the name shown in reports ("Noise2Sim").
        settings_type: frozen dataclass of the network's settings (the config's ``model`` section).
        build: settings -> the network, with ``method`` and ``settings`` attributes.
        training_data: what a training batch is made of (see :mod:`ldct_clip.training_data`).
        loss: the loss of one batch (see :data:`LossFn`).
        paper_preset: the metric preset of the method's own paper.
        size_multiple: spatial sizes the network needs; inference pads by reflection and crops back.
        samples: True when :meth:`denoise` runs a sampler whose number of steps can be chosen.
        supervision: one line on what the method learns from (shown in reports and the model card).
        scale_of: settings -> the :class:`IntensityScale` of the network's input (default: the model scale).
        denoise_fn: ``(model, x, steps, progress) -> y`` on the network's scale (default: one forward pass).
        to_hu_fn: ``(scale, y, hu_in) -> hu`` (default: ``scale.to_hu(y)``).
        prepare_fn: ``(model, device) -> an eval-mode copy ready for inference`` (default: a plain copy).
        trains_on_added_noise: the training noise is synthetic (``data.noise_sigma``), recorded in checkpoints
            as ``training_noise_sigma`` so reports can compare it with a series' own noise.
        skeleton_fn: settings -> the network without loading anything external (a checkpoint fills its
            tensors; default: :attr:`build`).
    """

    name: str
    title: str
    settings_type: type
    build: Callable[[Any], nn.Module]
    training_data: TrainingDataFn
    loss: LossFn
    paper_preset: str
    size_multiple: int = 1
    samples: bool = False
    trains_on_added_noise: bool = False
    supervision: str = ""
    scale_of: Callable[[Any], IntensityScale] = lambda settings: MODEL_SCALE
    denoise_fn: Callable[[nn.Module, torch.Tensor, int | None, bool], torch.Tensor] = _one_pass
    to_hu_fn: Callable[[IntensityScale, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    prepare_fn: Callable[[nn.Module, torch.device], nn.Module] = _prepare_copy
    skeleton_fn: Callable[[Any], nn.Module] | None = None

    def scale(self, settings: Any) -> IntensityScale:
        """The HU <-> network-input map for networks built from ``settings``."""
        return self.scale_of(settings)

    def multiple(self, settings: Any) -> int:
        """Spatial sizes networks of ``settings`` need: their own ``size_multiple`` when they say, else the method's."""
        return int(getattr(settings, "size_multiple", self.size_multiple))

    def denoise(self, model: nn.Module, x: torch.Tensor, steps: int | None = None,
                progress: bool = False) -> torch.Tensor:
        """Denoise ``x`` (N×C×H×W on the network's scale, sizes a multiple of :attr:`size_multiple`)."""
        return self.denoise_fn(model, x, steps, progress)

    def to_hu(self, settings: Any, y: torch.Tensor, hu_in: torch.Tensor) -> torch.Tensor:
        """The network's output back in HU; ``hu_in`` is the input slice in HU (for windowed methods)."""
        scale = self.scale(settings)
        return scale.to_hu(y) if self.to_hu_fn is None else self.to_hu_fn(scale, y, hu_in)

    def skeleton(self, settings: Any) -> nn.Module:
        """The network of ``settings`` for a checkpoint to fill: nothing external (e.g. CLIP weights) is read."""
        return (self.skeleton_fn or self.build)(settings)

    def prepare(self, model: nn.Module, device: torch.device) -> nn.Module:
        """An eval-mode, gradient-free copy of ``model`` on ``device`` for inference (the caller's stays)."""
        return self.prepare_fn(model, device)


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (one name, one method)."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    _REGISTRY[method.name] = method
    return method


def list_methods() -> tuple[str, ...]:
    """Registered method names, in registration order.

    >>> list_methods()[:1]
    ('clipdenoising',)
    """
    import ldct_clip.methods  # noqa: F401  (registers the built-in methods)

    return tuple(_REGISTRY)


def get_method(name: str) -> Method:
    """The method called ``name``; InputError naming the registered ones otherwise.

    >>> get_method("clipdenoising").paper_preset
    'clipdenoising'
    """
    names = list_methods()
    if name not in _REGISTRY:
        raise InputError(f"method {name!r}: unknown; use one of {', '.join(names)}")
    return _REGISTRY[name]


def settings_from_dict(name: str, values: Mapping[str, Any]) -> Any:
    """The settings dataclass of method ``name`` from plain values (a checkpoint's or a config's).

    Unknown keys are an InputError naming them; missing keys take their defaults.
    """
    settings_type = get_method(name).settings_type
    known = {f.name for f in dataclasses.fields(settings_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"method {name}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    try:
        return settings_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except (TypeError, ValueError) as err:
        raise InputError(f"method {name}: invalid settings ({err})") from None


def create_model(name: str, **settings: Any) -> nn.Module:
    """Build the network of method ``name`` from keyword settings (defaults for the rest).

    >>> model = create_model("clipdenoising", encoder_weights="random")
    >>> model.method, type(model.settings).__name__
    ('clipdenoising', 'DenoiserConfig')
    """
    method = get_method(name)
    return method.build(settings_from_dict(name, settings))
