"""The dashboard in a real browser: Debian's Chromium, headless, against `serve --demo`.

It waits for the live feed and the three charts to fill, then saves a screenshot and checks
that what a person would see is there: feed items, and charts with ink on their canvases.
Then, over a seeded store, that the language selector and the "unique posts" toggle change
the numbers the page shows as the API counts them (issue 31).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

import sentiment_platform
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from tests.support.browser import browser_page, needs_chromium
from tests.support.languages import seed_languages
from tests.support.servers import serve_process

CHARTS = ("#timeline-chart", "#sentiment-chart", "#emotion-chart")
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


pytestmark = needs_chromium


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
    with browser_page(1400, 1000) as (page, errors):
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
    image = screenshot.read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 50_000


@pytest.fixture
def languages_server(tmp_path: Path) -> Iterator[str]:
    """`serve` over a store of posts in four languages with a copy flood (its counts in
    tests/support/languages.py), made two hours ago: the 24 h view holds all of it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'languages.db'}"

    async def seed() -> None:
        engine = create_engine(Settings(database_url=url))
        try:
            await upgrade_schema(engine)
            await seed_languages(async_sessionmaker(engine), datetime.now(UTC) - timedelta(hours=2))
        finally:
            await engine.dispose()

    asyncio.run(seed())
    env = {"DATABASE_URL": url, "ANALYZER_BACKENDS": "embedded", "LOG_LEVEL": "WARNING"}
    with serve_process({**env, **served_code()}, tmp_path, ready="/readyz") as base:
        yield base


TOTAL_IS = "n => document.querySelector('#kpi-total').textContent.replace(/\\D/g, '') === String(n)"
FEED_IS = """([name, value]) => {
  const items = [...document.querySelectorAll('#feed .feed-item')];
  return items.length > 0 && items.every(item => item.dataset[name] === value);
}"""


def test_language_and_unique_filters_change_the_numbers(
    languages_server: str, tmp_path: Path
) -> None:
    with browser_page(1400, 1000) as (page, errors):
        page.goto(languages_server + "/")
        page.locator("label[for=range-24h]").click()
        page.wait_for_function(TOTAL_IS, arg=1_510, timeout=20_000)
        left_out = page.locator("#kpi-left-out")
        assert left_out.get_attribute("data-unanalysed") == "100"
        assert left_out.get_attribute("data-duplicates") == "400"
        assert "100 unanalysed" in left_out.inner_text()
        options = page.locator("#language-filter option")
        assert options.evaluate_all("os => os.map(o => o.value)") == [
            "",
            "de",
            "en",
            "fr",
            "und",
        ]

        page.select_option("#language-filter", "fr")
        page.wait_for_function(TOTAL_IS, arg=200, timeout=10_000)
        page.wait_for_function(FEED_IS, arg=["language", "fr"], timeout=10_000)
        assert page.locator("#feed .feed-item .lang").first.inner_text().lower() == "fr"

        page.select_option("#language-filter", "")
        page.wait_for_function(TOTAL_IS, arg=1_510, timeout=10_000)
        page.locator("#unique-toggle").check()
        page.wait_for_function(TOTAL_IS, arg=1_110, timeout=10_000)
        assert "400 copies left out" in left_out.inner_text()
        page.select_option("#language-filter", "en")
        page.wait_for_function(TOTAL_IS, arg=800, timeout=10_000)
        page.locator("#unique-toggle").uncheck()
        page.wait_for_function(TOTAL_IS, arg=1_200, timeout=10_000)

        # The feed marks copies: the newest twitter posts are copies of o199 and o198.
        page.select_option("#source-filter", "twitter")
        page.wait_for_function(FEED_IS, arg=["source", "twitter"], timeout=10_000)
        first = page.locator("#feed .feed-item").first
        assert first.get_attribute("data-copy-of") == "o199"
        assert first.locator(".copy-of").inner_text() == "copy of o199"
        page.select_option("#source-filter", "news")
        page.select_option("#language-filter", "de")
        page.wait_for_function(FEED_IS, arg=["sentiment", "unread"], timeout=10_000)
        page.screenshot(path=str(tmp_path / "languages.png"), full_page=True)
        assert errors == []
