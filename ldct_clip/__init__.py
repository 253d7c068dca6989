"""ldct_clip: low-dose CT denoising with a frozen CLIP ResNet-50 encoder and a learned decoder, and the
methods it is compared with (Noise2Sim, RED-CNN, ScoreSDE-CT), trained and measured on the user's own data.

House rules, so a newcomer learns them in one place:

- A *verb* module is a command-line tool (``train.py``, ``infer.py``, ``evaluate.py``, ``view.py``,
  ``noise_level.py``, ``demo.py``, ``selfcheck.py``): parse arguments, call the library, print. A *noun* module
  or package is library code (``training.py``, ``inference.py``, ``evaluation/``, ``methods/``, ``models/``,
  ``viewer/``, ``projectors/``, ``noise_estimation.py``). CLIs stay thin and go through
  :func:`ldct_clip.cli.run_cli`: user errors are one :class:`InputError` line and exit status 2.
- ``models/`` holds networks and imports nothing from ``data/`` or ``io/``; ``methods/`` joins a network with
  its scale, training data, loss and inference procedure (one registry, :func:`ldct_clip.methods.create_model`);
  units are decided at the I/O boundary (``io/`` returns float32 HU).
- One source of truth: a setting, default, file name or check lives in one place and is imported from the
  module (or library) that owns it.
"""

from __future__ import annotations

__version__ = "0.2.0"

from ldct_clip.errors import InputError
from ldct_clip.inference import SeriesResult, VolumeDenoiser, denoise_series, denoise_volume
from ldct_clip.io import CTVolume, read_nifti, read_series, write_dicom_series, write_nifti
from ldct_clip.methods import create_model, get_method, list_methods
from ldct_clip.models.checkpoint import load_checkpoint, save_checkpoint
from ldct_clip.models.denoiser import CLIPDenoiser

__all__ = [
    "CLIPDenoiser",
    "CTVolume",
    "InputError",
    "SeriesResult",
    "VolumeDenoiser",
    "__version__",
    "create_model",
    "denoise_series",
    "denoise_volume",
    "get_method",
    "list_methods",
    "load_checkpoint",
    "read_nifti",
    "read_series",
    "save_checkpoint",
    "write_dicom_series",
    "write_nifti",
]
