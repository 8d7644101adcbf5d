"""Save a PNG of the first screen of an HTML file, as shown by headless Chromium.

Usage: python docs/screenshot.py REPORT.html OUTPUT.png
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import open_browser  # noqa: E402


def main(page_path: str, output: str) -> None:
    with sync_playwright() as playwright:
        browser = open_browser(playwright)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(Path(page_path).resolve().as_uri())
        page.screenshot(path=output)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
