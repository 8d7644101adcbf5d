"""Headless Chromium through Playwright, for tests that open pages."""

import shutil

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path():
    """Return the system Chromium, or skip the test when it is not installed."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (Debian package chromium); .ci/run installs it")
    return path


def open_browser(playwright):
    """Launch headless system Chromium with the network features a closed machine lacks turned off."""
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
    )


def broken_images(page) -> list[str]:
    """Return the alt text of every image on the page that did not load."""
    return page.evaluate(
        "Array.from(document.images)"
        ".filter(image => !(image.complete && image.naturalWidth > 0))"
        ".map(image => image.alt)"
    )
