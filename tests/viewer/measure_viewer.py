"""Measure the viewer on a clinical-size series and take the docs' screenshots (run by hand, not a test).

    .venv/bin/python tests/viewer/measure_viewer.py [--screenshots docs/images]

Data: the demo's three real 512×512 CT slices from pydicom's test data (``ldct_clip.demo.demo_volume``), a
simulated quarter dose of them (``ldct_clip.simulate.simulate_low_dose``), the TV baseline on that, and a
Gaussian-smoothed copy as a second "method"; the three slices are repeated to 64 (each slice is packed on
its own, so size and decoding time are those of 64 such slices). Prints the page size, the time to build
it, and the time Chromium takes from opening the file to having decoded every slice.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from viewer_browser import WatchedPage, open_browser

from ldct_clip.demo import DOSE, demo_volume
from ldct_clip.evaluation import denoise_tv
from ldct_clip.metrics import score_slices
from ldct_clip.simulate import simulate_low_dose
from ldct_clip.viewer import Pane, SliceLabel, write_viewer


def _series(size: int, filter_name: str = "ramp") -> tuple[list[Pane], np.ndarray]:
    volume = demo_volume("DEMO01", size)
    full = volume.hu
    low = simulate_low_dose(full, volume.spacing[1], DOSE, seed=0, filter_name=filter_name)
    body = full > -500
    print(f"simulated low dose ({filter_name} filter): noise SD {np.std((low - full)[body]):.0f} HU in the body")
    tv = denoise_tv(low).astype(np.float32)
    smooth = ndimage.gaussian_filter(low, (0, 1.0, 1.0)).astype(np.float32)
    return [Pane("low", "Low dose (simulated 25 %)", low), Pane("tv", "TV baseline", tv),
            Pane("smooth", "Gaussian σ 1 px", smooth), Pane("full", "Full dose", full)], full


def _metrics(panes: list[Pane], full: np.ndarray) -> dict:
    return {preset: {p.key: {k: v.tolist() for k, v in score_slices(p.hu, full, preset).items()} for p in panes[:-1]}
            for preset in ("clipdenoising", "redcnn")}


def measure(folder: Path, filter_name: str, slices: int = 64) -> None:
    panes, full = _series(512, filter_name)
    order = np.arange(slices) % full.shape[0]
    big = [Pane(p.key, p.label, p.hu[order]) for p in panes]
    labels = [SliceLabel(i, 1.0 * i, "DEMO01") for i in range(slices)]
    start = time.perf_counter()
    page_file = write_viewer(folder / "big.html", big, labels, None, "64 × 512 × 512, 4 panes", reference="full")
    build = time.perf_counter() - start
    size = page_file.stat().st_size
    raw = 2 * len(big) * big[0].hu.size
    print(f"page: {size / 1e6:.1f} MB for {slices} slices × 4 panes of 512×512 "
          f"({size / raw:.0%} of the raw int16 data, {size / len(big) / slices / 1e3:.0f} kB per slice and pane); "
          f"built in {build:.1f} s")
    with open_browser() as context:
        for attempt in range(2):
            watched = WatchedPage(context)
            start = time.perf_counter()
            watched.open(page_file, timeout_ms=120_000)
            wall = time.perf_counter() - start
            load_ms = watched.page.locator(".ldctv").get_attribute("data-load-ms")
            print(f"open #{attempt + 1}: all slices decoded {int(load_ms) / 1000:.1f} s after navigation "
                  f"(wall {wall:.1f} s); errors: {watched.errors or 'none'}")
            watched.page.close()


def _save(png: bytes, path: Path) -> None:
    """Palette PNG (128 colours): the docs' screenshots stay small."""
    Image.open(io.BytesIO(png)).convert("RGB").quantize(128).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size / 1e3:.0f} kB")


def screenshots(folder: Path, out: Path) -> None:
    panes, full = _series(512, "hann")
    shown = [panes[0], panes[1], panes[3]]
    labels = [SliceLabel(i, 1.0 * i, "DEMO01") for i in range(full.shape[0])]
    page_file = write_viewer(folder / "shots.html", shown, labels, _metrics(shown, full), "DEMO01 (demo data)",
                             reference="full")
    out.mkdir(parents=True, exist_ok=True)
    with open_browser(width=1240, height=620) as context:
        watched = WatchedPage(context)
        watched.open(page_file)
        page, root = watched.page, watched.page.locator(".ldctv")
        page.keyboard.press("End")
        box = page.locator(".ldctv-canvas").nth(1).bounding_box()
        page.mouse.move(box["x"] + 0.45 * box["width"], box["y"] + 0.55 * box["height"])
        _save(root.screenshot(), out / "viewer-abdomen.png")
        page.locator("button.ldctv-window[data-window='bone']").click()
        page.locator(".ldctv-diff").select_option(label="TV baseline − Full dose")
        page.locator(".ldctv-diff-range").fill("200")
        page.locator(".ldctv-diff-range").press("Enter")
        page.mouse.move(box["x"] + 0.45 * box["width"], box["y"] + 0.55 * box["height"])
        _save(root.screenshot(), out / "viewer-bone-difference.png")
        page.locator("button.ldctv-window[data-window='abdomen']").click()
        page.locator(".ldctv-diff").select_option("-1")
        page.keyboard.press("Home")
        for _ in range(3):
            page.keyboard.press("+")
        page.keyboard.press(" ")
        page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
        _save(root.screenshot(), out / "viewer-zoom-flip.png")
        assert watched.errors == [], watched.errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, help="folder for viewer-*.png (e.g. docs/images)")
    parser.add_argument("--no-measure", action="store_true", help="only take the screenshots")
    parser.add_argument("--filter", default="ramp", help="FBP filter of the simulated low dose: ramp (finest, "
                        "noisiest texture) or a smoother skimage filter such as hann")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_measure:
            measure(Path(folder), args.filter)
        if args.screenshots:
            screenshots(Path(folder), args.screenshots)


if __name__ == "__main__":
    main()
