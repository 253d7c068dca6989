"""denoise_volume and denoise_series: HU in -> HU out, DICOM/NIfTI written back faithfully and atomically."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import torch
from dicom_factory import make_ct_series, phantom_hu
from pydicom.uid import ExplicitVRLittleEndian

from ldct_clip.data.hu import hu_to_model, model_to_hu
from ldct_clip.errors import InputError
from ldct_clip.inference import (
    SERIES_DESCRIPTION,
    SeriesResult,
    VolumeDenoiser,
    _glibc,
    denoise_series,
    denoise_volume,
)
from ldct_clip.io import read_nifti, read_series
from ldct_clip.models import CLIPDenoiser, load_checkpoint, save_checkpoint

SLOPE = 0.5  # a non-unit slope makes the stored-value rounding (slope / 2 in HU) visible


def _test_model() -> CLIPDenoiser:
    """A random-weight CT model with non-trivial BatchNorm statistics and an output that varies by ~500 HU.

    Random BatchNorm statistics make folding them into the convolutions observable; the scaled output
    layer makes slices distinguishable after rounding to stored values.
    """
    torch.manual_seed(0)
    model = CLIPDenoiser(encoder_weights="random")
    generator = torch.Generator().manual_seed(1)
    for module in model.encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.1, 0.1, generator=generator)
    model.decoder.output.weight.data.mul_(100)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> CLIPDenoiser:
    return _test_model()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, model: CLIPDenoiser) -> Path:
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "ct-test.safetensors")


def _reference(model: CLIPDenoiser, hu: np.ndarray) -> np.ndarray:
    """The plain model forward, slice by slice, without any of inference.py's preparation."""
    with torch.inference_mode():
        x = torch.from_numpy(hu_to_model(hu.astype(np.float32)))[:, None]
        return np.stack([model_to_hu(model(s[None]))[0, 0].numpy() for s in x])


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


# --- denoise_volume ------------------------------------------------------------------------------------


def test_denoise_volume_equals_plain_forward_for_any_batching(model: CLIPDenoiser) -> None:
    hu = phantom_hu(4, 40, 70)  # not multiples of 32: padded and cropped inside the model
    expected = _reference(model, hu)
    assert expected.std() > 100  # the test model's output varies enough to tell slices apart
    for batch_size in (1, 3):
        out = denoise_volume(model, hu, batch_size=batch_size, device="cpu")
        assert out.dtype == np.float32 and out.shape == hu.shape
        np.testing.assert_allclose(out, expected, rtol=0, atol=0.05)  # HU; BatchNorm folding rounds differently
    np.testing.assert_array_equal(denoise_volume(model, hu.astype(np.int16), batch_size=3, device="cpu"), out)


def test_denoise_volume_leaves_the_callers_model_alone(model: CLIPDenoiser) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        denoiser = VolumeDenoiser(model, device="cpu")
        denoise_volume(model, phantom_hu(1, 32, 32), device="cpu")
        assert model.training and model.encoder.bn1.training
        assert model.encoder.conv1.weight.is_contiguous()  # not switched to channels-last
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 45
    finally:
        model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # ... while the prepared copy is in eval mode with every BatchNorm folded away, channels-last throughout.
    assert not denoiser.model.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in denoiser.model.modules())
    with torch.inference_mode():
        image = denoiser.model.adapter(torch.zeros(1, 1, 32, 32))
    assert image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()


def test_bf16_is_close_to_fp32(model: CLIPDenoiser) -> None:
    hu = phantom_hu(3, 64, 64)
    fp32 = denoise_volume(model, hu, device="cpu")
    bf16 = denoise_volume(model, hu, device="cpu", precision="bf16")
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    rms = float(np.sqrt(np.mean((bf16 - fp32) ** 2)))
    # Tolerance: RMS difference within 1.5 % of the output's spread (measured ~0.7 %, i.e. ~3.7 HU of
    # ~525 HU); non-zero, so bfloat16 really was used.
    assert 0 < rms <= 0.015 * float(fp32.std())


@pytest.mark.parametrize(
    ("hu", "message"),
    [
        (np.where(np.arange(3)[:, None, None] == 1, np.nan, phantom_hu(3, 32, 32)), "NaN or infinite .* index 1"),
        (np.full((2, 32, 32), np.inf), "NaN or infinite .* index 0"),
        (np.zeros((32, 32)), "3-D array"),
        (np.zeros((2, 16, 40)), "at least 32x32"),
        (np.zeros((0, 32, 32)), "at least one slice"),
        (np.zeros((1, 32, 32), dtype=complex), "real numbers"),
    ],
)
def test_denoise_volume_refuses_bad_volumes(model: CLIPDenoiser, hu: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        denoise_volume(model, hu, device="cpu")


def test_denoise_volume_refuses_bad_settings_and_models(model: CLIPDenoiser) -> None:
    hu = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(InputError, match="precision must be one of"):
        denoise_volume(model, hu, precision="fp16")
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        denoise_volume(model, hu, batch_size=0)
    with pytest.raises(TypeError, match="numpy array"):
        denoise_volume(model, torch.zeros(1, 32, 32))  # type: ignore[arg-type]
    rgb = CLIPDenoiser(in_channels=3, encoder_weights="random")
    with pytest.raises(InputError, match=r"checkpoint is for RGB images \(in_channels=3\), not CT"):
        denoise_volume(rgb, hu)


_PAGE_FAULT_PROBE = """
import resource, torch
from ldct_clip.inference import _retain_freed_memory

def faults_of_second_allocation():
    torch.ones(16 * 2**20)  # 64 MB like a 512x512 activation (torch, unlike numpy, asks for no huge pages)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with _retain_freed_memory():  # pages are reused once touched (the first rounds may land on new ones)
    inside = min(faults_of_second_allocation() for _ in range(4))
print(inside, faults_of_second_allocation())
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
def test_freed_memory_is_reused_inside_and_returned_after() -> None:
    # A fresh interpreter: malloc's settings are process-wide, and earlier tests leave the heap in any state.
    run = subprocess.run([sys.executable, "-c", _PAGE_FAULT_PROBE], capture_output=True, text=True, check=True)
    inside, after = map(int, run.stdout.split())
    assert inside < 1000  # the freed pages are reused
    assert after > 8000  # default again: a fresh mmap, ~16k page faults


# --- denoise_series ------------------------------------------------------------------------------------


def test_dicom_output_has_the_denoised_hu_the_geometry_and_new_uids(
    tmp_path: Path, model: CLIPDenoiser, checkpoint: Path
) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    make_ct_series(source, n_slices=4, slope=SLOPE)  # shuffled, mixed-extension file names
    hashes = _hashes(source)

    results = denoise_series(checkpoint, source, output, device="cpu", batch_size=3)

    assert results == [SeriesResult(source, output, 4, results[0].seconds)] and results[0].ok
    original, written = read_series(source), read_series(output)
    assert original.slice_headers is not None and written.slice_headers is not None
    # HU read back = denoise_volume's output up to the rounding of the stored integers.
    # Same batch size as above: oneDNN's float rounding differs between batch shapes.
    expected = denoise_volume(load_checkpoint(checkpoint), original.hu, device="cpu", batch_size=3)
    assert np.abs(written.hu - expected).max() <= SLOPE / 2 + 1e-3
    np.testing.assert_allclose(expected, _reference(model, original.hu), atol=0.05)
    # Slice order and positions kept.
    for old, new in zip(original.slice_headers, written.slice_headers, strict=True):
        assert new.ImagePositionPatient == old.ImagePositionPatient and new.InstanceNumber == old.InstanceNumber
    assert written.spacing == original.spacing and written.origin == original.origin
    # New Series and SOP Instance UIDs, Study and Frame of Reference kept.
    files = [pydicom.dcmread(p) for p in sorted(output.iterdir())]
    assert len(files) == 4
    old_sops = {h.SOPInstanceUID for h in original.slice_headers}
    new_sops = {ds.SOPInstanceUID for ds in files}
    assert len(new_sops) == 4 and not new_sops & old_sops
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in files)
    old_series = original.slice_headers[0].SeriesInstanceUID
    assert len({ds.SeriesInstanceUID for ds in files}) == 1 and files[0].SeriesInstanceUID != old_series
    for ds in files:
        assert ds.StudyInstanceUID == original.slice_headers[0].StudyInstanceUID
        assert ds.FrameOfReferenceUID == original.slice_headers[0].FrameOfReferenceUID
        assert ds.PatientID == "TEST001" and ds.RescaleSlope == SLOPE and ds.ImageType[0] == "DERIVED"
        assert ds.SeriesDescription.endswith(f"[{SERIES_DESCRIPTION}]")
        assert ds.DerivationDescription.startswith("Denoised by ldct_clip ")
        assert "CLIPDenoising (clipdenoising)" in ds.DerivationDescription
        assert "checkpoint ct-test.safetensors, encoder weights random, fp32" in ds.DerivationDescription
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    # The input is untouched and nothing but the output appeared.
    assert _hashes(source) == hashes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_nifti_output_keeps_geometry_and_values(tmp_path: Path, model: CLIPDenoiser) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    make_ct_series(tmp_path / "in", n_slices=3, orientation=(1, 0, 0, 0, c, s))
    original = read_series(tmp_path / "in")

    denoise_series(model, tmp_path / "in", tmp_path / "den.nii.gz", fmt="nifti", device="cpu")
    written = read_nifti(tmp_path / "den.nii.gz")
    np.testing.assert_allclose(written.spacing, original.spacing, atol=1e-4)
    np.testing.assert_allclose(written.origin, original.origin, atol=1e-4)
    np.testing.assert_allclose(written.direction, original.direction, atol=1e-6)
    np.testing.assert_allclose(written.hu, _reference(model, original.hu), atol=0.05)

    # NIfTI in, NIfTI out: the geometry survives a second pass too.
    denoise_series(model, tmp_path / "den.nii.gz", tmp_path / "twice.nii", fmt="nifti", device="cpu")
    twice = read_nifti(tmp_path / "twice.nii")
    assert twice.spacing == written.spacing and twice.origin == written.origin
    np.testing.assert_allclose(twice.hu, _reference(model, written.hu), atol=0.05)


def test_failed_write_leaves_no_partial_output(
    tmp_path: Path, model: CLIPDenoiser, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_ct_series(tmp_path / "in", n_slices=4)
    dcmwrite = pydicom.filewriter.dcmwrite
    calls = []

    def disk_full_at_third_slice(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("No space left on device")
        dcmwrite(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmwrite", disk_full_at_third_slice)  # pydicom.dcmwrite(...)
    monkeypatch.setattr(pydicom.filewriter, "dcmwrite", disk_full_at_third_slice)  # Dataset.save_as(...)
    with pytest.raises(OSError, match="No space left"):
        denoise_series(model, tmp_path / "in", tmp_path / "out", device="cpu")
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output, no temporary folder


def test_nifti_input_cannot_become_dicom(tmp_path: Path, model: CLIPDenoiser) -> None:
    make_ct_series(tmp_path / "in", n_slices=1)
    denoise_series(model, tmp_path / "in", tmp_path / "ct.nii.gz", fmt="nifti", device="cpu")
    with pytest.raises(InputError, match="NIfTI input has no DICOM headers"):
        denoise_series(model, tmp_path / "ct.nii.gz", tmp_path / "out", device="cpu")
    with pytest.raises(InputError, match="NIfTI output needs a file name"):
        denoise_series(model, tmp_path / "in", tmp_path / "out", fmt="nifti", device="cpu")
    assert not (tmp_path / "out").exists()
