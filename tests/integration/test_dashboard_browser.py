"""The dashboard in a real browser: Debian's Chromium, headless, against `serve --demo`.

It waits for the live feed and the three charts to fill, then saves a screenshot and checks
that what a person would see is there: feed items, and charts with ink on their canvases.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import sentiment_platform
from tests.support.servers import serve_process

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHARTS = ("#timeline-chart", "#sentiment-chart", "#emotion-chart")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INKED = """selector => {
  const canvas = document.querySelector(selector);
  const { width, height } = canvas;
  if (!width || !height) return 0;
  const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  let inked = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
  return inked;
}"""


def served_code() -> dict[str, str]:
    """`serve` runs the code (and the web/ files) these tests import, not another checkout's."""
    return {"PYTHONPATH": str(Path(sentiment_platform.__file__).resolve().parents[1])}


pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
        "ANALYZER_BACKENDS": "embedded",
        "LOG_LEVEL": "WARNING",
        **served_code(),
    }
    with serve_process(env, tmp_path, "--demo", ready="/readyz") as base:
        yield base


def test_dashboard_fills_with_live_data(demo_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(demo_server + "/")
            page.wait_for_selector("#connection-state[data-state=connected]", timeout=20_000)
            page.wait_for_function(
                "document.querySelectorAll('#feed .feed-item').length >= 10", timeout=30_000
            )
            for chart in CHARTS:
                page.wait_for_function(f"({INKED})('{chart}') > 500", timeout=30_000)
            feed = page.locator("#feed .feed-item")
            first = feed.first
            assert first.get_attribute("data-sentiment") in ("positive", "negative", "neutral")
            assert first.locator(".text").inner_text().strip()
            assert page.locator("#kpi-total").inner_text().strip() not in ("", "—", "0")
            screenshot = tmp_path / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert errors == []
        finally:
            browser.close()
    image = screenshot.read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 50_000
