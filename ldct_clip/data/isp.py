"""The CBDNet-style camera pipeline that makes noisy sRGB training images from clean ones.

Clean sRGB goes back through a simulated camera to raw, gets raw-domain Poisson-Gaussian noise and is
processed forward again (Guo et al., CBDNet, CVPR 2019; the CLIPDenoising sRGB configuration uses it
with a fixed noise level):

1. inverse camera response (a random curve) → linear RGB
2. RGB → XYZ (``skimage.color.rgb2xyz`` as the released code called it: it also undoes the sRGB transfer
   curve before the D65 matrix; kept so the noise lands where it did in the released training data)
3. XYZ → camera RGB with a random camera matrix (random convex mix of four cameras' XYZ→camera
   matrices, rows normalised to sum to 1 so white stays white)
4. mosaic with a random Bayer pattern (RGGB, BGGR, GRBG, GBRG)
5. inverse white balance: red and blue multiplied by gains drawn from U(0.75, 1)
6. noise ``clip(x + sigma_s·x·N1 + sigma_c·N2, 0, 1)`` (std proportional to the signal; σ_s = 0.04,
   σ_c = 0.03 as in the paper) — :class:`~ldct_clip.data.noise.PoissonGaussianNoise`
7. white balance, clip; demosaic (Malvar-He-Cutler 2004, the released code's choice; mirrored borders), clip
8. camera → XYZ → sRGB (``skimage.color.xyz2rgb``: matrix, sRGB curve, clip) → camera response

Camera responses: with CBDNet's ``201_CRF_data.mat`` (arrays ``I``, ``B``: 201 curves x 1024 samples,
irradiance → brightness) and optionally ``dorfCurvesInv.mat`` (``invI``, ``invB``), a random curve of
that database is used, interpolated linearly (the released code picks the nearest tabulated sample);
without ``dorfCurvesInv.mat`` the inverse is the numerical inverse of the same curve. Without the files
the response is drawn from a gamma family, ``brightness = irradiance^(1/γ)`` with ``γ ~ U(1.8, 2.6)``
(:data:`GAMMA_RANGE`), which spans the typical DoRF curves around the common 2.2.

The released code also clips XYZ and camera RGB to [0, 1] in both directions; that clips Z of bright
whites (Z = 1.089 at white) and tints them in the noisy image only, so it is off unless
``clip_color_spaces=True``. Everything is vectorised NumPy; arrays are C x H x W float in [0, 1].

>>> pipeline = CameraPipeline()
>>> clean = np.full((3, 16, 16), 0.4, np.float32)
>>> noisy = pipeline(clean, 0)
>>> noisy.shape, noisy.dtype, bool(np.array_equal(noisy, pipeline(clean, 0)))
((3, 16, 16), dtype('float32'), True)
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from ldct_clip.atomic import staged_folder
from ldct_clip.data.images import CLEAN_DIR, NOISY_DIR, list_images, read_image
from ldct_clip.data.noise import PoissonGaussianNoise, RandomSource, as_rng
from ldct_clip.errors import InputError

logger = logging.getLogger(__name__)

BAYER_PATTERNS = ("GRBG", "RGGB", "GBRG", "BGGR")
GAMMA_RANGE = (1.8, 2.6)
"""Exponents of the fallback response family ``brightness = irradiance^(1/γ)``."""
WB_GAIN_RANGE = (0.75, 1.0)
"""Inverse white-balance gains for red and blue."""

XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
"""sRGB (D65) → XYZ, the matrix of ``skimage.color``."""
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)

XYZ_TO_CAMERA = np.array([
    [1.0234, -0.2969, -0.2266, -0.5625, 1.6328, -0.0469, -0.0703, 0.2188, 0.6406],
    [0.4913, -0.0541, -0.0202, -0.6130, 1.3513, 0.2906, -0.1564, 0.2151, 0.7183],
    [0.8380, -0.2630, -0.0639, -0.2887, 1.0725, 0.2496, -0.0627, 0.1427, 0.5438],
    [0.6596, -0.2079, -0.0562, -0.4782, 1.3016, 0.1933, -0.0970, 0.1581, 0.5181],
]).reshape(4, 3, 3)
"""XYZ → camera matrices of the four cameras CBDNet's pipeline mixes (row-major 3 x 3 each)."""

# Malvar-He-Cutler 5 x 5 filters: green at red/blue sites; red/blue at green sites whose same-colour
# neighbours lie along the row (or column); red at blue sites and blue at red sites (diagonal).
_MALVAR_G_AT_RB = np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1],
                            [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]) / 8
_MALVAR_ROW = np.array([[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1],
                        [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]]) / 8
_MALVAR_COLUMN = _MALVAR_ROW.T
_MALVAR_DIAGONAL = np.array([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5],
                             [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]]) / 8


# --- camera response ----------------------------------------------------------------------------------


class Response(Protocol):
    """A camera response curve on [0, 1]."""

    def to_brightness(self, irradiance: np.ndarray) -> np.ndarray:
        """Linear irradiance → recorded brightness (the forward response)."""

    def to_irradiance(self, brightness: np.ndarray) -> np.ndarray:
        """Recorded brightness → linear irradiance (the inverse response)."""

    def describe(self) -> dict[str, float | int]:
        """Which curve this is, for the record written beside generated pairs."""


@dataclass(frozen=True)
class GammaResponse:
    """``brightness = irradiance^(1/gamma)`` on [0, 1]: the fallback family when no curve files are given.

    >>> r = GammaResponse(2.0)
    >>> float(r.to_brightness(np.array(0.25))), float(r.to_irradiance(np.array(0.5)))
    (0.5, 0.25)
    """

    gamma: float

    def to_brightness(self, irradiance: np.ndarray) -> np.ndarray:
        return np.clip(irradiance, 0.0, 1.0) ** (1.0 / self.gamma)

    def to_irradiance(self, brightness: np.ndarray) -> np.ndarray:
        return np.clip(brightness, 0.0, 1.0) ** self.gamma

    def describe(self) -> dict[str, float | int]:
        return {"gamma": round(self.gamma, 6)}


@dataclass(frozen=True, eq=False)
class TabulatedResponse:
    """One tabulated curve (irradiance and brightness samples), interpolated linearly both ways."""

    irradiance: np.ndarray
    brightness: np.ndarray
    inverse_brightness: np.ndarray
    inverse_irradiance: np.ndarray
    index: int

    def to_brightness(self, irradiance: np.ndarray) -> np.ndarray:
        return np.interp(irradiance, self.irradiance, self.brightness)

    def to_irradiance(self, brightness: np.ndarray) -> np.ndarray:
        return np.interp(brightness, self.inverse_brightness, self.inverse_irradiance)

    def describe(self) -> dict[str, float | int]:
        return {"curve_index": self.index}


def _load_curves(path: Path, keys: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two curves x samples arrays from a MATLAB file, checked for shape, range and monotony."""
    from scipy.io import loadmat

    if not path.is_file():
        raise InputError(f"{path}: response-curve file not found; pass CBDNet's 201_CRF_data.mat / dorfCurvesInv.mat")
    try:
        data = loadmat(path)
    except (ValueError, OSError, NotImplementedError) as err:
        raise InputError(f"{path}: not a readable MATLAB file ({err.__class__.__name__}); "
                         "pass CBDNet's .mat file") from None
    missing = [k for k in keys if k not in data]
    if missing:
        found = sorted(k for k in data if not k.startswith("__"))
        raise InputError(f"{path}: has no {' and '.join(repr(k) for k in missing)} array (found {found}); "
                         f"pass {'201_CRF_data.mat' if keys == ('I', 'B') else 'dorfCurvesInv.mat'}")
    x, y = (np.atleast_2d(np.asarray(data[k], dtype=np.float64)) for k in keys)
    if x.shape != y.shape or x.shape[1] < 2:
        raise InputError(f"{path}: {keys[0]} {x.shape} and {keys[1]} {y.shape} must be equal curves x samples arrays")
    if x.min() < 0 or x.max() > 1 or y.min() < 0 or y.max() > 1 or (np.diff(x, axis=1) < 0).any():
        raise InputError(f"{path}: curves must rise from 0 to 1 with increasing '{keys[0]}' samples; "
                         "is this a response-curve file?")
    return x, y


@dataclass(frozen=True, eq=False)
class ResponseLibrary:
    """A database of tabulated camera responses (CBDNet's DoRF files), one curve per row.

    Load it with :meth:`load`; :meth:`__getitem__` gives one :class:`TabulatedResponse`.
    """

    irradiance: np.ndarray
    brightness: np.ndarray
    inverse_brightness: np.ndarray
    inverse_irradiance: np.ndarray
    source: str = ""

    @classmethod
    def load(cls, crf: str | os.PathLike[str], icrf: str | os.PathLike[str] | None = None) -> ResponseLibrary:
        """Read ``201_CRF_data.mat`` (``I``, ``B``) and optionally ``dorfCurvesInv.mat`` (``invI``, ``invB``).

        Without the inverse file each curve is inverted numerically (brightness and irradiance swapped).
        """
        irradiance, brightness = _load_curves(Path(crf), ("I", "B"))
        if icrf is None:
            if (np.diff(brightness, axis=1) < 0).any():
                raise InputError(f"{crf}: some curves fall, so they cannot be inverted; "
                                 "also pass --icrf dorfCurvesInv.mat")
            inv_irradiance, inv_brightness = irradiance, brightness
        else:
            inv_irradiance, inv_brightness = _load_curves(Path(icrf), ("invI", "invB"))
            if (np.diff(inv_brightness, axis=1) < 0).any():
                raise InputError(f"{icrf}: 'invB' samples must increase")
            if len(inv_irradiance) != len(irradiance):
                raise InputError(f"{icrf}: {len(inv_irradiance)} inverse curves for {len(irradiance)} curves in "
                                 f"{crf}; pass the matching pair of files")
        return cls(irradiance, brightness, inv_brightness, inv_irradiance, source=f"{crf} {icrf or ''}".strip())

    def __len__(self) -> int:
        return len(self.irradiance)

    def __getitem__(self, index: int) -> TabulatedResponse:
        return TabulatedResponse(self.irradiance[index], self.brightness[index], self.inverse_brightness[index],
                                 self.inverse_irradiance[index], index)


# --- colour and mosaic operators ----------------------------------------------------------------------


def srgb_to_xyz(rgb: np.ndarray) -> np.ndarray:
    """``skimage.color.rgb2xyz`` on H x W x 3: undo the sRGB transfer curve, then the D65 matrix."""
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    return linear @ XYZ_FROM_RGB.T


def xyz_to_srgb(xyz: np.ndarray) -> np.ndarray:
    """``skimage.color.xyz2rgb`` on H x W x 3: matrix, sRGB transfer curve, clip to [0, 1]."""
    linear = xyz @ RGB_FROM_XYZ.T
    positive = np.maximum(linear, 0.0031308)
    return np.clip(np.where(linear > 0.0031308, 1.055 * positive ** (1 / 2.4) - 0.055, linear * 12.92), 0.0, 1.0)


def bayer_masks(shape: tuple[int, int], pattern: str) -> dict[str, np.ndarray]:
    """Boolean H x W masks of the R, G and B sites of a 2 x 2 Bayer ``pattern`` such as ``"RGGB"``."""
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"pattern must be one of {BAYER_PATTERNS}, got {pattern!r}")
    rows = (np.arange(shape[0]) % 2)[:, None]
    cols = (np.arange(shape[1]) % 2)[None, :]
    site = rows * 2 + cols
    return {c: np.isin(site, [i for i, p in enumerate(pattern) if p == c]) for c in "RGB"}


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample H x W x 3 ``rgb`` through the colour filter array: an H x W raw image."""
    masks = bayer_masks(rgb.shape[:2], pattern)
    return sum(np.where(masks[c], rgb[..., i], 0.0) for i, c in enumerate("RGB"))


def demosaic_malvar(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Malvar-He-Cutler (2004) linear demosaicing of an H x W raw image to H x W x 3 (not clipped).

    Borders are extended by whole-sample mirroring (scipy ``mirror``), which keeps the colour of every
    mirrored site; the colour-demosaicing code of the released pipeline used ``reflect``, which swaps
    colours in the padding and leaves wrong colours in a 2-pixel frame (up to 0.35 on a flat image).

    >>> flat = np.ones((6, 6, 3)) * np.array([0.2, 0.5, 0.7])
    >>> bool(np.allclose(demosaic_malvar(mosaic(flat, "GRBG"), "GRBG"), flat))
    True
    """
    masks = bayer_masks(raw.shape, pattern)
    red_rows = masks["R"].any(axis=1)[:, None]
    red_cols = masks["R"].any(axis=0)[None, :]
    blue_rows = masks["B"].any(axis=1)[:, None]
    blue_cols = masks["B"].any(axis=0)[None, :]
    along_row = ndimage.convolve(raw, _MALVAR_ROW, mode="mirror")
    along_col = ndimage.convolve(raw, _MALVAR_COLUMN, mode="mirror")
    diagonal = ndimage.convolve(raw, _MALVAR_DIAGONAL, mode="mirror")
    green = np.where(masks["G"], raw, ndimage.convolve(raw, _MALVAR_G_AT_RB, mode="mirror"))
    red = np.select([masks["R"], red_rows & blue_cols, blue_rows & red_cols, masks["B"]],
                    [raw, along_row, along_col, diagonal])
    blue = np.select([masks["B"], blue_rows & red_cols, red_rows & blue_cols, masks["R"]],
                     [raw, along_row, along_col, diagonal])
    return np.stack([red, green, blue], axis=-1)


def white_balance_mask(shape: tuple[int, int], pattern: str, red: float, blue: float) -> np.ndarray:
    """H x W factors: ``red`` on red sites, ``blue`` on blue sites, 1 on green."""
    masks = bayer_masks(shape, pattern)
    return np.where(masks["R"], red, np.where(masks["B"], blue, 1.0))


# --- the pipeline -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CameraParams:
    """The random camera of one image: response, XYZ → camera matrix, Bayer pattern, inverse WB gains."""

    response: Response
    xyz_to_camera: np.ndarray
    pattern: str
    red_gain: float
    blue_gain: float

    def describe(self) -> dict[str, object]:
        """JSON-ready summary, for the record written beside generated pairs."""
        return {**self.response.describe(), "pattern": self.pattern, "red_gain": round(self.red_gain, 6),
                "blue_gain": round(self.blue_gain, 6), "xyz_to_camera": np.round(self.xyz_to_camera, 6).tolist()}


@dataclass(frozen=True, eq=False)
class CameraPipeline:
    """Clean sRGB → noisy sRGB through a random simulated camera (see the module docstring).

    Args:
        sigma_s: signal-dependent raw noise (std ``sigma_s·x``); 0.04 in the paper.
        sigma_c: signal-independent raw noise std; 0.03 in the paper. Both 0 switch noise off.
        responses: tabulated response curves; None uses the gamma family of :data:`GAMMA_RANGE`.
        clip_color_spaces: also clip XYZ and camera RGB to [0, 1] like the released code.
    """

    sigma_s: float = 0.04
    sigma_c: float = 0.03
    responses: ResponseLibrary | None = None
    clip_color_spaces: bool = False
    noise: PoissonGaussianNoise = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise", PoissonGaussianNoise(self.sigma_s, self.sigma_c))

    def sample_params(self, rng: RandomSource) -> CameraParams:
        """Draw a camera: response curve, camera matrix, Bayer pattern and inverse white-balance gains."""
        rng = as_rng(rng)
        if self.responses is None:
            response: Response = GammaResponse(float(rng.uniform(*GAMMA_RANGE)))
        else:
            response = self.responses[int(rng.integers(len(self.responses)))]
        weights = rng.uniform(0.0, 1.0, len(XYZ_TO_CAMERA))
        matrix = np.tensordot(weights / weights.sum(), XYZ_TO_CAMERA, axes=1)
        matrix = matrix / matrix.sum(axis=1, keepdims=True)
        pattern = BAYER_PATTERNS[int(rng.integers(len(BAYER_PATTERNS)))]
        red, blue = (float(g) for g in rng.uniform(*WB_GAIN_RANGE, size=2))
        return CameraParams(response, matrix, pattern, red, blue)

    def unprocess(self, image: np.ndarray, params: CameraParams) -> np.ndarray:
        """Clean sRGB (3 x H x W in [0, 1]) → the camera's raw H x W mosaic, before noise."""
        rgb = _channels_last(image)
        xyz = srgb_to_xyz(params.response.to_irradiance(rgb))
        if self.clip_color_spaces:
            xyz = np.clip(xyz, 0.0, 1.0)
        camera = xyz @ params.xyz_to_camera.T
        if self.clip_color_spaces:
            camera = np.clip(camera, 0.0, 1.0)
        raw = mosaic(camera, params.pattern)
        return raw * white_balance_mask(raw.shape, params.pattern, params.red_gain, params.blue_gain)

    def process(self, raw: np.ndarray, params: CameraParams) -> np.ndarray:
        """A raw H x W mosaic → sRGB 3 x H x W float32 in [0, 1] (white balance, demosaic, colour, response)."""
        balanced = raw * white_balance_mask(raw.shape, params.pattern, 1 / params.red_gain, 1 / params.blue_gain)
        camera = np.clip(demosaic_malvar(np.clip(balanced, 0.0, 1.0), params.pattern), 0.0, 1.0)
        xyz = camera @ np.linalg.inv(params.xyz_to_camera).T
        if self.clip_color_spaces:
            xyz = np.clip(xyz, 0.0, 1.0)
        srgb = params.response.to_brightness(xyz_to_srgb(xyz))
        return np.ascontiguousarray(srgb.transpose(2, 0, 1), dtype=np.float32)

    def raw_pair(self, image: np.ndarray, rng_or_seed: RandomSource) -> tuple[np.ndarray, np.ndarray, CameraParams]:
        """``(clean raw, noisy raw, camera)`` for one clean sRGB image; draws the camera, then the noise."""
        rng = as_rng(rng_or_seed)
        params = self.sample_params(rng)
        raw = self.unprocess(image, params)
        return raw, self.noise(raw, rng), params

    def __call__(self, image: np.ndarray, rng_or_seed: RandomSource) -> np.ndarray:
        """The noisy sRGB version (3 x H x W float32 in [0, 1]) of a clean sRGB image."""
        _, noisy_raw, params = self.raw_pair(image, rng_or_seed)
        return self.process(noisy_raw, params)


def _channels_last(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"the camera pipeline takes RGB images (3 x H x W), got shape {image.shape}")
    return image.transpose(1, 2, 0)


# --- folders of pairs ---------------------------------------------------------------------------------


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The generator for one image: from the run's seed and the file name, not its position or worker."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)


def _make_pair(task: tuple[Path, Path, int], pipeline: CameraPipeline) -> dict[str, object]:
    """Read one clean image, write ``clean/<stem>.png`` and ``noisy/<stem>.png`` under the output folder."""
    source, out_dir, seed = task
    clean8 = _to_uint8(read_image(source, channels=3))
    _, noisy_raw, params = pipeline.raw_pair(clean8.transpose(2, 0, 1) / 255.0, image_rng(seed, source.name))
    noisy = pipeline.process(noisy_raw, params)
    name = f"{source.stem}.png"
    Image.fromarray(clean8).save(out_dir / CLEAN_DIR / name)
    Image.fromarray(_to_uint8(noisy)).save(out_dir / NOISY_DIR / name)
    return {"file": name, "source": source.name, **params.describe()}


_WORKER_PIPELINE: CameraPipeline | None = None
"""The pipeline of a worker process, set once by :func:`_init_worker` instead of pickled with every task."""


def _init_worker(pipeline: CameraPipeline) -> None:
    global _WORKER_PIPELINE
    _WORKER_PIPELINE = pipeline


def _worker_make_pair(task: tuple[Path, Path, int]) -> dict[str, object]:
    assert _WORKER_PIPELINE is not None
    return _make_pair(task, _WORKER_PIPELINE)


def _run_tasks(pipeline: CameraPipeline, tasks: Sequence[tuple[Path, Path, int]], workers: int,
               progress: bool) -> Iterator[dict[str, object]]:
    bar = tqdm(total=len(tasks), desc="sRGB pairs", unit="image", disable=not progress)
    try:
        if workers <= 1:
            for task in tasks:
                yield _make_pair(task, pipeline)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(pipeline,)) as pool:
                for record in pool.map(_worker_make_pair, tasks, chunksize=max(1, len(tasks) // (8 * workers))):
                    yield record
                    bar.update()
    finally:
        bar.close()


def write_srgb_pairs(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    pipeline: CameraPipeline | None = None,
    *,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``clean/`` and ``noisy/`` folders of matching 8-bit PNGs for the clean images in ``input_dir``.

    Each image gets its own generator from ``seed`` and its file name, so the output does not depend on
    the number of workers or the order they finish in. Everything is written to a temporary folder next to
    ``output_dir`` and renamed into place at the end, so an interrupted run leaves no partial output.
    ``pairs.json`` records the settings and each image's simulated camera. Images deeper than 8 bits are
    rounded to 8 bits first, and the noisy image is made from that rounded clean image.

    Args:
        input_dir: folder of clean RGB images (e.g. DIV2K sub-images).
        output_dir: new folder to create; an existing one is refused unless ``overwrite``.
        pipeline: the camera pipeline; default :class:`CameraPipeline` ``()`` (σ_s 0.04, σ_c 0.03, gamma curves).
        seed: run seed. workers: processes (1 = in this process). progress: show a tqdm bar.

    Returns:
        ``output_dir``.
    """
    pipeline = pipeline or CameraPipeline()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    sources = list_images(input_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise InputError(f"{output_dir}: the output folder must differ from the input folder")
    if output_dir.exists() and not overwrite:
        raise InputError(f"{output_dir}: already exists; pass --overwrite to replace it or choose another --output")
    stems: dict[str, str] = {}
    for source in sources:
        if source.stem in stems:
            raise InputError(f"{input_dir}: {stems[source.stem]} and {source.name} would both become "
                             f"{source.stem}.png; rename one of them")
        stems[source.stem] = source.name
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(output_dir) as staging:
        (staging / CLEAN_DIR).mkdir()
        (staging / NOISY_DIR).mkdir()
        tasks = [(source, staging, seed) for source in sources]
        records = list(_run_tasks(pipeline, tasks, workers, progress))
        settings = {"sigma_s": pipeline.sigma_s, "sigma_c": pipeline.sigma_c, "seed": seed,
                    "responses": pipeline.responses.source if pipeline.responses is not None
                    else f"gamma family, gamma ~ U{GAMMA_RANGE}",
                    "clip_color_spaces": pipeline.clip_color_spaces, "input": str(input_dir)}
        (staging / "pairs.json").write_text(json.dumps({"settings": settings, "images": records}, indent=1))
    logger.info("wrote %d pairs to %s", len(sources), output_dir)
    return output_dir
