"""Export a trained model to ONNX or TorchScript for deployment stacks, check it, and run ONNX models.

What an export holds (:class:`DenoiseGraph`): for CT models (``in_channels=1``) the whole path of
:func:`ldct_clip.inference.denoise_hu`: input ``hu`` (N×1×H×W float32, Hounsfield units) -> the method's
intensity scale -> reflection padding to the method's size multiple -> the network -> crop back -> output
``denoised`` in HU. For RGB models (CLIPDenoising ``in_channels=3``) the input ``image`` and the output are
N×3×H×W float32 in [0, 1] (the network's own scale; CLIPDenoiser pads to 32 and crops inside). Batch,
height and width are dynamic (H, W >= 32). The graph holds no input checks: run it on finite values.

ONNX goes through torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, opset :data:`ONNX_OPSET`; the
older TorchScript-based ONNX exporter mis-exports Noise2Sim by hundreds of HU). TorchScript goes through
``torch.jit.trace``; PyTorch deprecates TorchScript (its FutureWarnings are silenced here), but MONAI Deploy
and Triton's PyTorch backend load it. Both files carry :func:`export_metadata` (ONNX ``metadata_props``,
TorchScript ``_extra_files``): the method, its settings, what the input and output are, the ldct_clip
version and the sha256 of the source checkpoint (TorchScript: as JSON in the extra file ``metadata.json``).

Before an export is written, :func:`export_model` runs the file it built and the torch model on a
real-sized input (:func:`verification_input`) and refuses to keep it when they differ by more than
:data:`EXPORT_TOLERANCE_HU` (CT) or :data:`EXPORT_TOLERANCE_RGB`. Methods that sample (ScoreSDE-CT: about
2·steps + 1 network evaluations per slice) are refused: a sampler loop is not one graph.

:class:`OnnxDenoiser` runs an exported CT model through onnxruntime like
:class:`~ldct_clip.inference.VolumeDenoiser` does a torch model. ONNX needs the optional extra
``pip install 'ldct_clip[onnx]'`` (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ldct_clip.atomic import partial_path
from ldct_clip.data.hu import window
from ldct_clip.device import DEVICES
from ldct_clip.errors import InputError
from ldct_clip.inference import BATCH_SIZES, _check_settings, _check_volume, denoise_hu
from ldct_clip.methods import get_method
from ldct_clip.models.checkpoint import load_checkpoint

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_TOLERANCE_HU",
    "EXPORT_TOLERANCE_RGB",
    "ONNX_OPSET",
    "DenoiseGraph",
    "ExportReport",
    "OnnxDenoiser",
    "export_checkpoint",
    "export_metadata",
    "export_model",
    "read_export_metadata",
    "verification_input",
]

EXPORT_FORMATS = ("onnx", "torchscript")
"""Formats :func:`export_model` writes."""
ONNX_OPSET = 20
"""ONNX opset of the exports: the dynamo exporter's own default in torch 2.14, run by onnxruntime >= 1.17."""
EXPORT_TOLERANCE_HU = 0.5
"""Largest |exported - torch| HU difference an export may have on the verification input. Half a stored
DICOM step (1 HU for the usual RescaleSlope 1), far below CT noise (10-30 HU); fp32 exports differ by about
1e-4 HU (summation order), so any larger difference means a wrongly exported operation."""
EXPORT_TOLERANCE_RGB = 0.5 / 255
"""The same for RGB models on their [0, 1] scale: half a step of an 8-bit image."""
VERIFY_SIZE = 512
"""Height and width of :func:`verification_input`: a full CT slice (the size the models are used at)."""
FORMAT_TAG = "ldct_clip.export"
"""Value of the ``format`` metadata key that marks an ldct_clip export."""
TORCHSCRIPT_METADATA = "metadata.json"
"""The TorchScript extra file holding the metadata as JSON (the name MONAI's ``save_net_with_metadata`` uses)."""
ONNX_EXTRA = "the onnx extra is not installed: pip install 'ldct_clip[onnx]'"
"""The one-line error when onnx or onnxruntime is missing."""
_VERIFY_SOURCE = "CT_small.dcm"
_EXAMPLE_SHAPE = (2, 67, 97)
"""Batch, height, width of the example input the exporters trace: batch 2 so that it is not taken for a
constant 1, prime sizes so that the padding branch is taken for every size multiple."""


def onnx_modules() -> tuple[ModuleType, ModuleType]:
    """``(onnx, onnxruntime)``; InputError naming the extra when either is missing."""
    try:
        return importlib.import_module("onnx"), importlib.import_module("onnxruntime")
    except ImportError:
        raise InputError(ONNX_EXTRA) from None


class DenoiseGraph(nn.Module):
    """The module an export holds: HU in, HU out through :func:`~ldct_clip.inference.denoise_hu` (CT), or
    the network on [0, 1] RGB.

    The network is the method's inference copy (:meth:`~ldct_clip.methods.Method.prepare`) with its
    ``check_input`` switched off: the finiteness test is data-dependent control flow, which a graph cannot
    hold (:class:`OnnxDenoiser` checks its input before running the graph).

    >>> from ldct_clip.methods import create_model
    >>> graph = DenoiseGraph(create_model("redcnn", channels=8))
    >>> graph(torch.full((1, 1, 40, 50), 40.0)).shape
    torch.Size([1, 1, 40, 50])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.method = get_method(model.method)
        if self.method.samples:
            raise InputError(
                f"{self.method.title} ({self.method.name}) denoises with a sampler (about 2 x steps + 1 network "
                "evaluations per slice), which is not one graph; export a one-pass method's checkpoint"
            )
        self.rgb = model.in_channels != 1
        if self.rgb and self.method.multiple(model.settings) != 1:
            raise InputError(f"{self.method.name} with in_channels={model.in_channels}: only CT models (in_channels=1) "
                             "of this method export; its padding is defined on HU slices")
        self.network = self.method.prepare(model, torch.device("cpu"))
        for module in self.network.modules():
            if hasattr(module, "check_input"):
                module.check_input = _no_check

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rgb:
            return self.method.denoise(self.network, x)
        return denoise_hu(self.method, self.network, x)


def _no_check(x: torch.Tensor) -> None:
    """Stands in for a network's ``check_input`` in an export (see :class:`DenoiseGraph`)."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how closely it matches the torch model on the verification input."""

    path: Path
    fmt: str
    max_diff: float
    rms_diff: float
    unit: str  # "HU" for CT, "[0,1]" for RGB
    tolerance: float
    input_shape: tuple[int, ...]

    def summary(self) -> str:
        """One line for the command's output."""
        shape = "x".join(map(str, self.input_shape))
        return (f"{self.path}: {self.fmt} export verified on a {shape} input against the torch model: max |diff| "
                f"{self.max_diff:.2e} {self.unit}, RMS {self.rms_diff:.2e} {self.unit} "
                f"(tolerance {self.tolerance:g} {self.unit} max)")


def export_metadata(model: nn.Module, source_sha256: str | None = None,
                    source_name: str | None = None) -> dict[str, str]:
    """The key-value strings stored in an export (ONNX ``metadata_props``, TorchScript ``_extra_files``).

    >>> from ldct_clip.methods import create_model
    >>> meta = export_metadata(create_model("redcnn", channels=8))
    >>> meta["method"], meta["input_scale"], json.loads(meta["settings"])
    ('redcnn', 'hu', {'channels': 8})
    """
    from ldct_clip import __version__

    settings = model.settings
    values = settings.to_dict() if hasattr(settings, "to_dict") else asdict(settings)
    channels = model.in_channels
    if channels == 1:
        scale, name, unit = "hu", "hu", "Hounsfield units"
    else:
        scale, name, unit = "unit", "image", "RGB in [0, 1]"
    return {
        "format": FORMAT_TAG,
        "method": model.method,
        "settings": json.dumps(values),
        "in_channels": str(channels),
        "input_scale": scale,
        "input": f"{name}: N x {channels} x H x W float32, {unit}; H, W >= 32",
        "output": f"denoised: N x {channels} x H x W float32, {unit}",
        "ldct_clip_version": __version__,
        "source_checkpoint": source_name or "an in-memory model",
        "source_sha256": source_sha256 or "",
    }


def verification_input(in_channels: int = 1, size: int = VERIFY_SIZE) -> torch.Tensor:
    """Two real-looking ``size``×``size`` slices: pydicom's CT_small.dcm in HU, resized, and its mirror image.

    For RGB models the three channels are the slice in the lung, abdomen and bone windows, in [0, 1].

    >>> verification_input(1, 64).shape
    torch.Size([2, 1, 64, 64])
    """
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(get_testdata_file(_VERIFY_SOURCE))
    hu = torch.from_numpy(apply_modality_lut(ds.pixel_array, ds).astype(np.float32))[None, None]
    hu = F.interpolate(hu, size=(size, size), mode="bilinear", align_corners=False)
    hu = torch.cat([hu, hu.flip(-1)])
    if in_channels == 1:
        return hu
    return torch.cat([window(hu, name) for name in ("lung", "abdomen", "bone")], dim=1)


def export_model(model: nn.Module, output: str | os.PathLike[str], fmt: str = "onnx",
                 source_sha256: str | None = None, source_name: str | None = None,
                 verify_input: torch.Tensor | None = None, overwrite: bool = False) -> ExportReport:
    """Export ``model`` to ``output`` as ONNX or TorchScript, verified against the torch model before it is kept.

    The export is built under a hidden temporary name beside ``output``, loaded back and run (onnxruntime
    on CPU, or ``torch.jit.load``) on ``verify_input`` (default: :func:`verification_input`); it is renamed
    to ``output`` only when its largest difference from the torch model is within :data:`EXPORT_TOLERANCE_HU`
    (RGB: :data:`EXPORT_TOLERANCE_RGB`), else deleted with an InputError saying by how much it differed.

    Args:
        model: a trained network of a one-pass method (not modified).
        output: file to write (conventionally ``.onnx`` or ``.pt``).
        fmt: ``"onnx"`` or ``"torchscript"``.
        source_sha256, source_name: the checkpoint the model came from, recorded in the metadata.
        verify_input: N×C×H×W input (HU for CT, [0, 1] for RGB) to compare the two on.
        overwrite: replace an existing ``output``.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    target = Path(output)
    if target.exists() and not overwrite:
        raise InputError(f"{target}: output already exists; choose another output or pass --overwrite")
    if fmt == "onnx":
        onnx_modules()
    graph = DenoiseGraph(model).eval()
    metadata = export_metadata(model, source_sha256, source_name)
    x = verification_input(model.in_channels) if verify_input is None else verify_input.float()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = partial_path(target)
    try:
        with torch.inference_mode():
            expected = graph(x).numpy()
        if fmt == "onnx":
            _write_onnx(graph, model.in_channels, metadata, temp)
            got = _run_onnx_file(temp, x.numpy())
        else:
            _write_torchscript(graph, model.in_channels, metadata, temp)
            with torch.inference_mode():
                got = _load_torchscript(temp)(x).numpy()
        diff = np.abs(got.astype(np.float64) - expected)
        unit, tolerance = ("[0,1]", EXPORT_TOLERANCE_RGB) if graph.rgb else ("HU", EXPORT_TOLERANCE_HU)
        report = ExportReport(target, fmt, float(diff.max()), float(np.sqrt(np.mean(diff**2))), unit, tolerance,
                              tuple(x.shape))
        if not report.max_diff <= tolerance:
            raise InputError(f"{target}: not written: the {fmt} export differs from the torch model by up to "
                             f"{report.max_diff:.3g} {unit} (tolerance {tolerance:g}); try the other --format")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return report


def export_checkpoint(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str], fmt: str = "onnx",
                      overwrite: bool = False) -> ExportReport:
    """Load ``checkpoint`` (any method, :func:`~ldct_clip.load_checkpoint`) and :func:`export_model` it."""
    path = Path(checkpoint)
    target = Path(output)
    if target.exists() and target.resolve() == path.resolve():
        raise InputError(f"{target}: is the checkpoint itself; choose another output")
    model = load_checkpoint(path)
    with path.open("rb") as f:
        sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    return export_model(model, target, fmt, source_sha256=sha256, source_name=path.name, overwrite=overwrite)


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The :func:`export_metadata` of an ONNX (``.onnx``) or TorchScript file; InputError for other files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass a model written by python -m ldct_clip.export")
    if path.suffix == ".onnx":
        onnx, _ = onnx_modules()
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # protobuf's DecodeError and friends: not an ONNX file
            raise InputError(f"{path}: not a readable ONNX model ({type(err).__name__}); pass a file written by "
                             "python -m ldct_clip.export") from None
        metadata = {p.key: p.value for p in proto.metadata_props}
    else:
        files = {TORCHSCRIPT_METADATA: ""}
        try:
            _load_torchscript(path, files)
        except RuntimeError as err:
            raise InputError(f"{path}: not a readable TorchScript model ({str(err).splitlines()[0][:100]}); "
                             "pass a file written by python -m ldct_clip.export") from None
        try:
            metadata = json.loads(files[TORCHSCRIPT_METADATA] or "{}")
        except ValueError:
            metadata = {}
    if metadata.get("format") != FORMAT_TAG:
        raise InputError(f"{path}: a model file but not an ldct_clip export (no '{FORMAT_TAG}' format tag); "
                         "export it with python -m ldct_clip.export")
    return metadata


def _example(in_channels: int) -> torch.Tensor:
    n, h, w = _EXAMPLE_SHAPE
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, in_channels, h, w, generator=generator)
    return x if in_channels != 1 else x * 1400.0 - 1000.0  # HU from air to bone


def _write_onnx(graph: DenoiseGraph, in_channels: int, metadata: dict[str, str], path: Path) -> None:
    dim = torch.export.Dim.DYNAMIC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals, not the user's
        program = torch.onnx.export(
            graph, (_example(in_channels),), dynamo=True, opset_version=ONNX_OPSET, verbose=False,
            input_names=["image" if graph.rgb else "hu"], output_names=["denoised"],
            dynamic_shapes=({0: dim, 2: dim, 3: dim},),
        )
    program.model.metadata_props.update(metadata)
    program.save(str(path))


def _write_torchscript(graph: DenoiseGraph, in_channels: int, metadata: dict[str, str], path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the baked padding branch, see _EXAMPLE_SHAPE
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation: see the module docstring
        traced = torch.jit.trace(graph, _example(in_channels), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA: json.dumps(metadata)})


def _load_torchscript(path: Path, extra_files: dict[str, str] | None = None) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation: see the module docstring
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files or {})


def _run_onnx_file(path: Path, x: np.ndarray) -> np.ndarray:
    _, ort = onnx_modules()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def check_onnx_model(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of an ONNX CT export, checked from the file alone (for :func:`~ldct_clip.denoise_series`)."""
    metadata = read_export_metadata(path)
    if metadata.get("input_scale") != "hu":
        raise InputError(f"{path}: ONNX model is for RGB images (in_channels={metadata.get('in_channels')}), not CT; "
                         "export a checkpoint trained on CT (in_channels=1)")
    get_method(metadata["method"])
    return metadata


class OnnxDenoiser:
    """An exported CT model run through onnxruntime, applied to any number of HU volumes.

    Behaves like :class:`~ldct_clip.inference.VolumeDenoiser`: same input checks, batches, progress bar and
    NaN check. Runs on the CUDA execution provider when onnxruntime has it (``onnxruntime-gpu``) and
    ``device`` is ``"auto"`` or ``"cuda"``, else on the CPU; fp32 only.

    Args:
        path: an ``.onnx`` file written by :func:`export_model` from a CT model.
        batch_size: slices per run; None: :data:`~ldct_clip.inference.BATCH_SIZES` for the device.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, path: str | os.PathLike[str], batch_size: int | None = None, device: str = "auto") -> None:
        _, ort = onnx_modules()
        self.path = Path(path)
        if device not in DEVICES:
            raise InputError(f"device must be one of {DEVICES}, got {device!r}")
        _check_settings(batch_size, "fp32")
        self.metadata = check_onnx_model(self.path)
        self.method = get_method(self.metadata["method"])
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "cuda" and not cuda:
            raise InputError("device 'cuda' requested but onnxruntime has no CUDA execution provider; "
                             "pip install onnxruntime-gpu, or use --device cpu or auto")
        providers: list[str | tuple[str, dict[str, int]]] = ["CPUExecutionProvider"]
        self.device = torch.device("cpu")
        if cuda and device != "cpu":
            # the GPU torch was set to (one per rank under torchrun, see ldct_clip.sharding), not always GPU 0
            index = torch.cuda.current_device() if torch.cuda.is_available() else 0
            self.device = torch.device("cuda", index)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        self.session = ort.InferenceSession(str(self.path), providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.batch_size = BATCH_SIZES.get(self.device.type, 1) if batch_size is None else batch_size

    def __call__(self, hu: np.ndarray, progress: bool = False, desc: str | None = None) -> np.ndarray:
        """Denoise a Z×Y×X HU volume; returns float32 HU of the same shape.

        Raises InputError when the model gives NaN or infinite values (a broken export), naming the slice.
        """
        _check_volume(hu)
        out = np.empty(hu.shape, dtype=np.float32)
        with tqdm(total=hu.shape[0], unit="slice", desc=desc, disable=not progress, dynamic_ncols=True) as bar:
            for start in range(0, hu.shape[0], self.batch_size):
                stop = min(start + self.batch_size, hu.shape[0])
                x = np.ascontiguousarray(hu[start:stop], dtype=np.float32)[:, None]
                y = self.session.run(None, {self.input_name: x})[0][:, 0]
                bad = ~np.isfinite(y).all(axis=(1, 2))
                if bad.any():
                    raise InputError(
                        f"{self.path}: the model's output is NaN or infinite for slice "
                        f"{start + int(np.flatnonzero(bad)[0])}: the export is broken; export the checkpoint again"
                    )
                out[start:stop] = y
                bar.update(stop - start)
        return out
