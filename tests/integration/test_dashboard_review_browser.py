"""The Review panel and the quality card (issue 30, item 6) in a real browser: Debian's
Chromium, headless, against `serve` on the embedded default with an API key.

Analysed posts are sent first; the page draws them at random, the test labels three with
the keys 1, 2 and 3, skips one with s and undoes the last label with u, then checks through
the API that the labels landed (and the undone one did not) and that the quality card
counts them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_dashboard_browser import served_code
from tests.integration.test_dashboard_rules_browser import shot
from tests.support.browser import browser_page, needs_chromium
from tests.support.servers import serve_process

API_KEY = "review-test-key"
POSTS = 12

pytestmark = needs_chromium


def labels(base: str) -> dict[str, str | None]:
    page = httpx.get(f"{base}/api/posts?limit=100", timeout=10).json()
    return {p["post_id"]: (p["label"] or {}).get("sentiment") for p in page["items"]}


@pytest.fixture(scope="module")
def review_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("review-dashboard")
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'dash.db'}",
        "ANALYZER_BACKENDS": "embedded",
        "LOG_LEVEL": "WARNING",
        "API_KEYS": API_KEY,
        **served_code(),
    }
    with serve_process(env, workdir, ready="/readyz") as base:
        posts = [
            {"source": "forum", "content": f"Review post {i}: the delivery was slow, service ok"}
            for i in range(POSTS)
        ]
        response = httpx.post(
            base + "/api/posts", json=posts, headers={"X-API-Key": API_KEY}, timeout=10
        )
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 20
        while len(labels(base)) < POSTS:
            assert time.monotonic() < deadline, "the posts were not analysed"
            time.sleep(0.2)
        yield base


@pytest.fixture
def page(review_server: str) -> Iterator[Any]:
    with browser_page(1280, 800) as (tab, errors):
        tab.set_default_timeout(15_000)
        tab.goto(review_server + "/")
        tab.wait_for_selector("#connection-state[data-state=connected]")
        yield tab
        assert errors == []


def shown_post(page: Any) -> str:
    page.wait_for_selector("#review-text[data-post-id]")
    return str(page.locator("#review-text").get_attribute("data-post-id"))


def press(page: Any, key: str, before: str | None) -> None:
    """Presses a key with the focus on the page body, and waits for the panel to move on."""
    page.keyboard.press(key)
    page.wait_for_function(
        "(before) => { const t = document.querySelector('#review-text');"
        " return !document.querySelector('#review-actions button:disabled[data-action=skip]')"
        " && t.dataset.postId !== before; }",
        arg=before,
    )


def test_review_panel_labels_skips_and_undoes(
    page: Any, review_server: str, tmp_path: Path
) -> None:
    quality = page.locator("#quality-value")
    page.wait_for_function(
        "document.querySelector('#quality-value').textContent.includes('no random labels yet')"
    )
    # Without a key, a write is refused and the panel says so (the post stays).
    first = shown_post(page)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")
    page.wait_for_selector("#review-msg[data-kind=error]")
    assert "API key" in page.locator("#review-msg").inner_text()
    assert shown_post(page) == first
    # Keys typed into a text field do not label.
    page.locator("#api-key").fill(API_KEY)
    page.locator("#api-key").press("2")
    page.locator("#api-key").fill(API_KEY)
    assert labels(review_server)[first] is None
    page.locator("body").click(position={"x": 5, "y": 5})

    done: dict[str, str] = {}
    for key, sentiment in (("1", "negative"), ("2", "neutral"), ("3", "positive")):
        post = shown_post(page)
        press(page, key, post)
        done[post] = sentiment
    skipped = shown_post(page)
    press(page, "s", skipped)
    assert "3 labelled this session" in page.locator("#review-progress").inner_text()
    assert "4 of" in page.locator("#review-progress").inner_text()
    # Undo after a skip goes back to the skipped post and says the skip stays.
    press(page, "u", shown_post(page))
    assert shown_post(page) == skipped
    assert "skip stays" in page.locator("#review-msg").inner_text()
    # Undo again removes the last label (positive) and shows that post again.
    last = list(done)[-1]
    press(page, "u", skipped)
    assert shown_post(page) == last
    assert "removed the positive label" in page.locator("#review-msg").inner_text()
    del done[last]
    assert "2 labelled this session" in page.locator("#review-progress").inner_text()

    stored = labels(review_server)
    for post_id, sentiment in done.items():
        assert stored[post_id] == sentiment
    assert stored[last] is None
    assert stored[skipped] is None
    body = httpx.get(f"{review_server}/api/quality", timeout=10).json()
    assert body["labels"] == 2
    assert body["random_labels"] == 2
    assert body["skipped"] == 1
    assert body["macro_recall"] is not None
    page.wait_for_function("document.querySelector('#quality-counts').dataset.randomLabels === '2'")
    assert "2 random labels" in page.locator("#quality-counts").inner_text()
    assert "1 skipped" in page.locator("#quality-counts").inner_text()
    assert "±" in quality.inner_text() and "%" in quality.inner_text()
    # The headline: counted, and the estimate's note when there is no interval yet.
    page.wait_for_function(
        "document.querySelector('#kpi-negative-headline').textContent.startsWith('counted ')"
    )
    shot(page, tmp_path / "review-dashboard.png", full_page=True)


HEADLINE = """async (m) => {
  const { renderHeadline } = await import('/static/review.js');
  renderHeadline(m);
  const node = document.querySelector('#kpi-negative-headline');
  return [node.textContent, node.getAttribute('title')];
}"""


def test_headline_shows_counted_and_estimated_share(page: Any) -> None:
    """The metrics' fields as the contract names them: an interval gives "estimated Y % (± Z)";
    a null one leaves "counted X %" with the estimate's note as the tooltip."""
    negative = {"count": 40, "percentage": 40.0, "estimated_share": 33.2}
    with_interval = {
        "total": 100,
        "sentiment": {"negative": {**negative, "estimated_interval": [29.0, 37.4]}},
        "estimate": {"method": "pcc", "labels": 250, "model": "embedded", "note": None},
    }
    assert page.evaluate(HEADLINE, with_interval) == [
        "counted 40.0 % · estimated 33.2 % (± 4.2)",
        None,
    ]
    note = "fewer than 200 random labels: counted only"
    without = {
        "total": 100,
        "sentiment": {"negative": {**negative, "estimated_interval": None}},
        "estimate": {"method": None, "labels": 12, "model": "embedded", "note": note},
    }
    assert page.evaluate(HEADLINE, without) == ["counted 40.0 %", note]
    older = {"total": 100, "sentiment": {"negative": {"count": 40, "percentage": 40.0}}}
    assert page.evaluate(HEADLINE, older) == ["counted 40.0 %", None]
