"""Denoise CT volumes with a trained model of any method: the in-memory API and the read -> denoise -> write pipeline.

:func:`denoise_volume` takes HU and gives HU: slices go through the model in batches on the model scale
((HU + 1024) / 4096, :mod:`ldct_clip.data.hu`) under ``torch.inference_mode``. :func:`denoise_series` reads a
DICOM series folder or a NIfTI file, denoises it and writes a new DICOM series or a NIfTI file; given a
folder of DICOM series folders it processes each series into a mirrored output tree, and one failing series
does not stop the others.

Speed on CPU (measured with ``benchmarks/infer_throughput.py`` at 512×512 on 2 cores: 2.4 slices/s in fp32
and 4.7 in bf16 on an Intel Xeon, 0.86 and 1.75 on an AMD EPYC):

- the network runs on a private copy of the model in channels-last memory format (including the
  adapter's output, see :func:`_to_channels_last`) with the frozen encoder's BatchNorm layers folded
  into their convolutions (the same arithmetic, fewer memory passes);
- batches are small on CPU (:data:`BATCH_SIZES`), which keeps more of each layer in cache;
- while slices are computed, glibc keeps freed memory mapped, so each batch reuses the pages of the
  previous one instead of page-faulting hundreds of megabytes of fresh zeroed memory (a quarter of the
  CPU time otherwise);
- reading, computing and writing overlap: the first series is read while the checkpoint loads, the next
  one is read and the previous one written in background threads while the current one is computed.

Every output appears atomically (the writers build it under a temporary name and rename it into place),
so an interrupted run never leaves a partial series that looks complete.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ldct_clip.atomic import partial_path
from ldct_clip.device import resolve_device
from ldct_clip.errors import InputError
from ldct_clip.io.dicom import is_dicom_file, write_dicom_series
from ldct_clip.io.nifti import NIFTI_SUFFIXES, write_nifti
from ldct_clip.io.read import read_volume
from ldct_clip.io.volume import CTVolume
from ldct_clip.models.checkpoint import checkpoint_settings, load_checkpoint
from ldct_clip.models.denoiser import SIZE_MULTIPLE
from ldct_clip.models.encoder import OPENAI_TAG, RANDOM
from ldct_clip.sharding import Shard, balance, count_slices, output_complete, tidy_partials

if TYPE_CHECKING:
    from ldct_clip.exporting import OnnxDenoiser
    from ldct_clip.methods import Method

__all__ = [
    "BATCH_SIZES",
    "FORMATS",
    "PRECISIONS",
    "SeriesResult",
    "VolumeDenoiser",
    "denoise_series",
    "denoise_volume",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
"""``fp32``: full precision (default, HU fidelity first); ``bf16``: bfloat16 autocast, about twice as fast."""
FORMATS = ("dicom", "nifti")
"""Output formats of :func:`denoise_series`."""
BATCH_SIZES = {"cpu": 2, "cuda": 8}
"""Default slices per forward pass by device type. On CPU small batches keep more of each layer in cache:
measured at 512×512 on 2 cores, 2 is as fast as 1 and 5-15 % faster than 4 or 8, with the least memory.
On CUDA larger batches keep the GPU busy (not measured here)."""
SERIES_DESCRIPTION = "ldct_clip denoised"
"""Marker appended to the SeriesDescription of written DICOM series."""


class VolumeDenoiser:
    """A model prepared once for inference, applied to any number of HU volumes.

    Works for every method (:mod:`ldct_clip.methods`): slices go to the method's intensity scale, are
    padded by reflection to the sizes its network needs, denoised by its inference procedure (one forward
    pass, or a sampler of ``steps`` steps) and mapped back to HU. The model is copied, so the caller's
    module keeps its mode and device; CLIPDenoising's copy is in channels-last format with the encoder's
    BatchNorm folded into its convolutions (the same arithmetic, fewer passes over memory).

    Args:
        model: a CT model of any method (``in_channels=1``), e.g. from :func:`~ldct_clip.load_checkpoint`.
        batch_size: slices per forward pass; None: :data:`BATCH_SIZES` for the device.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` or ``"bf16"`` (bfloat16 autocast on CPU and CUDA).
        steps: sampler steps for methods that sample (ScoreSDE-CT); None: the model's own setting.

    >>> from ldct_clip import CLIPDenoiser
    >>> denoiser = VolumeDenoiser(CLIPDenoiser(encoder_weights="random"), batch_size=2, device="cpu")
    >>> denoiser(np.zeros((3, 40, 40), np.float32)).shape
    (3, 40, 40)
    """

    def __init__(
        self, model: nn.Module, batch_size: int | None = None, device: str = "auto", precision: str = "fp32",
        steps: int | None = None,
    ) -> None:
        from ldct_clip.methods import get_method

        _check_ct_model(model)
        _check_settings(batch_size, precision)
        _check_steps(steps)
        self.method = get_method(model.method)
        self.device = resolve_device(device)
        self.batch_size = BATCH_SIZES.get(self.device.type, 1) if batch_size is None else batch_size
        self.precision = precision
        self.steps = steps
        self.model = self.method.prepare(model, self.device)

    def __call__(self, hu: np.ndarray, progress: bool = False, desc: str | None = None) -> np.ndarray:
        """Denoise a Z×Y×X HU volume; returns float32 HU of the same shape.

        Raises InputError when the model gives NaN or infinite values (a broken checkpoint), naming the slice.
        """
        _check_volume(hu)
        out = np.empty(hu.shape, dtype=np.float32)
        with _retain_freed_memory(), torch.inference_mode(), self._precision_context(), tqdm(
            total=hu.shape[0], unit="slice", desc=desc, disable=not progress, dynamic_ncols=True
        ) as bar:
            for start in range(0, hu.shape[0], self.batch_size):
                stop = min(start + self.batch_size, hu.shape[0])
                x = torch.from_numpy(np.asarray(hu[start:stop], dtype=np.float32))[:, None].to(self.device)
                y = denoise_hu(self.method, self.model, x, self.steps, progress=False).float().cpu().numpy()[:, 0]
                bad = ~np.isfinite(y).all(axis=(1, 2))
                if bad.any():
                    raise InputError(
                        f"the model's output is NaN or infinite for slice {start + int(np.flatnonzero(bad)[0])}: "
                        "its checkpoint is broken (diverged or corrupted weights); use another checkpoint"
                    )
                out[start:stop] = y
                bar.update(stop - start)
        return out

    def _precision_context(self) -> AbstractContextManager[object]:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.device.type == "cuda":
            return _ieee_cuda_convolutions()
        return nullcontext()


def denoise_hu(method: Method, model: nn.Module, hu: torch.Tensor, steps: int | None = None,
               progress: bool = False) -> torch.Tensor:
    """Denoise an N×1×H×W HU tensor with ``model`` through ``method``'s scale, padding and procedure.

    The one place that maps HU to a method's network and back: :class:`VolumeDenoiser` and training
    validation both call it. ``model`` must be in eval mode already.
    """
    settings = model.settings
    x = method.scale(settings).to_unit(hu)
    h, w = x.shape[-2:]
    multiple = method.multiple(settings)
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    x = x.contiguous(memory_format=torch.channels_last)
    y = method.denoise(model, x, steps, progress)[..., :h, :w]
    return method.to_hu(settings, y.float(), hu)


def denoise_volume(
    model: nn.Module,
    hu: np.ndarray,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    progress: bool = False,
    steps: int | None = None,
) -> np.ndarray:
    """Denoise a CT volume given in HU (Z×Y×X); returns float32 HU of the same shape.

    Slices go through the model ``batch_size`` at a time; slices smaller than 32×32 are refused, other
    sizes are padded by reflection inside the model and cropped back. To denoise many volumes with one
    model, build a :class:`VolumeDenoiser` once instead.

    Args:
        model: a trained CT model of any method (``in_channels=1``); it is not modified.
        hu: finite HU values, any real dtype, shape (Z, Y, X).
        batch_size: slices per forward pass; None: :data:`BATCH_SIZES` for the device.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` (default) or ``"bf16"`` (bfloat16 autocast: about twice as fast; measured
            1-2 HU RMS from fp32, see ``benchmarks/infer_throughput.py``).
        progress: show a tqdm bar with slices per second.
        steps: sampler steps for methods that sample (ScoreSDE-CT); None: the model's own setting.

    Raises:
        InputError: NaN/Inf voxels, a wrong shape, an RGB model, or a bad argument.

    >>> from ldct_clip import CLIPDenoiser
    >>> model = CLIPDenoiser(encoder_weights="random")
    >>> denoise_volume(model, np.full((2, 48, 64), 40.0), device="cpu").shape
    (2, 48, 64)
    """
    _check_volume(hu)  # before preparing the model: bad input is reported at once
    denoiser = VolumeDenoiser(model, batch_size=batch_size, device=device, precision=precision, steps=steps)
    return denoiser(hu, progress=progress)


@dataclass(frozen=True)
class SeriesResult:
    """What happened to one input series: where it went, how many slices, how long, and any error.

    ``skipped``: not processed because its output was complete already (``skip_existing``).
    """

    source: Path
    target: Path
    slices: int = 0
    seconds: float = 0.0
    error: str | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def denoise_series(
    checkpoint_or_model: str | os.PathLike[str] | nn.Module,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    fmt: str = "dicom",
    series_uid: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    overwrite: bool = False,
    progress: bool = False,
    steps: int | None = None,
    skip_existing: bool = False,
    shard: Shard | None = None,
) -> list[SeriesResult]:
    """Read a CT series, denoise it and write the result; or do so for every series folder under a folder.

    Input: a folder holding a DICOM series, a ``.nii``/``.nii.gz`` file, or a folder without DICOM files of
    its own (batch mode): then every folder below it that holds DICOM files is one series, written to the
    same relative place under ``output_path`` (``<rel>/`` as DICOM, ``<rel>.nii.gz`` as NIfTI). In batch
    mode a failing series is recorded in its :class:`SeriesResult` and the others go on; otherwise errors
    are raised.

    DICOM output keeps each slice's header (study, frame of reference, patient, geometry, slope/intercept)
    with new Series and SOP Instance UIDs, a SeriesDescription marked "ldct_clip denoised" and a
    DerivationDescription naming the model and the checkpoint file. NIfTI output keeps the geometry.

    The input is only read. ``output_path`` may not lie inside the input (nor the input inside it), and
    an existing output is refused unless ``overwrite``. Each output appears atomically when complete.

    Args:
        checkpoint_or_model: a checkpoint file written by :func:`~ldct_clip.save_checkpoint`, a model, or an
            ``.onnx`` export (:mod:`ldct_clip.exporting`), run by onnxruntime in fp32.
        input_path: series folder, NIfTI file, or folder of series folders.
        output_path: output folder (DICOM, or NIfTI in batch mode) or ``.nii``/``.nii.gz`` file.
        fmt: ``"dicom"`` or ``"nifti"``.
        series_uid: SeriesInstanceUID to pick when the input folder holds several series (not in batch mode).
        batch_size: slices per forward pass; None: :data:`BATCH_SIZES` for the device.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"`` or ``"bf16"``, as for :func:`denoise_volume`.
        overwrite: replace existing outputs.
        progress: show a tqdm bar (slices per second) per series.
        steps: sampler steps for methods that sample (ScoreSDE-CT); None: the checkpoint's own setting.
        skip_existing: resume an interrupted run: an existing output folder is allowed, series whose output
            is complete are skipped, and hidden partial outputs of the killed run are removed (without it
            they are only named in a warning).
        shard: under ``torchrun`` (:meth:`Shard.from_env <ldct_clip.sharding.Shard.from_env>`), this
            process's rank: it does only its share of the series (:func:`~ldct_clip.sharding.balance`),
            after every rank has planned; rank 0 also reports the skipped series.

    Returns:
        One :class:`SeriesResult` per series of this rank, in input order.
    """
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {FORMATS}, got {fmt!r}")
    _check_settings(batch_size, precision)
    resolve_device(device)
    source, target = Path(input_path), Path(output_path)
    jobs, batch = _plan_jobs(source, target, fmt, overwrite or skip_existing)
    if batch and series_uid is not None:
        raise InputError(
            f"{source}: --series-uid picks one series in a single folder; it cannot be combined with a folder "
            "of series folders (batch mode)"
        )
    if not isinstance(checkpoint_or_model, nn.Module):
        checkpoint = Path(checkpoint_or_model)
        if checkpoint.resolve().is_relative_to(target.resolve()):
            raise InputError(f"{target}: holds the checkpoint {checkpoint}, which --overwrite would delete; "
                             "choose an output that does not contain the checkpoint")
        _check_checkpoint(checkpoint)  # fail fast, before any reading
    shard = shard or Shard()
    planned = jobs
    jobs, skipped = _shard_jobs(jobs, shard, skip_existing)
    if shard.rank == 0:  # before the barrier: no rank is writing yet
        tidy_partials(target, remove=skip_existing)
    shard.barrier()  # every rank has planned before any rank writes
    _check_writable(target)
    done = [SeriesResult(job.source, job.target, skipped=True) for job in skipped]
    if not jobs:
        return done

    results: list[SeriesResult | None] = [None] * len(jobs)
    reader = ThreadPoolExecutor(1, thread_name_prefix="ldct-read")
    writer = ThreadPoolExecutor(1, thread_name_prefix="ldct-write")
    try:
        next_read = reader.submit(read_volume, jobs[0].source, series_uid)  # runs while the model loads
        denoiser, derivation = _denoiser_and_derivation(checkpoint_or_model, batch_size, device, precision, steps)
        pending: tuple[int, Future[SeriesResult]] | None = None
        with _retain_freed_memory():  # across series too, so each one reuses the pages of the last
            for index, job in enumerate(jobs):
                started = time.perf_counter()
                current = next_read
                if index + 1 < len(jobs):  # queued behind the current read: ready before this compute ends
                    next_read = reader.submit(read_volume, jobs[index + 1].source, series_uid)
                try:
                    volume = current.result()
                    hu = denoiser(volume.hu, progress=progress, desc=job.name if batch else None)
                except Exception as err:
                    results[index] = _failure(job, err, batch)
                    continue
                if pending is not None:  # at most one series waits to be written: memory stays bounded
                    results[pending[0]] = _written(jobs[pending[0]], pending[1], batch)
                write = writer.submit(_write_job, job, volume, hu, fmt, derivation, overwrite, started)
                pending = (index, write)
                del volume, hu
        if pending is not None:
            results[pending[0]] = _written(jobs[pending[0]], pending[1], batch)
    finally:
        reader.shutdown(cancel_futures=True)  # on an error or Ctrl-C, skip reads not yet started
        writer.shutdown()  # a started write completes: it is atomic and its series is computed
    order = {job.source: index for index, job in enumerate(planned)}
    return sorted([*done, *(result for result in results if result is not None)], key=lambda r: order[r.source])


# --- planning ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    source: Path  # series folder or NIfTI file
    target: Path  # output folder (DICOM) or file (NIfTI)
    name: str  # relative name shown in progress bars


def _plan_jobs(source: Path, target: Path, fmt: str, allow_existing: bool) -> tuple[list[_Job], bool]:
    """The series to process and whether this is batch mode; InputError for unusable input/output paths.

    An existing output is refused unless ``allow_existing`` (``overwrite`` or ``skip_existing``).
    """
    if not source.exists():
        raise InputError(
            f"{source}: no such file or folder; pass a DICOM series folder, a NIfTI file or a folder of series"
        )
    src, dst = source.resolve(), target.resolve()
    if dst == src or dst.is_relative_to(src):
        raise InputError(f"{target}: output lies inside the input {source}; choose an output outside the input")
    if src.is_relative_to(dst):
        raise InputError(f"{target}: output contains the input {source}; choose an output outside the input")
    if target.exists() and not allow_existing:
        raise InputError(f"{target}: output already exists; choose another output or pass --overwrite "
                         "(or --skip-existing to resume an interrupted run)")
    nifti_target = target.name.endswith(NIFTI_SUFFIXES)

    if source.is_file() or _holds_dicom(source) or not any(p.is_dir() for p in source.iterdir()):
        if fmt == "dicom" and source.is_file() and source.name.endswith(NIFTI_SUFFIXES):
            raise InputError(f"{source}: NIfTI input has no DICOM headers to copy; pass --format nifti")
        if fmt == "nifti" and not nifti_target:
            raise InputError(f"{target}: NIfTI output needs a file name ending in .nii or .nii.gz")
        if fmt == "dicom" and nifti_target:
            raise InputError(f"{target}: a NIfTI file name but the format is dicom; pass --format nifti")
        return [_Job(source, target, source.name)], False

    if nifti_target:
        raise InputError(f"{target}: the input is a folder of series, so the output must be a folder, not a file")
    jobs = []
    for folder, subfolders, _ in os.walk(source):
        subfolders.sort()
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        here = Path(folder)
        if here != source and _holds_dicom(here):
            rel = here.relative_to(source)
            jobs.append(_Job(here, target / rel if fmt == "dicom" else target / f"{rel}.nii.gz", str(rel)))
    if not jobs:
        raise InputError(
            f"{source}: no DICOM files in it or in its subfolders; pass a series folder or a folder of them"
        )
    return jobs, True  # os.walk is top-down: a series is written before any series nested inside it


def _shard_jobs(jobs: list[_Job], shard: Shard, skip_existing: bool) -> tuple[list[_Job], list[_Job]]:
    """This rank's jobs and (on rank 0) the ones skipped because their output is complete already.

    Every rank computes the same split from the same plan, before any rank writes.
    """
    todo = [job for job in jobs if not (skip_existing and output_complete(job.target))]
    skipped = [job for job in jobs if job not in todo] if shard.rank == 0 else []
    ranks = balance([count_slices(job.source) for job in todo], [job.name for job in todo], shard.world_size)
    return [job for job, rank in zip(todo, ranks, strict=True) if rank == shard.rank], skipped


def _holds_dicom(folder: Path) -> bool:
    """Whether ``folder`` directly holds a DICOM file, with or without the preamble (checked until one is)."""
    return folder.is_dir() and any(p.is_file() and not p.name.startswith(".") and is_dicom_file(p)
                                   for p in folder.iterdir())


def _check_writable(target: Path) -> None:
    """Create the output's parent folder and a hidden probe in it now, so that an unwritable output is
    reported before any series is computed (the probe is removed at once)."""
    probe = partial_path(target)
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise InputError(f"{target}: cannot write the output here ({err.strerror or type(err).__name__}); "
                         "choose a writable output folder") from None


# --- the stages ----------------------------------------------------------------------------------------


def _check_checkpoint(path: Path) -> None:
    """Refuse unreadable and RGB checkpoints (or ONNX exports) from their metadata alone, before the series is read."""
    if path.suffix == ".onnx":
        from ldct_clip.exporting import check_onnx_model

        check_onnx_model(path)
        return
    _, settings = checkpoint_settings(path)
    in_channels = getattr(settings, "in_channels", 1)
    if in_channels != 1:
        raise InputError(
            f"{path}: checkpoint is for RGB images (in_channels={in_channels}), not CT; "
            "pass a checkpoint trained on CT (in_channels=1)"
        )


def _denoiser_and_derivation(
    checkpoint_or_model: str | os.PathLike[str] | nn.Module, batch_size: int | None, device: str, precision: str,
    steps: int | None,
) -> tuple[VolumeDenoiser | OnnxDenoiser, str]:
    """The denoiser (a torch model, or an ``.onnx`` export run by onnxruntime) and the DerivationDescription."""
    if isinstance(checkpoint_or_model, nn.Module) or Path(checkpoint_or_model).suffix != ".onnx":
        model, derivation = _model_and_derivation(checkpoint_or_model, precision)
        return VolumeDenoiser(model, batch_size=batch_size, device=device, precision=precision, steps=steps), derivation
    from ldct_clip import __version__
    from ldct_clip.exporting import OnnxDenoiser

    path = Path(checkpoint_or_model)
    if precision != "fp32" or steps is not None:
        raise InputError(f"{path}: an ONNX model runs in fp32 and has no sampler; drop --precision and --steps")
    onnx = OnnxDenoiser(path, batch_size=batch_size, device=device)
    derivation = (f"Denoised by ldct_clip {__version__}: {onnx.method.title} ({onnx.method.name}), ONNX model "
                  f"{path.name} exported from {onnx.metadata['source_checkpoint']}, fp32, onnxruntime")
    return onnx, derivation


def _model_and_derivation(
    checkpoint_or_model: str | os.PathLike[str] | nn.Module, precision: str
) -> tuple[nn.Module, str]:
    """The model (loaded when given a path) and the DerivationDescription that names it."""
    from ldct_clip import __version__
    from ldct_clip.methods import get_method

    if isinstance(checkpoint_or_model, nn.Module):
        model, origin = checkpoint_or_model, "an in-memory model"
    else:
        path = Path(checkpoint_or_model)
        model, origin = load_checkpoint(path), f"checkpoint {path.name}"
    method = get_method(model.method)
    source = getattr(model, "encoder_weight_source", None)
    weights = "" if source is None else f", encoder weights {_weights_label(source)}"
    derivation = f"Denoised by ldct_clip {__version__}: {method.title} ({method.name}), {origin}{weights}, {precision}"
    return model, derivation


def _weights_label(source: str) -> str:
    """``openai``, ``random`` or a file name: where the encoder came from, without local folder names.

    >>> _weights_label("openai (/home/me/.cache/huggingface/open_clip_pytorch_model.bin)")
    'openai'
    """
    for tag in (OPENAI_TAG, RANDOM):
        if source == tag or source.startswith(f"{tag} "):
            return tag
    return Path(source).name


def _write_job(
    job: _Job, volume: CTVolume, hu: np.ndarray, fmt: str, derivation: str, overwrite: bool, started: float
) -> SeriesResult:
    if fmt == "dicom":
        write_dicom_series(volume, hu, job.target, SERIES_DESCRIPTION, derivation, overwrite=overwrite)
    else:
        write_nifti(volume, hu, job.target, overwrite=overwrite)
    seconds = time.perf_counter() - started
    logger.info("%s: %d slices denoised -> %s (%.1f s)", job.source, volume.shape[0], job.target, seconds)
    return SeriesResult(job.source, job.target, volume.shape[0], seconds)


def _written(job: _Job, write: Future[SeriesResult], batch: bool) -> SeriesResult:
    try:
        return write.result()
    except Exception as err:
        return _failure(job, err, batch)


def _failure(job: _Job, err: Exception, batch: bool) -> SeriesResult:
    """Record a failed series in batch mode; outside batch mode the error goes to the caller."""
    if not batch:
        if isinstance(err, InputError) and str(job.source) not in str(err):
            raise InputError(f"{job.source}: {err}") from None
        raise err
    if isinstance(err, InputError):
        message = str(err)
    else:  # a bug or an environment problem: keep the traceback in the log
        logger.error("%s: unexpected error", job.source, exc_info=err)
        message = f"{type(err).__name__}: {err}"
    message = " ".join(message.split())
    if str(job.source) not in message:
        message = f"{job.source}: {message}"
    logger.error("%s", message)
    return SeriesResult(job.source, job.target, error=message)


# --- helpers -------------------------------------------------------------------------------------------


def _check_ct_model(model: object) -> None:
    if not isinstance(model, nn.Module) or not hasattr(model, "method"):
        raise TypeError(f"model must be a network of an ldct_clip method, got {type(model).__name__}")
    if model.in_channels != 1:
        raise InputError(
            f"checkpoint is for RGB images (in_channels={model.in_channels}), not CT; "
            "use a model trained on CT (in_channels=1)"
        )


def _check_settings(batch_size: int | None, precision: str) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _check_steps(steps: int | None) -> None:
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InputError(f"steps must be a positive integer (sampler steps), got {steps!r}")


def _check_volume(hu: object) -> None:
    if not isinstance(hu, np.ndarray):
        raise TypeError(f"hu must be a numpy array (Z, Y, X), got {type(hu).__name__}")
    if hu.ndim != 3:
        raise InputError(f"hu must be a 3-D array of slices (Z, Y, X), got shape {hu.shape}")
    if not (np.issubdtype(hu.dtype, np.floating) or np.issubdtype(hu.dtype, np.integer)):
        raise InputError(f"hu must hold real numbers, got dtype {hu.dtype}")
    if hu.shape[0] == 0 or min(hu.shape[1:]) < SIZE_MULTIPLE:
        raise InputError(
            f"hu has shape {hu.shape}; the model needs at least one slice of at least "
            f"{SIZE_MULTIPLE}x{SIZE_MULTIPLE} pixels"
        )
    finite = np.isfinite(hu).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"hu contains NaN or infinite values in {bad.size} slice(s), first at index {bad[0]}; "
            "fix the HU conversion of the input"
        )


@contextmanager
def _ieee_cuda_convolutions() -> Iterator[None]:
    """fp32 means fp32 on CUDA too: cuDNN convolutions without TF32 (PyTorch's default allows it)."""
    conv = torch.backends.cudnn.conv  # type: ignore[attr-defined]  # not in torch's type stubs
    previous = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = previous


# glibc mallopt parameters and their defaults (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_malloc_lock = threading.Lock()
_malloc_users = 0


@contextmanager
def _retain_freed_memory() -> Iterator[None]:
    """While inside, glibc keeps freed memory mapped instead of returning it to the system.

    Every activation of a 512×512 forward pass is larger than glibc's mmap threshold, so by default each
    one is a fresh mmap whose pages the kernel must fault in and zero, and each is unmapped again when
    freed: about 140,000 page faults and a quarter of the CPU time per slice on 2 cores. Serving large
    blocks from the heap and never trimming it lets the next batch reuse the same pages. On exit the
    defaults come back and the retained memory is released. A no-op where the C library is not glibc.
    """
    global _malloc_users
    libc = _glibc()
    if libc is None:
        yield
        return
    with _malloc_lock:
        if _malloc_users == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, -1)
        _malloc_users += 1
    try:
        yield
    finally:
        with _malloc_lock:
            _malloc_users -= 1
            if _malloc_users == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None
