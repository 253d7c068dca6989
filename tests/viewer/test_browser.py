"""The viewer page in a real headless Chromium: navigation, HU under the cursor, metrics, window, flip, zoom.

Every test also fails if the page logged a console error or raised (see the ``watched`` fixture). Without
a browser these tests fail unless LDCT_CLIP_NO_BROWSER=1 (see conftest.py).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ldct_clip.viewer import viewer_html

X = Y = 64  # the tiny series' slice size


def _hover(page: Any, slot: int, x: float, y: float) -> None:
    """Move the mouse to the centre of voxel (x, y) of pane ``slot`` at zoom 1."""
    box = page.locator(".ldctv-canvas").nth(slot).bounding_box()
    page.mouse.move(box["x"] + (x + 0.5) * box["width"] / X, box["y"] + (y + 0.5) * box["height"] / Y)


def _readouts(page: Any) -> list[str]:
    return page.locator(".ldctv-pane:not([hidden]) .ldctv-hu").all_inner_texts()


def _expected_hu(tiny: Any, z: int, x: int, y: int) -> list[str]:
    return [f"{int(np.rint(v[z, y, x]))} HU" for v in (tiny.low, tiny.model, tiny.full)]


def _canvas_pixels(page: Any, slot: int) -> np.ndarray:
    png = page.locator(".ldctv-canvas").nth(slot).screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)[:4 * Y, :4 * X]


def test_scroll_to_a_slice_set_a_window_and_read_the_hu_of_every_pane(watched: Any, tiny_page: Path, tiny) -> None:
    watched.open(tiny_page)
    page = watched.page
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.locator(".ldctv").get_attribute("data-slice") == "2"
    assert page.locator(".ldctv-slice").inner_text() == "3 / 4 · index 12 · z 105.00 mm · patient TEST001"
    page.locator(".ldctv-level").fill("0")
    page.locator(".ldctv-width").fill("2000")
    page.locator(".ldctv-width").press("Enter")
    assert page.locator(".ldctv-window-range").inner_text() == "[-1000, 1000] HU"
    for x, y in [(37, 21), (20, 40), (5, 0)]:
        _hover(page, 0, x, y)
        assert _readouts(page) == _expected_hu(tiny, 2, x, y)
        assert page.locator(".ldctv-cursor").inner_text() == f"x {x}, y {y}"
    # the readout follows the slice under a still cursor; wheel and slider navigate too
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => document.querySelector('.ldctv').dataset.slice === '3'")
    assert _readouts(page) == _expected_hu(tiny, 3, 5, 0)
    page.locator(".ldctv-slider").fill("1")
    assert page.locator(".ldctv").get_attribute("data-slice") == "1"
    assert _readouts(page) == _expected_hu(tiny, 1, 5, 0)


@pytest.mark.parametrize("preset", ["clipdenoising", "redcnn"])
def test_psnr_and_ssim_shown_for_each_slice_are_the_given_metrics(watched: Any, tiny_page: Path, tiny,
                                                                  preset: str) -> None:
    watched.open(tiny_page)
    page = watched.page
    page.locator(".ldctv-preset").select_option(preset)
    for k in range(4):
        page.locator(".ldctv-slider").fill(str(k))
        psnr = page.locator(".ldctv-psnr").all_inner_texts()
        ssim = page.locator(".ldctv-ssim").all_inner_texts()
        expected = [tiny.metrics[preset][key] for key in ("low", "model")]
        shown = [f"PSNR {m['psnr'][k]:.2f} dB" if np.isfinite(m["psnr"][k]) else "PSNR – dB" for m in expected]
        assert psnr[:2] == shown and psnr[2] == "reference"
        assert ssim[:2] == [f"SSIM {m['ssim'][k]:.4f}" for m in expected]


def test_rendered_grey_is_the_window_of_the_real_hu_and_changes_with_the_window(watched: Any, tiny_page: Path,
                                                                                 tiny) -> None:
    watched.open(tiny_page)
    page = watched.page
    abdomen = _canvas_pixels(page, 0)
    voxel_centres = abdomen[2::4, 2::4, 0]  # 256 CSS px for 64 voxels: 4 screen pixels per voxel
    expected = np.clip(np.rint((np.rint(tiny.low[0]) + 160) / 400 * 255), 0, 255)
    assert np.abs(voxel_centres - expected).max() <= 1
    page.locator("button.ldctv-window[data-window='lung']").click()
    lung = _canvas_pixels(page, 0)
    assert np.abs(lung - abdomen).mean() > 20
    # right-drag to the right widens the window: fewer saturated pixels, new numbers in the controls
    box = page.locator(".ldctv-canvas").nth(1).bounding_box()
    page.locator("button.ldctv-window[data-window='abdomen']").click()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down(button="right")
    page.mouse.move(box["x"] + 200, box["y"] + 100, steps=4)
    page.mouse.up(button="right")
    assert page.locator(".ldctv-width").input_value() == "600"  # 400 + 100 px × 400/200 HU per px
    dragged = _canvas_pixels(page, 0)
    disc = (slice(24, 40), slice(8, 24))  # voxels inside the water disc, away from the bone insert
    grey = [image[2::4, 2::4, 0][disc] for image in (abdomen, dragged)]
    assert grey[1].std() < 0.8 * grey[0].std()  # a wider window: less contrast in soft tissue


def test_space_flips_two_chosen_panes_in_place(watched: Any, tiny_page: Path, tiny) -> None:
    watched.open(tiny_page)
    page = watched.page
    _hover(page, 1, 30, 30)
    before = _readouts(page)
    page.keyboard.press(" ")
    labels = page.locator(".ldctv-label").all_inner_texts()
    assert labels[:3] == ["Low dose", "Full dose ⇄", "CLIPDenoising ⇄"]
    assert _readouts(page) == [before[0], before[2], before[1]]
    page.keyboard.press(" ")
    assert page.locator(".ldctv-label").all_inner_texts()[:3] == ["Low dose", "CLIPDenoising", "Full dose"]
    page.locator(".ldctv-flip-a").select_option(label="Low dose")
    page.locator(".ldctv").focus()
    page.keyboard.press(" ")
    assert page.locator(".ldctv-label").all_inner_texts()[:3] == ["Full dose ⇄", "CLIPDenoising", "Low dose ⇄"]


def test_difference_pane_shows_method_minus_reference_in_hu(watched: Any, tiny_page: Path, tiny) -> None:
    watched.open(tiny_page)
    page = watched.page
    assert page.locator(".ldctv-pane[data-key='difference']").count() == 0  # hidden until chosen
    page.locator(".ldctv-diff").select_option(label="CLIPDenoising − Full dose")
    assert page.locator(".ldctv-pane[data-key='difference'] .ldctv-label").inner_text() == "CLIPDenoising − Full dose"
    _hover(page, 0, 33, 31)
    difference = int(np.rint(tiny.model[0, 31, 33]) - np.rint(tiny.full[0, 31, 33]))
    assert _readouts(page)[-1] == f"Δ {difference} HU"
    pixels = _canvas_pixels(page, 3)
    assert pixels[..., 0].std() > 0 and (pixels[..., 0] != pixels[..., 2]).any()  # a colour map, not grey


def test_zoom_and_pan_are_shared_by_all_panes_and_keep_hu_exact(watched: Any, tiny_page: Path, tiny) -> None:
    watched.open(tiny_page)
    page = watched.page
    box = page.locator(".ldctv-canvas").nth(2).bounding_box()
    # ctrl+wheel zooms around the cursor: the voxel under it stays under it
    page.mouse.move(box["x"] + 10.5 * 4, box["y"] + 50.5 * 4)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    assert page.locator(".ldctv-zoom").inner_text() == "zoom 1.56×"
    page.mouse.move(box["x"] + 10.5 * 4 + 1, box["y"] + 50.5 * 4)
    assert page.locator(".ldctv-cursor").inner_text() == "x 10, y 50"
    # one screen pixel is now 1/(4·1.5625) voxel: 25 pixels to the right is 4 voxels
    page.mouse.move(box["x"] + 10.5 * 4 + 1 + 25, box["y"] + 50.5 * 4)
    assert page.locator(".ldctv-cursor").inner_text() == "x 14, y 50"
    assert _readouts(page) == _expected_hu(tiny, 0, 14, 50)
    # left-drag pans every pane: the same screen point on another pane shows the moved voxel
    page.mouse.down()
    page.mouse.move(box["x"] + 10.5 * 4 + 1 + 25 + 50, box["y"] + 50.5 * 4, steps=3)
    page.mouse.up()
    first = page.locator(".ldctv-canvas").nth(0).bounding_box()
    page.mouse.move(first["x"] + 10.5 * 4 + 1 + 25 + 50, first["y"] + 50.5 * 4)
    assert page.locator(".ldctv-cursor").inner_text() == "x 14, y 50"
    shots = [_canvas_pixels(page, slot) for slot in (1, 2)]
    page.keyboard.press("0")
    assert page.locator(".ldctv-zoom").inner_text() == "zoom 1.00×"
    assert not np.array_equal(shots[0], _canvas_pixels(page, 1))


def test_two_viewers_on_one_page_are_independent(watched: Any, tiny, tmp_path: Path) -> None:
    first = viewer_html(tiny.panes[:1], tiny.slices, None, "first")
    metrics = {preset: {"model": by_pane["model"]} for preset, by_pane in tiny.metrics.items()}
    second = viewer_html(tiny.panes[1:], tiny.slices, metrics, "second", reference="full")
    page_file = tmp_path / "two.html"
    page_file.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><h1>report</h1>{first}"
                         f"<p>text between</p>{second}</body></html>", encoding="utf-8")
    watched.open(page_file)
    page = watched.page
    roots = page.locator(".ldctv")
    assert roots.count() == 2
    roots.nth(1).focus()
    page.keyboard.press("End")
    assert [roots.nth(i).get_attribute("data-slice") for i in (0, 1)] == ["0", "3"]
    assert roots.nth(0).locator(".ldctv-pane:not([hidden])").count() == 1
    assert roots.nth(1).locator(".ldctv-pane:not([hidden]) .ldctv-psnr").all_inner_texts() == ["PSNR – dB", "reference"]
