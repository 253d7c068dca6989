"""Image reading (8/16-bit PNG, JPEG, TIFF) and the pairing rules of real-noise test sets."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy.io import savemat

from ldct_clip.data.images import (
    ImagePairs,
    RealNoisePairs,
    is_paired_folder,
    paired_files,
    read_image,
)
from ldct_clip.errors import InputError

RNG = np.random.default_rng(0)
RGB16 = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)


def _png16(path: Path, array: np.ndarray) -> Path:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour)."""
    h, w, c = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def _chw(array: np.ndarray, white: float) -> np.ndarray:
    return (array.astype(np.float32) / np.float32(white)).transpose(2, 0, 1)


def test_16bit_colour_png_keeps_full_precision(tmp_path: Path) -> None:
    pytest.importorskip("png", reason="reading 16-bit colour PNG needs pypng")
    expected = _chw(RGB16, 65535)
    np.testing.assert_array_equal(read_image(_png16(tmp_path / "a.png", RGB16), 3), expected)
    rgba = np.concatenate([RGB16, RGB16[..., :1]], axis=-1)
    np.testing.assert_array_equal(read_image(_png16(tmp_path / "b.png", rgba), 3), expected)
    gray_alpha = np.concatenate([RGB16[..., :1], RGB16[..., :1]], axis=-1)
    np.testing.assert_array_equal(read_image(_png16(tmp_path / "c.png", gray_alpha), 1), _chw(RGB16[..., :1], 65535))


def test_16bit_tiff_and_gray_png_keep_full_precision(tmp_path: Path) -> None:
    expected = _chw(RGB16, 65535)
    tifffile.imwrite(tmp_path / "c.tif", RGB16)
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif", 3), expected)
    tifffile.imwrite(tmp_path / "d.tiff", np.moveaxis(RGB16, -1, 0), planarconfig="separate", photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "d.tiff", 3), expected)
    gray = RGB16[..., :1]
    np.testing.assert_array_equal(read_image(_png16(tmp_path / "e.png", gray), 1), _chw(gray, 65535))
    tifffile.imwrite(tmp_path / "f.tif", gray[..., 0])
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif", 1), _chw(gray, 65535))


def test_8bit_formats_palette_and_alpha(tmp_path: Path) -> None:
    expected = _chw(RGB8, 255)
    for name in ("a.png", "a.bmp", "a.tif"):
        Image.fromarray(RGB8).save(tmp_path / name)
        np.testing.assert_array_equal(read_image(tmp_path / name, 3), expected)
    Image.fromarray(RGB8).save(tmp_path / "q.jpg", quality=100, subsampling=0)
    assert np.abs(read_image(tmp_path / "q.jpg", 3) - expected).max() < 0.05
    Image.fromarray(np.dstack([RGB8, RGB8[..., 0]])).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png", 3), expected)
    Image.fromarray(RGB8).quantize(16).save(tmp_path / "palette.png")
    palette = read_image(tmp_path / "palette.png", 3)
    assert palette.shape == (3, 5, 6) and np.abs(palette - expected).mean() < 0.1
    Image.fromarray(RGB8[..., 0]).convert("LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png", 1), _chw(RGB8[..., :1], 255))


def test_bad_images_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(RGB8[..., 0]).save(tmp_path / "gray.png")
    with pytest.raises(InputError, match=r"gray.png: has 1 channel\(s\) but the model takes 3; use RGB images"):
        read_image(tmp_path / "gray.png", 3)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="junk.png: unreadable image"):
        read_image(tmp_path / "junk.png", 3)
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(InputError, match="float.tif: unsupported pixel type float32"):
        read_image(tmp_path / "float.tif", 1)
    Image.fromarray(RGB8).convert("LAB").save(tmp_path / "lab.tif")
    with pytest.raises(InputError, match="lab.tif: unsupported colour mode LAB"):
        read_image(tmp_path / "lab.tif", 3)
    monkeypatch.setitem(sys.modules, "png", None)  # pypng not installed
    with pytest.raises(InputError, match="16-bit colour PNG needs the pypng package"):
        read_image(_png16(tmp_path / "deep.png", RGB16), 3)


def _pair(folder: Path, clean_name: str, noisy_name: str, size: tuple[int, int] = (8, 8),
          noisy_size: tuple[int, int] | None = None) -> None:
    for name, shape in ((clean_name, size), (noisy_name, noisy_size or size)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / name)


def test_pairing_rules_for_polyu_cc_sidd_and_folders(tmp_path: Path) -> None:
    polyu = tmp_path / "PolyU"
    _pair(polyu, "Canon5D2_chair_mean.JPG", "Canon5D2_chair_real.JPG")
    _pair(polyu, "Nikon_plant_mean.JPG", "Nikon_plant_real.JPG")
    assert [(c.name, n.name) for c, n in paired_files(polyu)] == [
        ("Canon5D2_chair_mean.JPG", "Canon5D2_chair_real.JPG"), ("Nikon_plant_mean.JPG", "Nikon_plant_real.JPG")]
    cc = tmp_path / "CC"
    _pair(cc, "5dmark3_iso3200_1_mean.png", "5dmark3_iso3200_1_real.png")
    sidd = tmp_path / "SIDD_Medium"
    _pair(sidd, "0001_001_S6/GT_SRGB_010.PNG", "0001_001_S6/NOISY_SRGB_010.PNG")
    _pair(sidd, "0002_001_S6/GT_SRGB_010.PNG", "0002_001_S6/NOISY_SRGB_010.PNG")
    folders = tmp_path / "folders"
    _pair(folders, "clean/x.png", "noisy/x.jpg")
    generic = tmp_path / "generic"
    _pair(generic, "img_gt.png", "img_noisy.png")
    for root, count, layout in ((cc, 1, "names"), (sidd, 2, "names"), (folders, 1, "clean/ + noisy/"),
                                (generic, 1, "names")):
        assert is_paired_folder(root)
        pairs = RealNoisePairs(root)
        assert len(pairs) == count and pairs.layout == layout
        item = pairs[0]
        assert item["clean"].shape == item["noisy"].shape == (3, 8, 8)
        assert not np.array_equal(item["clean"], item["noisy"])
    assert [RealNoisePairs(sidd)[i]["name"] for i in range(2)] == ["0001_001_S6/GT_SRGB_010", "0002_001_S6/GT_SRGB_010"]
    assert RealNoisePairs(folders)[0]["name"] == "x"
    validation = ImagePairs(polyu, channels=3)
    assert len(validation) == 2 and validation[0]["low"].shape == (3, 8, 8)


def test_sidd_validation_blocks(tmp_path: Path) -> None:
    gt = RNG.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    noisy = RNG.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": gt})
    savemat(tmp_path / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    assert is_paired_folder(tmp_path)
    pairs = RealNoisePairs(tmp_path)
    assert len(pairs) == 6 and pairs.layout == "SIDD validation blocks"
    item = pairs[4]
    assert item["name"] == "0001_01"
    np.testing.assert_array_equal(item["clean"], _chw(gt[1, 1], 255))
    np.testing.assert_array_equal(item["noisy"], _chw(noisy[1, 1], 255))
    with pytest.raises(InputError, match="SIDD blocks are RGB"):
        RealNoisePairs(tmp_path, channels=1)


def test_pairing_problems_name_an_example(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely"
    _pair(lonely, "a_mean.png", "a_real.png")
    _pair(lonely, "b_real.png", "ignored/b_mean.png")  # different folders: no partner
    with pytest.raises(InputError, match=r"2 image\(s\) without a partner, e.g. .*b_real.png|ignored"):
        paired_files(lonely)
    stray = tmp_path / "stray"
    _pair(stray, "a_mean.png", "a_real.png")
    _pair(stray, "a_real.jpg", "b_gt.png")
    with pytest.raises(InputError, match="a_real.png: a_real.jpg has the same role and key; keep one of them"):
        paired_files(stray)
    folders = tmp_path / "folders"
    _pair(folders, "clean/x.png", "noisy/y.png")
    with pytest.raises(InputError, match=r"2 image\(s\) without a partner in clean/ and noisy/, e.g. x"):
        paired_files(folders)
    sizes = tmp_path / "sizes"
    _pair(sizes, "p_mean.png", "p_real.png", size=(8, 8), noisy_size=(8, 9))
    with pytest.raises(InputError, match=r"p_real.png: size \(8, 9\) differs from its clean image p_mean.png"):
        RealNoisePairs(sizes)[0]
    clean_only = tmp_path / "Kodak24"
    clean_only.mkdir()
    Image.fromarray(RGB8).save(clean_only / "kodim01.png")
    assert not is_paired_folder(clean_only)
    with pytest.raises(InputError, match="kodim01.png: is neither clean nor noisy"):
        paired_files(clean_only)
