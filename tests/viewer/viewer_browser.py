"""Drive a real Chromium (Debian's ``chromium`` package) through Playwright for Python, for the viewer tests.

Playwright's own browser download is never used (it needs the network): the system browser is launched by
path. :func:`chromium_path` finds it (``LDCT_CLIP_CHROMIUM`` overrides); :func:`open_browser` starts it
with a fresh profile and the flags that keep it off the network; :class:`WatchedPage` records console
errors and uncaught page errors so a test can require that there were none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
NO_BROWSER_VARIABLE = "LDCT_CLIP_NO_BROWSER"
"""Set to 1 to skip (loudly) the browser tests on a machine without Chromium; CI never sets it."""


def chromium_path() -> str | None:
    """``$LDCT_CLIP_CHROMIUM``, else the first of chromium / chromium-browser / google-chrome on PATH."""
    override = os.environ.get("LDCT_CLIP_CHROMIUM")
    if override:
        return override if Path(override).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_browser() -> str | None:
    """Why no browser test can run here (Playwright or Chromium missing), or None when both are there."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; never 'playwright install')"
    if chromium_path() is None:
        return "no Chromium found (apt-get install chromium, or set LDCT_CLIP_CHROMIUM to its path)"
    return None


@contextmanager
def open_browser(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A Playwright browser context on a fresh, throw-away profile; closed (and the profile deleted) after."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="ldct-clip-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS),
                viewport={"width": width, "height": height}, device_scale_factor=1)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class WatchedPage:
    """A new page of ``context`` whose console errors and page errors are kept in :attr:`errors`."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def open(self, path: Path, timeout_ms: float = 30_000) -> None:
        """Load ``path`` from a file:// URL and wait until every viewer on it has decoded all its slices."""
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function(
            "() => { const v = [...document.querySelectorAll('.ldctv')];"
            " return v.length > 0 && v.every(r => r.dataset.ready === '1' || r.dataset.error); }",
            timeout=timeout_ms)
        failed = self.page.eval_on_selector_all(".ldctv[data-error]", "v => v.map(r => r.dataset.error)")
        assert not failed, f"viewer reported: {failed}"
