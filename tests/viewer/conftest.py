"""Fixtures for the viewer tests: a tiny series with known HU and metrics, and a real headless Chromium.

Without Playwright or Chromium the browser tests FAIL, saying what is missing, unless
``LDCT_CLIP_NO_BROWSER=1`` is set, in which case they are skipped with that reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dicom_factory import phantom_hu  # importable because tests/conftest.py puts tests/ on sys.path
from viewer_browser import NO_BROWSER_VARIABLE, WatchedPage, missing_browser, open_browser

from ldct_clip.viewer import Pane, SliceLabel


@pytest.fixture(scope="session")
def browser_context() -> Iterator[Any]:
    """One Chromium for the whole session (start-up costs about a second)."""
    reason = missing_browser()
    if reason:
        if os.environ.get(NO_BROWSER_VARIABLE) == "1":
            pytest.skip(f"BROWSER TESTS NOT RUN: {reason} ({NO_BROWSER_VARIABLE}=1)")
        pytest.fail(f"browser tests need a browser: {reason}; set {NO_BROWSER_VARIABLE}=1 to skip them knowingly",
                    pytrace=False)
    with open_browser() as context:
        yield context


@pytest.fixture
def watched(browser_context: Any) -> Iterator[WatchedPage]:
    """A fresh page; the test fails if the page logged a console error or raised."""
    page = WatchedPage(browser_context)
    yield page
    page.page.close()
    assert page.errors == [], f"console errors or page errors: {page.errors}"


class TinySeries:
    """4 slices of 64×64: low dose, one method and full dose with fractional HU, slice labels and metrics."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self.full = phantom_hu(4, 64, 64) + rng.uniform(-0.4, 0.4, (4, 64, 64)).astype(np.float32)
        self.low = self.full + rng.normal(0, 40, self.full.shape).astype(np.float32)
        self.model = self.full + rng.normal(0, 6, self.full.shape).astype(np.float32)
        self.panes = [Pane("low", "Low dose", self.low), Pane("model", "CLIPDenoising", self.model),
                      Pane("full", "Full dose", self.full)]
        self.slices = [SliceLabel(10 + i, 100.0 + 2.5 * i, "TEST001") for i in range(4)]
        self.metrics = {
            "clipdenoising": {"low": {"psnr": [31.234, 31.5, 32.0, 33.25], "ssim": [0.81111, 0.82, 0.83, 0.84]},
                              "model": {"psnr": [41.0, 42.125, 43.5, float("nan")], "ssim": [0.9, 0.91, 0.92, 0.93]}},
            "redcnn": {"low": {"psnr": [21.0, 22.0, 23.0, 24.0], "ssim": [0.5, 0.6, 0.7, 0.8]},
                       "model": {"psnr": [25.0, 26.0, 27.567, 28.0], "ssim": [0.61, 0.62, 0.63, 0.64]}},
        }


@pytest.fixture(scope="session")
def tiny() -> TinySeries:
    return TinySeries()


@pytest.fixture(scope="session")
def tiny_page(tiny: TinySeries, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny series as a standalone viewer page."""
    from ldct_clip.viewer import write_viewer

    return write_viewer(tmp_path_factory.mktemp("viewer") / "tiny.html", tiny.panes, tiny.slices, tiny.metrics,
                        "tiny test series", reference="full")
