"""The grown-up dashboard (issue 14, item 5) in a real browser: Debian's Chromium, headless,
against `serve` on the embedded default with an API key, posts sent by the test.

It creates an alert rule through the page's form (a 401 without the key, a 422 naming the
field, then 201), sends posts, and checks the rule is listed with its state, the source
filter, the 24 h range (the timeline redraws by hour), the search box and deleting the rule.
Screenshots at 1280x800 go to the test's tmp_path (DASHBOARD_SHOTS=DIR keeps copies).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_dashboard_browser import INKED, served_code
from tests.support.browser import browser_page, needs_chromium
from tests.support.servers import serve_process

API_KEY = "dashboard-test-key"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def rules_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("rules-dashboard")
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'dash.db'}",
        "ANALYZER_BACKENDS": "embedded",
        "LOG_LEVEL": "WARNING",
        "API_KEYS": API_KEY,
        "ALERT_CHECK_INTERVAL_S": "1",
        "WEBHOOK_ALLOW_PRIVATE": "true",
        **served_code(),
    }
    with serve_process(env, workdir, ready="/readyz") as base:
        yield base


@pytest.fixture
def page(rules_server: str) -> Iterator[Any]:
    with browser_page(1280, 800) as (tab, errors):
        tab.set_default_timeout(15_000)
        tab.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
        tab.goto(rules_server + "/")
        tab.wait_for_selector("#connection-state[data-state=connected]")
        tab.wait_for_selector("#rules .rule[data-rule-id='0']")  # the built-in rule
        yield tab
        assert errors == []


def send_posts(base: str, posts: list[dict[str, str]]) -> None:
    response = httpx.post(
        base + "/api/posts", json=posts, headers={"X-API-Key": API_KEY}, timeout=10
    )
    assert response.status_code == 202, response.text


def fill_rule(page: Any, **fields: str) -> None:
    for name, value in fields.items():
        locator = page.locator(f"#rule-form [name={name}]")
        if name == "metric":
            locator.select_option(value)
        else:
            locator.fill(value)


def shot(page: Any, path: Path, *, full_page: bool = False) -> None:
    page.screenshot(path=str(path), full_page=full_page)
    keep = os.environ.get("DASHBOARD_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def create_rule_in_page(page: Any, **fields: str) -> int:
    page.locator("#api-key").fill(API_KEY)
    fill_rule(page, **fields)
    page.locator("#rule-submit").click()
    message = page.locator("#rule-form-msg[data-kind=ok]")
    message.wait_for()
    rule_id = int(message.inner_text().split("(id ")[1].split(")")[0])
    page.wait_for_selector(f"#rules .rule[data-rule-id='{rule_id}']")
    return rule_id


def test_dashboard_rules_filters_and_search(page: Any, rules_server: str, tmp_path: Path) -> None:
    word = "zq" + uuid.uuid4().hex[:6]
    # A rule through the form: no key yet (401), then a threshold out of range (422), then 201.
    fill_rule(
        page,
        name="checkout complaints",
        keywords='checkout, "card declined"',
        threshold="1.5",
        webhook_url="http://127.0.0.1:9/hook?token=abc",
    )
    page.locator("#rule-submit").click()
    page.wait_for_selector("#rule-form-msg[data-kind=error]")
    assert "API key" in page.locator("#rule-form-msg").inner_text()
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.locator("#api-key").fill(API_KEY)
    page.locator("#rule-submit").click()
    page.wait_for_function("document.querySelector('#rule-form-msg').textContent.includes('422')")
    assert "threshold" in page.locator("#rule-form-msg").inner_text()
    assert page.locator("#rule-threshold").get_attribute("aria-invalid") == "true"
    assert page.evaluate("sessionStorage.getItem('sentiment.apiKey')") == API_KEY
    page.locator("#rule-threshold").fill("0.5")
    page.locator("#rule-submit").click()
    page.wait_for_selector("#rule-form-msg[data-kind=ok]")
    rule = page.locator("#rules .rule", has_text="checkout complaints")
    rule.wait_for()
    rule_id = rule.get_attribute("data-rule-id")
    page.wait_for_selector(f"#rules .rule[data-rule-id='{rule_id}'][data-state=ok]")
    assert "checkout" in rule.inner_text() and "card declined" in rule.inner_text()
    assert "negative share > 50%" in rule.inner_text()
    # The page reads rules without a key: the webhook is shown, its URL masked (issue 29).
    webhook = rule.locator("span", has_text="webhook")
    assert webhook.get_attribute("title") == "http://127.0.0.1:9/…"
    assert "token=abc" not in page.content()

    # Posts from two sources arrive on the live feed.
    posts = [
        {"source": "forum", "content": f"Post {i} about {word} and the new checkout page"}
        for i in range(6)
    ] + [
        {"source": "reviews", "content": f"Lovely shop, great service, review {i}"}
        for i in range(6)
    ]
    send_posts(rules_server, posts)
    page.wait_for_function(
        "document.querySelectorAll('#feed .feed-item:not([data-sentiment=pending])').length >= 12"
    )
    # The live numbers (over the WebSocket) count them, and the charts draw them.
    page.wait_for_function("Number(document.querySelector('#kpi-total').textContent) >= 12")
    for chart in ("#timeline-chart", "#sentiment-chart", "#emotion-chart"):
        page.wait_for_function(f"({INKED})('{chart}') > 500")
    page.evaluate("scrollTo(0, 0)")
    shot(page, tmp_path / "rules-dashboard-live.png")

    # The source filter: the feed and the metrics show one source.
    page.wait_for_selector("#source-filter option[value=forum]", state="attached")
    page.locator("#source-filter").select_option("forum")
    page.wait_for_function(
        "(() => { const items = [...document.querySelectorAll('#feed .feed-item')];"
        " return items.length === 6 && items.every(i => i.dataset.source === 'forum'); })()"
    )
    page.wait_for_function("document.querySelector('#kpi-total').textContent === '6'")
    page.locator("#source-filter").select_option("")

    # The 24 h range: the timeline redraws by hour, the numbers cover the day.
    page.locator("label[for=range-24h]").click()
    page.wait_for_selector("#timeline-chart[data-bucket=hour]")
    assert int(page.locator("#timeline-chart").get_attribute("data-points")) in (24, 25)
    page.wait_for_function("document.querySelector('#kpi-window').textContent.includes('24 h')")
    page.wait_for_function(f"({INKED})('#timeline-chart') > 500")
    page.wait_for_function("Number(document.querySelector('#kpi-total').textContent) >= 12")
    assert "per hour" in page.locator("#timeline-sub").inner_text()

    # The search box lists the matching posts, only them.
    page.locator("#search").fill(word)
    page.wait_for_selector("#feed[data-mode=search]")
    page.wait_for_function(
        "(() => { const items = [...document.querySelectorAll('#feed .feed-item')];"
        f" return items.length === 6 && items.every(i => i.textContent.includes('{word}')); }})()"
    )
    assert "6 matches" in page.locator("#feed-count").inner_text()
    shot(page, tmp_path / "rules-dashboard-24h-search.png", full_page=True)
    page.locator("#search").fill("")
    page.wait_for_selector("#feed[data-mode=live]")

    # Back to live, then delete the rule (the confirmation is accepted).
    page.locator("label[for=range-live]").click()
    page.wait_for_selector("#timeline-chart[data-bucket=minute]")
    page.locator(f"#rules .rule[data-rule-id='{rule_id}'] button", has_text="Delete").click()
    page.wait_for_selector(f"#rules .rule[data-rule-id='{rule_id}']", state="detached")
    assert httpx.get(f"{rules_server}/api/alert-rules/{rule_id}").status_code == 404


def test_dashboard_renders_an_alert_explanation(
    page: Any, rules_server: str, tmp_path: Path
) -> None:
    """The explanation dialog from a stored-alert shape (the API answers for the alerts are
    stubbed in the browser, so this holds whether or not the monitor evaluates rules yet)."""
    response = httpx.post(
        rules_server + "/api/alert-rules",
        json={"name": "late parcels", "keywords": ["parcel"], "threshold": 0.5, "min_posts": 5},
        headers={"X-API-Key": API_KEY},
    )
    assert response.status_code == 201, response.text
    rule = response.json()
    now = datetime.now(UTC).isoformat()
    alert = {
        "id": 9001,
        "alert_type": f"rule:{rule['id']}",
        "severity": "warning",
        "state": "firing",
        "message": "negative share 62% over 5 min (74 posts)",
        "details": {"share": 0.62},
        "created_at": now,
        "resolved_at": None,
        "rule_id": rule["id"],
        "rule_name": "late parcels",
    }
    post = {
        "source": "forum",
        "author": "ann",
        "created_at": now,
        "sentiment": "negative",
        "confidence": 0.93,
        "emotion": "anger",
        "emotion_confidence": 0.8,
        "model": "embedded",
        "analyzed_at": now,
    }
    detail = {
        **alert,
        "terms": [
            {"term": "parcel", "count": 41, "background_count": 3, "score": 6.2},
            {"term": "lost", "count": 17, "background_count": 1, "score": 4.1},
        ],
        "examples": [
            {**post, "post_id": "p1", "content": "Parcel lost again <b>not bold</b>"},
            {**post, "post_id": "p2", "content": "Where is my parcel? Two weeks late"},
        ],
        "deliveries": [
            {
                "id": 1,
                "event": "fire",
                "created_at": now,
                "done": True,
                "delivered": True,
                "attempt": 2,
                "status": 200,
                "error": None,
                "next_attempt_at": None,
                "attempts": [],
            },
        ],
    }

    def alerts_list(route: Any) -> None:
        mine = f"rule={rule['id']}" in route.request.url or "rule=" not in route.request.url
        route.fulfill(json={"items": [alert], "total": 1} if mine else {"items": [], "total": 0})

    page.route("**/api/alerts?*", alerts_list)
    page.route("**/api/alerts/9001", lambda route: route.fulfill(json=detail))
    page.reload()
    row = page.locator(f"#rules .rule[data-rule-id='{rule['id']}'][data-state=firing]")
    row.wait_for()
    assert "FIRING" in row.inner_text().upper()
    page.wait_for_selector("#alert-banner:not([hidden])")
    assert "late parcels" in page.locator("#alert-banner").inner_text()

    # From the alert list, with the keyboard.
    page.locator("#alerts .alert-open").first.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#alert-dialog[open]")
    dialog.locator("table .kw", has_text="parcel").wait_for()
    text = dialog.inner_text()
    assert "41" in text and "lost" in text and "HTTP 200" in text and "delivered" in text
    examples = dialog.locator("#alert-examples .feed-item")
    assert examples.count() == 2
    assert "<b>not bold</b>" in examples.first.inner_text()  # text, never markup
    shot(page, tmp_path / "rules-dashboard-explanation.png")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    # From the rule's row too.
    row.locator("button", has_text="Why is it firing?").click()
    dialog.locator("table .kw", has_text="parcel").wait_for()
    page.keyboard.press("Escape")
    page.unroute("**/api/alerts?*")
    page.unroute("**/api/alerts/9001")
    httpx.delete(f"{rules_server}/api/alert-rules/{rule['id']}", headers={"X-API-Key": API_KEY})


def test_dashboard_shows_a_rule_firing_and_its_explanation(
    page: Any, rules_server: str, tmp_path: Path
) -> None:
    rule_id = create_rule_in_page(
        page,
        name="delivery delays",
        keywords="delay",
        metric="negative_share",
        threshold="0.5",
        window_minutes="1",
        min_posts="10",
    )
    # 24 people, not one complaint copied (two words apart: a rule made in the form counts
    # each group of copies once).
    negative = [
        {
            "source": "forum",
            "content": f"Awful delay, order {i} from store {100 + i}, I hate it",
        }
        for i in range(24)
    ]
    neutral = [
        {"source": "forum", "content": f"The store opens at nine, post {i}"} for i in range(12)
    ]
    send_posts(rules_server, negative + neutral)
    rule = page.locator(f"#rules .rule[data-rule-id='{rule_id}']")
    deadline = time.monotonic() + 15
    while rule.get_attribute("data-state") != "firing":
        assert time.monotonic() < deadline, "the rule did not fire in the page"
        page.wait_for_timeout(500)
    rule.locator("button", has_text="Why is it firing?").click()
    dialog = page.locator("#alert-dialog[open]")
    dialog.wait_for()
    dialog.locator("table .kw", has_text="delay").first.wait_for()
    assert dialog.locator("#alert-examples .feed-item").count() >= 1
    assert "delay" in dialog.locator("#alert-examples").inner_text().lower()
    shot(page, tmp_path / "rules-dashboard-explanation.png")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
