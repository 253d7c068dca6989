"""Image files and image-folder datasets for the natural-image and sRGB configurations.

Images (PNG, JPEG, TIFF, BMP; 8- or 16-bit) are read to float32 in [0, 1], channels first. Pillow reads
8-bit images and 16-bit grayscale exactly but silently keeps only the high byte of 16-bit colour PNG and
TIFF, so those go to pypng and tifffile instead (see :func:`read_image`).

Training items are random patches with a random dihedral flip/rotation; clean-only folders get online
Gaussian noise, paired folders use the stored noisy image. Training items are addressed by
``(index, seed)`` so that a batch depends only on the step that draws it (see :mod:`ldct_clip.training`):
the same step gives the same patches in any worker, after any resume.

Paired (clean, noisy) folders are recognised in this order (:func:`paired_files`, :class:`RealNoisePairs`):

1. ``clean/`` and ``noisy/`` subfolders: files paired by name without suffix (``a.png`` with ``a.jpg``).
2. SIDD validation blocks: ``ValidationGtBlocksSrgb.mat`` and ``ValidationNoisyBlocksSrgb.mat`` side by
   side (40 images x 32 blocks of 256 x 256, read with scipy); items are named ``IIII_BB``.
3. Roles in file names, searched in all subfolders; the first rule of :data:`PAIR_RULES` that matches a
   file's stem (case-insensitively) gives its role and its key, and files with the same folder and key
   pair up: PolyU and CC ``<key>_real`` / ``<key>_mean``, SIDD-Medium ``NOISY_SRGB_<n>`` / ``GT_SRGB_<n>``,
   and generic ``<key>_noisy`` / ``<key>_clean`` or ``<key>_gt``.

A folder in which images have no partner, or some images match no rule, is refused with one line naming
an example, rather than scored on the subset that happened to match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ldct_clip.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
CLEAN_DIR, NOISY_DIR = "clean", "noisy"
SIDD_FILES = ("ValidationGtBlocksSrgb.mat", "ValidationNoisyBlocksSrgb.mat")
"""SIDD's sRGB validation blocks: (clean, noisy) MATLAB files, each holding one array of the same name."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TYPES_PILLOW_TRUNCATES = (2, 4, 6)  # RGB, gray + alpha, RGBA: Pillow keeps 8 of 16 bits
_PIL_CONVERSIONS = {"1": "L", "P": "RGBA", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB"}
_PIL_DIRECT_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class PairRule:
    """One naming convention for clean/noisy pairs in one folder.

    Attributes:
        name: the data sets that use it, for messages.
        pattern: regular expression on the file stem with groups ``role`` and ``key`` (matched
            case-insensitively).
        noisy: ``role`` values (lower case) that mark the noisy image; clean: those that mark the clean one.
    """

    name: str
    pattern: str
    noisy: tuple[str, ...]
    clean: tuple[str, ...]

    def match(self, stem: str) -> tuple[str, bool] | None:
        """``(key, is_noisy)`` for a stem that follows this rule, else None.

        >>> PAIR_RULES[0].match("Canon5D2_chair_real")
        ('Canon5D2_chair', True)
        """
        m = re.fullmatch(self.pattern, stem, flags=re.IGNORECASE)
        if m is None:
            return None
        return m.group("key"), m.group("role").lower() in self.noisy


PAIR_RULES: tuple[PairRule, ...] = (
    PairRule("PolyU/CC", r"(?P<key>.+)_(?P<role>real|mean)", noisy=("real",), clean=("mean",)),
    PairRule("SIDD-Medium", r"(?P<role>noisy|gt)_srgb_(?P<key>\d+)", noisy=("noisy",), clean=("gt",)),
    PairRule("generic", r"(?P<key>.+)_(?P<role>noisy|clean|gt)", noisy=("noisy",), clean=("clean", "gt")),
)
"""Naming rules for pairs in one folder, tried in order on each file's stem."""

_RULE_HELP = "; ".join(f"{r.name}: *_{'|'.join(r.noisy)} with *_{'|'.join(r.clean)}" for r in PAIR_RULES)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; an empty or missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder not found; pass a folder of PNG/JPEG/TIFF images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk, or None for other files."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return None
    return head[24], head[25]


def _read_png16_colour(path: Path) -> np.ndarray:
    """A 16-bit RGB, RGBA or gray + alpha PNG at full precision with pypng (Pillow keeps only the high byte)."""
    try:
        import png
    except ImportError:
        raise InputError(
            f"{path}: 16-bit colour PNG needs the pypng package to be read at full precision; "
            "run 'pip install pypng' or save the image as 16-bit TIFF"
        ) from None
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, info["planes"])


def _read_deep_tiff(path: Path) -> np.ndarray:
    """A TIFF of more than 8 bits per sample with tifffile (Pillow keeps only the high byte of colour ones)."""
    import tifffile

    try:
        array = tifffile.imread(path)
    except (KeyError, ValueError) as err:  # tifffile names the missing codec (e.g. LZW needs imagecodecs)
        raise InputError(f"{path}: TIFF not readable ({str(err).strip(chr(34))}); "
                         "save it uncompressed or with deflate compression") from None
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar configuration
    if array.ndim not in (2, 3):
        raise InputError(f"{path}: TIFF holds an array of shape {array.shape}; pass a single 2-D image")
    return array


def _decode(path: Path) -> tuple[np.ndarray, float]:
    """Pixels as an H x W or H x W x C integer array and the value that means white."""
    try:
        png_header = _png_header(path)
        if png_header is not None and png_header[0] == 16 and png_header[1] in _PNG_TYPES_PILLOW_TRUNCATES:
            return _read_png16_colour(path), 65535.0
        with Image.open(path) as img:
            bits = max(getattr(img, "tag_v2", {}).get(258, (8,)))  # TIFF BitsPerSample
            if img.format == "TIFF" and bits > 8 and img.mode not in ("I;16", "I;16B", "I;16L", "I;16N"):
                array, mode = _read_deep_tiff(path), f"TIFF {bits}-bit"
            elif img.mode in _PIL_CONVERSIONS:
                img = img.convert(_PIL_CONVERSIONS[img.mode])
                array, mode = np.asarray(img), img.mode
            elif img.mode not in _PIL_DIRECT_MODES:
                raise InputError(f"{path}: unsupported colour mode {img.mode}; save it as RGB or grayscale")
            elif img.mode == "LA":
                array, mode = np.asarray(img.getchannel("L")), "LA"
            else:
                array, mode = np.asarray(img), img.mode
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise InputError(f"{path}: unreadable image ({err.__class__.__name__}); remove or replace it") from None
    if array.dtype == np.uint8:
        return array, 255.0
    is_16bit_png = png_header is not None and png_header[0] == 16
    if array.dtype.kind == "u" and array.dtype.itemsize == 2 or (array.dtype == np.int32 and is_16bit_png):
        return array, 65535.0
    raise InputError(f"{path}: unsupported pixel type {array.dtype} (mode {mode}); use 8- or 16-bit images")


def read_image(path: str | os.PathLike[str], channels: int) -> np.ndarray:
    """Read an image as float32 C x H x W in [0, 1]; 16-bit images keep their precision.

    PNG, JPEG, TIFF and BMP, 8 or 16 bits per sample; an alpha channel is dropped and palette images are
    expanded. Grayscale images given to an RGB model (and the reverse) are refused rather than converted
    silently.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.fromarray(np.full((4, 5, 3), 255, np.uint8)).save(path)
    >>> read_image(path, channels=3).shape, float(read_image(path, channels=3).max())
    ((3, 4, 5), 1.0)
    """
    path = Path(path)
    array, white = _decode(path)
    scaled = array.astype(np.float32) / np.float32(white)
    if scaled.ndim == 3 and scaled.shape[2] in (2, 4):
        scaled = scaled[..., :-1]  # drop alpha
    if scaled.ndim == 3 and scaled.shape[2] == 1:
        scaled = scaled[..., 0]
    found = 1 if scaled.ndim == 2 else scaled.shape[2]
    if found != channels:
        raise InputError(
            f"{path}: has {found} channel(s) but the model takes {channels}; "
            f"use {'RGB' if channels == 3 else 'grayscale'} images"
        )
    return np.ascontiguousarray(scaled[None] if scaled.ndim == 2 else scaled.transpose(2, 0, 1))


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) of the 8 flips/rotations of the last two axes."""
    out = np.rot90(array, k % 4, axes=(-2, -1))
    return out[..., ::-1] if k >= 4 else out


def _random_patch(
    images: Sequence[np.ndarray], patch_size: int, rng: np.random.Generator, source: Path
) -> list[np.ndarray]:
    """The same random crop and dihedral transform of each image in ``images``."""
    _, h, w = images[0].shape
    if min(h, w) < patch_size:
        raise InputError(f"{source}: {h}x{w} image is smaller than patch_size={patch_size}; lower data.patch_size")
    y, x, k = rng.integers(0, h - patch_size + 1), rng.integers(0, w - patch_size + 1), rng.integers(0, 8)
    return [np.ascontiguousarray(dihedral(im[:, y:y + patch_size, x:x + patch_size], int(k))) for im in images]


def _split_key(key: int | tuple[int, int]) -> tuple[int, int]:
    return (key, key) if isinstance(key, int) else (int(key[0]), int(key[1]))


class ImageFolderPatches(Dataset):
    """Random clean patches with online Gaussian noise: ``{"noisy", "clean": C x P x P}``.

    Args:
        root: folder of clean images (for example CBSD432).
        channels: 3 for RGB, 1 for grayscale.
        patch_size: side of the square patches.
        sigma: noise std in [0, 1] units (15/255 for the synthetic configuration); not clipped.
    """

    def __init__(self, root: str | os.PathLike[str], channels: int = 3, patch_size: int = 128,
                 sigma: float = 15 / 255) -> None:
        self.files = list_images(root)
        self.channels, self.patch_size, self.sigma = channels, patch_size, sigma

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = _split_key(key)
        rng = np.random.default_rng(seed)
        path = self.files[index]
        (clean,) = _random_patch([read_image(path, self.channels)], self.patch_size, rng, path)
        noisy = clean + rng.normal(0.0, self.sigma, clean.shape).astype(np.float32)
        return {"noisy": torch.from_numpy(noisy), "clean": torch.from_numpy(clean)}


def _unique_by_stem(files: Sequence[Path], folder: Path) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise InputError(f"{folder}: {by_stem[path.stem].name} and {path.name} share a name; keep one of them")
        by_stem[path.stem] = path
    return by_stem


def _folder_pairs(root: Path) -> list[tuple[Path, Path]]:
    clean = _unique_by_stem(list_images(root / CLEAN_DIR), root / CLEAN_DIR)
    noisy = _unique_by_stem(list_images(root / NOISY_DIR), root / NOISY_DIR)
    unmatched = sorted(set(clean) ^ set(noisy))
    if unmatched:
        raise InputError(
            f"{root}: {len(unmatched)} image(s) without a partner in {CLEAN_DIR}/ and {NOISY_DIR}/, "
            f"e.g. {unmatched[0]}; give both folders the same file names"
        )
    return [(clean[stem], noisy[stem]) for stem in sorted(clean)]


def _named_pairs(root: Path) -> list[tuple[Path, Path]]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder or its subfolders")
    sides: dict[tuple[Path, str, str], dict[bool, Path]] = {}
    for path in files:
        found = next(((rule, m) for rule in PAIR_RULES if (m := rule.match(path.stem)) is not None), None)
        if found is None:
            raise InputError(f"{path}: is neither clean nor noisy by its name in a paired folder; "
                             f"name pairs as {_RULE_HELP}, or use {CLEAN_DIR}/ and {NOISY_DIR}/ subfolders")
        rule, (key, is_noisy) = found
        side = sides.setdefault((path.parent, rule.name, key.lower()), {})
        if is_noisy in side:
            raise InputError(f"{path}: {side[is_noisy].name} has the same role and key; keep one of them")
        side[is_noisy] = path
    lonely = [next(iter(s.values())) for s in sides.values() if len(s) == 1]
    if lonely:
        raise InputError(f"{root}: {len(lonely)} image(s) without a partner, e.g. {lonely[0]}; "
                         f"pairs are named {_RULE_HELP}")
    return sorted(((s[False], s[True]) for s in sides.values()), key=lambda pair: str(pair[0]))


def _has_named_noisy(root: Path) -> bool:
    for path in root.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            match = next((m for rule in PAIR_RULES if (m := rule.match(path.stem)) is not None), None)
            if match is not None and match[1]:
                return True
    return False


def is_paired_folder(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` looks like a paired test set: clean/ + noisy/, SIDD blocks, or noisy-named images.

    >>> import tempfile
    >>> is_paired_folder(tempfile.mkdtemp())
    False
    """
    root = Path(root)
    return (
        (root / CLEAN_DIR).is_dir() and (root / NOISY_DIR).is_dir()
        or all((root / name).is_file() for name in SIDD_FILES)
        or root.is_dir() and _has_named_noisy(root)
    )


def paired_files(root: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """(clean, noisy) image files in ``root``, matched by the rules in the module docstring (1 and 3).

    Raises :class:`InputError` naming an example when an image has no partner or no recognisable role.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: paired image folder not found; pass a folder with {CLEAN_DIR}/ and {NOISY_DIR}/")
    if (root / CLEAN_DIR).is_dir() or (root / NOISY_DIR).is_dir():
        return _folder_pairs(root)
    return _named_pairs(root)


def _load_sidd_blocks(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """SIDD's clean and noisy validation blocks as images x blocks x H x W x 3 uint8 arrays."""
    from scipy.io import loadmat

    arrays = []
    for name in SIDD_FILES:
        path = root / name
        try:
            array = np.asarray(loadmat(path)[path.stem])
        except (ValueError, KeyError, OSError, NotImplementedError) as err:
            raise InputError(f"{path}: not SIDD's validation block file ({err.__class__.__name__}); "
                             f"it must hold the uint8 array '{path.stem}'") from None
        if array.ndim != 5 or array.shape[-1] != 3:
            raise InputError(f"{path}: array of shape {array.shape}; expected images x blocks x H x W x 3")
        arrays.append(array)
    clean, noisy = arrays
    if clean.shape != noisy.shape:
        raise InputError(f"{root}: SIDD blocks of shapes {clean.shape} and {noisy.shape} differ; re-download them")
    return clean, noisy


class RealNoisePairs(Dataset):
    """Clean/noisy test pairs of a real-noise set (SIDD, PolyU, CC or clean/ + noisy/), whole images.

    Items are ``{"clean", "noisy": float32 C x H x W in [0, 1], "name": str}``; the layouts recognised
    are listed in the module docstring. A pair whose sizes differ is refused when it is read.

    Args:
        root: the test-set folder.
        channels: 3 for RGB (SIDD is RGB only), 1 for grayscale.
    """

    def __init__(self, root: str | os.PathLike[str], channels: int = 3) -> None:
        self.root, self.channels = Path(root), channels
        self._blocks: tuple[np.ndarray, np.ndarray] | None = None
        self._files: list[tuple[Path, Path]] = []
        if all((self.root / name).is_file() for name in SIDD_FILES):
            if channels != 3:
                raise InputError(f"{self.root}: SIDD blocks are RGB but the model takes {channels} channel(s)")
            self._blocks = _load_sidd_blocks(self.root)
            self.layout = "SIDD validation blocks"
        else:
            self._files = paired_files(self.root)
            self.layout = f"{CLEAN_DIR}/ + {NOISY_DIR}/" if (self.root / CLEAN_DIR).is_dir() else "names"

    def __len__(self) -> int:
        return self._blocks[0].shape[0] * self._blocks[0].shape[1] if self._blocks is not None else len(self._files)

    def __getitem__(self, index: int) -> dict[str, object]:
        if self._blocks is not None:
            image, block = divmod(index, self._blocks[0].shape[1])
            clean, noisy = (b[image, block].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
                            for b in self._blocks)
            return {"clean": clean, "noisy": noisy, "name": f"{image:04d}_{block:02d}"}
        clean_path, noisy_path = self._files[index]
        clean, noisy = read_image(clean_path, self.channels), read_image(noisy_path, self.channels)
        if clean.shape != noisy.shape:
            raise InputError(f"{noisy_path}: size {noisy.shape[1:]} differs from its clean image "
                             f"{clean_path.name} {clean.shape[1:]}; the pair must be aligned")
        base = self.root / CLEAN_DIR if self.layout.startswith(CLEAN_DIR) else self.root
        return {"clean": clean, "noisy": noisy, "name": clean_path.relative_to(base).with_suffix("").as_posix()}


class PairedFolderPatches(Dataset):
    """Random aligned patches of stored (clean, noisy) pairs: ``{"noisy", "clean": C x P x P}``."""

    def __init__(self, root: str | os.PathLike[str], channels: int = 3, patch_size: int = 128) -> None:
        self.pairs = paired_files(root)
        self.channels, self.patch_size = channels, patch_size

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = _split_key(key)
        clean_path, noisy_path = self.pairs[index]
        clean, noisy = read_image(clean_path, self.channels), read_image(noisy_path, self.channels)
        if clean.shape != noisy.shape:
            raise InputError(f"{noisy_path}: size {noisy.shape[1:]} differs from its clean image {clean.shape[1:]}")
        clean, noisy = _random_patch([clean, noisy], self.patch_size, np.random.default_rng(seed), clean_path)
        return {"noisy": torch.from_numpy(noisy), "clean": torch.from_numpy(clean)}


class ImagePairs(Dataset):
    """Whole images for validation: ``{"low": noisy, "full": clean}`` (C x H x W).

    With ``sigma`` the noisy image is the clean one plus Gaussian noise seeded by the image's index, so
    every validation run scores the same inputs; without it, ``root`` is a paired folder
    (:class:`RealNoisePairs`).
    """

    def __init__(self, root: str | os.PathLike[str], channels: int = 3, sigma: float | None = None) -> None:
        self.channels, self.sigma = channels, sigma
        self.files = list_images(root) if sigma is not None else []
        self.real = RealNoisePairs(root, channels) if sigma is None else None

    def __len__(self) -> int:
        return len(self.real) if self.real is not None else len(self.files)

    def __getitem__(self, index: int) -> dict[str, object]:
        if self.real is not None:
            item = self.real[index]
            return {"low": torch.from_numpy(item["noisy"]), "full": torch.from_numpy(item["clean"]),
                    "name": item["name"]}
        clean = read_image(self.files[index], self.channels)
        rng = np.random.default_rng(index)
        noisy = clean + rng.normal(0.0, self.sigma, clean.shape).astype(np.float32)
        return {"low": torch.from_numpy(noisy), "full": torch.from_numpy(clean), "name": self.files[index].name}
