"""The packing of HU slices for the viewer page, and the fragment's structure (no browser needed)."""

from __future__ import annotations

import base64
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from ldct_clip.viewer import Pane, SliceLabel, pack_slice, unpack_slice, viewer_html, write_viewer
from ldct_clip.viewer.data import ENCODING


def test_round_trip_rounds_to_whole_hu_and_clips_to_int16() -> None:
    rng = np.random.default_rng(0)
    hu = rng.uniform(-3000, 3000, (17, 23)).astype(np.float32)
    hu[0, :3] = [-40000.0, 40000.0, 2.5]
    back = unpack_slice(pack_slice(hu), hu.shape)
    assert back.dtype == np.int16
    expected = np.clip(np.rint(hu), -32768, 32767)
    np.testing.assert_array_equal(back, expected)
    assert back[0, 0] == -32768 and back[0, 1] == 32767 and back[0, 2] == 2  # round half to even


def test_layout_is_low_byte_plane_then_high_byte_plane_in_zlib() -> None:
    """What viewer.js decodes: zlib stream of Y·X low bytes followed by Y·X high bytes."""
    hu = np.array([[1, -2, 300]], dtype=np.float32)
    raw = zlib.decompress(base64.b64decode(pack_slice(hu)))
    stored = hu.astype("<i2").view(np.uint8).ravel()
    assert raw == bytes(stored[0::2]) + bytes(stored[1::2])


def test_planes_compress_a_noisy_ct_like_slice_better_than_interleaved_bytes() -> None:
    y, x = np.mgrid[:128, :128]
    hu = np.where(np.hypot(y - 64, x - 64) < 50, 40.0, -1000.0) + np.random.default_rng(1).normal(0, 20, (128, 128))
    interleaved = len(zlib.compress(np.rint(hu).astype("<i2").tobytes(), 6))
    planes = len(base64.b64decode(pack_slice(hu)))
    assert planes < 0.9 * interleaved


def test_pack_slice_refuses_a_volume() -> None:
    with pytest.raises(ValueError, match="one Y×X slice"):
        pack_slice(np.zeros((2, 3, 3)))


def _panes(z: int = 2) -> list[Pane]:
    return [Pane("low", "Low <dose>", np.zeros((z, 8, 8), np.float32)),
            Pane("full", "Full dose", np.ones((z, 8, 8), np.float32))]


def _meta(fragment: str) -> dict:
    text = re.search(r'<script type="application/json" class="ldctv-meta">(.*?)</script>', fragment, re.S)
    assert text is not None
    return json.loads(text.group(1))


def test_fragment_holds_one_data_block_per_pane_and_one_line_per_slice() -> None:
    slices = [SliceLabel(5, 12.5, "P</script>1"), SliceLabel(6, 15.0, "P</script>1")]
    fragment = viewer_html(_panes(), slices, title="a </script> title", reference="full")
    blocks = re.findall(r'<script type="application/octet-stream" class="ldctv-data">\n(.*?)\n</script>', fragment,
                        re.S)
    assert len(blocks) == 2
    assert [unpack_slice(line, (8, 8)).max() for line in blocks[1].split("\n")] == [1, 1]
    meta = _meta(fragment)
    assert meta["title"] == "a </script> title" and meta["encoding"] == ENCODING
    assert meta["slices"][0] == {"index": 5, "z_mm": 12.5, "patient": "P</script>1"}
    assert meta["reference"] == "full" and meta["standalone"] is False
    assert meta["windows"]["lung"] == [-1350.0, 150.0] and meta["default_window"] == "abdomen"
    assert fragment.lower().count("</script>") == 1 + 2 + 1  # meta, two data blocks, the viewer script
    assert re.search(r"\sid=", fragment) is None  # nothing that could collide with the embedding page


def test_script_decodes_the_encoding_the_packer_writes() -> None:
    script = (Path(__file__).parents[2] / "ldct_clip" / "viewer" / "viewer.js").read_text()
    assert f'meta.encoding !== "{ENCODING}"' in script


def test_metrics_become_the_shown_text_with_null_for_nan() -> None:
    metrics = {"redcnn": {"low": {"psnr": [20.0, float("nan")], "ssim": [0.49996, float("inf")]}}}
    meta = _meta(viewer_html(_panes(), [SliceLabel(0, 0, "P"), SliceLabel(1, 1, "P")], metrics))
    assert meta["metrics"] == {"redcnn": {"low": {"psnr": ["20.00", None], "ssim": ["0.5000", None]}}}


@pytest.mark.parametrize("change, message", [
    (lambda p, s, m: ([p[0], Pane("full", "x", np.zeros((2, 8, 9), np.float32))], s, m), "has shape"),
    (lambda p, s, m: (p, s[:1], m), "1 slice labels for 2 slices"),
    (lambda p, s, m: ([p[0], p[0]], s, m), "unique"),
    (lambda p, s, m: (p, s, {"redcnn": {"model": {"psnr": [1, 2], "ssim": [1, 2]}}}), "not a pane"),
    (lambda p, s, m: (p, s, {"redcnn": {"low": {"psnr": [1], "ssim": [1, 2]}}}), "holds 1 values"),
    (lambda p, s, m: ([], s, m), "at least one pane"),
])
def test_bad_arguments_are_refused(change, message: str) -> None:
    panes, slices, metrics = change(_panes(), [SliceLabel(0, 0, "P"), SliceLabel(1, 1, "P")], None)
    with pytest.raises(ValueError, match=message):
        viewer_html(panes, slices, metrics)


def test_pane_refuses_non_finite_or_flat_arrays() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Pane("low", "Low", np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError, match="Z×Y×X"):
        Pane("low", "Low", np.zeros((2, 2)))


def test_write_viewer_writes_a_standalone_page_atomically(tmp_path: Path) -> None:
    target = tmp_path / "v.html"
    target.write_text("old")
    assert write_viewer(target, _panes(), [SliceLabel(0, 0, "P"), SliceLabel(1, 1, "P")], title="T&T") == target
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>T&amp;T</title>" in page
    assert _meta(page)["standalone"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.html"]  # no partial file left behind
