"""ldct_clip: low-dose CT denoising with a frozen CLIP ResNet-50 encoder and a learned decoder."""

from __future__ import annotations

__version__ = "0.1.0"

from ldct_clip.errors import InputError
from ldct_clip.inference import SeriesResult, VolumeDenoiser, denoise_series, denoise_volume
from ldct_clip.io import CTVolume, read_nifti, read_series, write_dicom_series, write_nifti
from ldct_clip.models.checkpoint import load_checkpoint, save_checkpoint
from ldct_clip.models.denoiser import CLIPDenoiser

__all__ = [
    "CLIPDenoiser",
    "CTVolume",
    "InputError",
    "SeriesResult",
    "VolumeDenoiser",
    "__version__",
    "denoise_series",
    "denoise_volume",
    "load_checkpoint",
    "read_nifti",
    "read_series",
    "save_checkpoint",
    "write_dicom_series",
    "write_nifti",
]
