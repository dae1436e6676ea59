"""Drive the web page in headless Chromium: upload images, wait for verdicts, screenshot.

Used by the browser tests (tests/test_web_browser.py, tests/test_report.py) and to make
docs/screenshot.png:

    aivsreal serve --model runs/fast/model.pt &
    python docs/screenshot.py http://127.0.0.1:8000 docs/screenshot.png IMAGE...
"""

from __future__ import annotations

import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# As root in a container, with no network: no sandbox, no GPU, no background connections.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def capture(url: str, images: list[Path], screenshot: Path | None = None, timeout_ms: int = 60_000) -> list[str]:
    """Upload `images` through the page's file picker; return the verdict texts shown, and for
    each Grad-CAM heat map drawn (the page asks for them by default) its alt text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_selector("#model-body table, #model-body b", timeout=timeout_ms)
            page.set_input_files("#picker", [str(p) for p in images])
            page.wait_for_function(
                "n => document.querySelectorAll('.verdict.REAL, .verdict.FAKE, .verdict.error').length >= n",
                arg=len(images), timeout=timeout_ms)
            verdicts = page.locator(".verdict").all_inner_texts()
            verdicts += page.eval_on_selector_all(
                "img.gradcam", "els => els.filter(e => e.complete && e.naturalWidth > 0).map(e => e.alt)")
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
            return verdicts
        finally:
            browser.close()


def open_report(path: Path, screenshot: Path | None = None) -> dict:
    """Open a report.html from disk: what it asked the network for, and which images failed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            images = page.evaluate("[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
            return {"external_requests": [u for u in requests if not u.startswith(("file:", "data:"))],
                    "images": images, "headings": page.locator("h2").all_inner_texts(),
                    "title": page.title()}
        finally:
            browser.close()


if __name__ == "__main__":
    url, out, *imgs = sys.argv[1:]
    print("\n".join(capture(url, [Path(p) for p in imgs], Path(out))))
