"""`/api/alert-rules` and `/api/alerts/{id}` (issue 14) over the app, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.domain import AlertItem, Analysis, Emotion, Post, Prediction, Sentiment
from sentiment_platform.services.alerting.details import explain_alert
from sentiment_platform.services.alerting.webhooks import enqueue
from tests.support.app_client import app_client

pytestmark = pytest.mark.asyncio

KEY = "rules-test-key-0123456789"
T0 = datetime.fromisoformat("2026-03-01T12:00:00+00:00")
DELAY_RULE = {
    "name": "delays",
    "keywords": ["delay", '"late delivery"'],
    "metric": "negative_share",
    "threshold": 0.5,
    "window_minutes": 5,
    "min_posts": 20,
    "webhook_url": "http://127.0.0.1:9/hook",
    "webhook_secret": "a-real-secret",
}


async def client_for(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings, sessions) as (_, client):
        yield client


@pytest.fixture
async def api(database) -> AsyncIterator[httpx.AsyncClient]:
    settings, sessions = database
    settings = settings.model_copy(update={"webhook_allow_private": True, "max_alert_rules": 3})
    async for client in client_for(settings, sessions):
        yield client


@pytest.fixture
async def keyed(database) -> AsyncIterator[httpx.AsyncClient]:
    settings, sessions = database
    settings = settings.model_copy(
        update={"api_keys": [SecretStr(KEY)], "webhook_allow_private": True}
    )
    async for client in client_for(settings, sessions):
        yield client


def field_of(response: httpx.Response) -> list[object]:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return list(error["loc"])


async def test_create_read_replace_delete(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/alert-rules", json=DELAY_RULE)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["keywords"] == ["delay", "late delivery"] and rule["has_secret"] is True
    assert "webhook_secret" not in rule and "a-real-secret" not in created.text
    assert rule["builtin"] is False and rule["created_at"] and rule["id"] >= 1
    assert rule["webhook_url"] == "http://127.0.0.1:9/…" and rule["has_webhook"] is True

    listed = (await api.get("/api/alert-rules")).json()
    assert [r["id"] for r in listed["items"]] == [0, rule["id"]] and listed["max_rules"] == 3
    assert "a-real-secret" not in str(listed)
    assert (await api.get(f"/api/alert-rules/{rule['id']}")).json() == rule

    # PUT replaces; a secret left out is kept, null removes it.
    renamed = DELAY_RULE | {"name": "delays v2", "threshold": 0.6}
    del renamed["webhook_secret"]
    replaced = await api.put(f"/api/alert-rules/{rule['id']}", json=renamed)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == "delays v2" and replaced.json()["has_secret"] is True
    cleared = await api.put(
        f"/api/alert-rules/{rule['id']}", json=renamed | {"webhook_secret": None}
    )
    assert cleared.json()["has_secret"] is False

    assert (await api.delete(f"/api/alert-rules/{rule['id']}")).status_code == 204
    assert (await api.get(f"/api/alert-rules/{rule['id']}")).status_code == 404
    assert (await api.delete(f"/api/alert-rules/{rule['id']}")).status_code == 404
    assert (await api.put(f"/api/alert-rules/{rule['id']}", json=renamed)).status_code == 404


async def test_the_builtin_rule_is_listed_and_read_only(api: httpx.AsyncClient) -> None:
    builtin = (await api.get("/api/alert-rules/0")).json()
    assert builtin == {
        "id": 0,
        "name": "built-in",
        "keywords": [],
        "source": None,
        "metric": "negative_share",
        "emotion": None,
        "threshold": 0.4,
        "window_minutes": 5,
        "min_posts": 20,
        "webhook_url": None,
        "has_secret": False,
        "has_webhook": False,
        "unique": False,  # the built-in rule counts every copy, as before copies were marked
        "language": None,
        "builtin": True,
        "created_at": None,
        "updated_at": None,
    }
    for response in (
        await api.put("/api/alert-rules/0", json=DELAY_RULE),
        await api.delete("/api/alert-rules/0"),
    ):
        assert response.status_code == 409
        assert "read-only" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"metric": "emotion_share"}, "emotion"),
        ({"metric": "emotion_share", "emotion": "boredom"}, "emotion"),
        ({"keywords": [f"k{i}" for i in range(51)]}, "keywords"),
        ({"window_minutes": 2000}, "window_minutes"),
        ({"min_posts": 0}, "min_posts"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"webhook_url": "http://no-such-host.invalid/x"}, "webhook_url"),
        ({"name": "a\x00b"}, "name"),
    ],
)
async def test_invalid_rules_are_422_naming_the_field(
    api: httpx.AsyncClient, change: dict[str, object], field: str
) -> None:
    assert field_of(await api.post("/api/alert-rules", json=DELAY_RULE | change)) == [
        "body",
        field,
    ]


async def test_private_webhooks_refused_unless_allowed(database) -> None:
    settings, sessions = database
    async for client in client_for(settings, sessions):  # WEBHOOK_ALLOW_PRIVATE=false
        response = await client.post("/api/alert-rules", json=DELAY_RULE)
        assert field_of(response) == ["body", "webhook_url"]
        assert "WEBHOOK_ALLOW_PRIVATE" in response.text


async def test_more_than_max_alert_rules_is_422(api: httpx.AsyncClient) -> None:
    for n in range(3):
        response = await api.post("/api/alert-rules", json=DELAY_RULE | {"name": f"r{n}"})
        assert response.status_code == 201
    refused = await api.post("/api/alert-rules", json=DELAY_RULE)
    assert field_of(refused) == ["body"] and "MAX_ALERT_RULES" in refused.text


async def test_writes_need_the_api_key_when_keys_are_set(keyed: httpx.AsyncClient) -> None:
    assert (await keyed.post("/api/alert-rules", json=DELAY_RULE)).status_code == 401
    assert (await keyed.get("/api/alert-rules")).status_code == 200  # reads need none
    headers = {"X-API-Key": KEY}
    rule_json = DELAY_RULE | {"webhook_url": None}
    created = await keyed.post("/api/alert-rules", json=rule_json, headers=headers)
    assert created.status_code == 201, created.text
    path = f"/api/alert-rules/{created.json()['id']}"
    assert (await keyed.put(path, json=rule_json)).status_code == 401
    assert (await keyed.delete(path)).status_code == 401
    assert (await keyed.delete(path, headers=headers)).status_code == 204


SECRET_URL = "http://127.0.0.1:9/services/T000/B000/XXXXsecret?token=abc"
MASKED = "http://127.0.0.1:9/…"
SPEC_FIELDS = set(DELAY_RULE) | {"source", "emotion"}


def leaks(response: httpx.Response) -> bool:
    return "XXXXsecret" in response.text or "token=abc" in response.text


async def test_webhook_urls_are_masked_for_everyone_while_no_keys_are_set(
    api: httpx.AsyncClient, database
) -> None:
    """No API_KEYS: nobody can present a key, so every answer masks the URL's path and
    query, the create's own answer too, and an alert's detail never shows it."""
    created = await api.post("/api/alert-rules", json=DELAY_RULE | {"webhook_url": SECRET_URL})
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    listed = await api.get("/api/alert-rules")
    one = await api.get(f"/api/alert-rules/{rule_id}")
    with_key = await api.get(f"/api/alert-rules/{rule_id}", headers={"X-API-Key": "anything"})
    assert [r.status_code for r in (listed, one, with_key)] == [200, 200, 200]
    for response in (created, listed, one, with_key):
        assert not leaks(response), response.text
    shown = one.json()
    assert shown["webhook_url"] == MASKED and shown["has_webhook"] is True
    assert listed.json()["items"][1] == shown == with_key.json()

    _, sessions = database
    async with sessions() as session:
        assert (await store.get_rule(session, rule_id)).webhook_url == SECRET_URL  # kept whole
        alert = await store.insert_firing_alert(
            session,
            alert_type=f"rule:{rule_id}",
            severity="warning",
            message="m",
            details={},
            created_at=T0,
        )
        await store.update_alert(session, alert.id, rule_id=rule_id, rule_name="delays")
        await enqueue(session, AlertItem.model_validate(alert), "fire", SECRET_URL, T0)
        await session.commit()
    detail = await api.get(f"/api/alerts/{alert.id}")
    assert detail.status_code == 200 and not leaks(detail)


async def test_only_a_valid_api_key_sees_the_whole_url(database) -> None:
    settings, sessions = database
    settings = settings.model_copy(
        update={
            "api_keys": [SecretStr(KEY)],
            "webhook_allow_private": True,
            "alert_webhook_url": "https://hooks.slack.com/services/T0/B0/XXXXsecret",
        }
    )
    headers = {"X-API-Key": KEY}
    async for client in client_for(settings, sessions):
        body = DELAY_RULE | {"webhook_url": SECRET_URL}
        created = await client.post("/api/alert-rules", json=body, headers=headers)
        assert created.json()["webhook_url"] == SECRET_URL  # the writer holds a key
        path = f"/api/alert-rules/{created.json()['id']}"
        for anonymous in (
            await client.get(path),
            await client.get(path, headers={"X-API-Key": "not-the-key"}),
            await client.get("/api/alert-rules"),
            await client.get("/api/alert-rules/0"),
        ):
            assert anonymous.status_code == 200 and not leaks(anonymous), anonymous.text
        builtin = (await client.get("/api/alert-rules/0")).json()
        assert builtin["webhook_url"] == "https://hooks.slack.com/…" and builtin["has_webhook"]
        assert (await client.get(path, headers=headers)).json()["webhook_url"] == SECRET_URL
        keyed_list = (await client.get("/api/alert-rules", headers=headers)).json()
        assert [r["webhook_url"] for r in keyed_list["items"]] == [
            settings.alert_webhook_url,
            SECRET_URL,
        ]


async def test_a_rule_put_back_with_its_masked_url_keeps_the_stored_one(
    api: httpx.AsyncClient, database
) -> None:
    created = await api.post("/api/alert-rules", json=DELAY_RULE | {"webhook_url": SECRET_URL})
    path = f"/api/alert-rules/{created.json()['id']}"
    shown = (await api.get(path)).json()
    assert shown["webhook_url"] == MASKED
    back = {key: value for key, value in shown.items() if key in SPEC_FIELDS}
    replaced = await api.put(path, json=back | {"name": "delays v2"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["webhook_url"] == MASKED and replaced.json()["name"] == "delays v2"
    assert replaced.json()["has_secret"] is True  # left out: kept
    _, sessions = database
    async with sessions() as session:
        stored = await store.get_rule(session, created.json()["id"])
        assert stored.webhook_url == SECRET_URL and stored.name == "delays v2"

    # A mask that stands for no stored URL (another host, a new rule) is refused.
    other = back | {"webhook_url": "http://127.0.0.2:9/…"}
    assert field_of(await api.put(path, json=other)) == ["body", "webhook_url"]
    refused = await api.post("/api/alert-rules", json=back)
    assert field_of(refused) == ["body", "webhook_url"] and "masked" in refused.text
    # A new URL replaces it as before.
    moved = await api.put(path, json=back | {"webhook_url": "http://127.0.0.1:9/new"})
    assert moved.status_code == 200 and moved.json()["webhook_url"] == MASKED
    async with sessions() as session:
        assert (await store.get_rule(session, created.json()["id"])).webhook_url.endswith("/new")


async def seed_posts(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Background: 40 posts about flights in the previous day; window: 30 negative posts
    about delays and 30 neutral ones."""
    posts, analyses = [], []

    def add(post_id: str, text: str, sentiment: Sentiment, at: datetime) -> None:
        posts.append(Post(post_id=post_id, source="web", content=text, created_at=at))
        prediction = Prediction(sentiment, 0.9, Emotion.NEUTRAL, 0.9, "test")
        analyses.append(Analysis.of(post_id, prediction, analyzed_at=at))

    for i in range(40):
        add(
            f"b{i}",
            f"flight {i} fine, short delay maybe",
            Sentiment.NEUTRAL,
            T0 - timedelta(hours=3),
        )
    for i in range(30):
        add(
            f"n{i}",
            f"huge delay again, furious #{i}",
            Sentiment.NEGATIVE,
            T0 - timedelta(minutes=2),
        )
        add(f"u{i}", f"lovely weather {i}", Sentiment.NEUTRAL, T0 - timedelta(minutes=2))
    async with sessions() as session:
        await store.save_batch(session, posts, analyses)
        await session.commit()


async def test_an_alert_with_its_explanation_and_deliveries(api: httpx.AsyncClient, database):
    settings, sessions = database
    await seed_posts(sessions)
    rule = (await api.post("/api/alert-rules", json=DELAY_RULE)).json()
    async with sessions() as session:
        view = store.rule_view(await store.get_rule(session, rule["id"]))
        details = await explain_alert(session, view, T0)
        # "huge" and "furious" only in the window; "delay" in the background too.
        assert {t["term"] for t in details["terms"][:2]} == {"huge", "furious"}
        alert = await store.insert_firing_alert(
            session,
            alert_type=view.alert_type,
            severity="critical",
            message="negative share 100% over 5 min (30 posts)",
            details={"share": 1.0} | details,
            created_at=T0,
        )
        await store.update_alert(session, alert.id, rule_id=view.id, rule_name=view.name)
        await enqueue(session, AlertItem.model_validate(alert), "fire", view.webhook_url, T0)
        other = await store.insert_firing_alert(
            session,
            alert_type="negative_spike",
            severity="warning",
            message="global",
            details={},
            created_at=T0,
        )
        await session.commit()

    detail = (await api.get(f"/api/alerts/{alert.id}")).json()
    assert detail["rule_id"] == rule["id"] and detail["rule_name"] == "delays"
    terms = {t["term"]: t for t in detail["terms"]}
    assert terms["delay"]["count"] == 30 and terms["delay"]["background_count"] == 40
    assert "weather" not in terms  # not the rule's posts
    assert len(detail["examples"]) == 5
    assert all(
        e["post_id"].startswith("n") and e["sentiment"] == "negative" for e in detail["examples"]
    )
    (delivery,) = detail["deliveries"]
    assert delivery["event"] == "fire" and delivery["attempt"] == 0 and not delivery["done"]

    assert (await api.get("/api/alerts/999999")).status_code == 404
    by_rule = (await api.get("/api/alerts", params={"rule": rule["id"]})).json()
    assert [a["id"] for a in by_rule["items"]] == [alert.id] and by_rule["total"] == 1
    builtin = (await api.get("/api/alerts", params={"rule": 0})).json()
    assert [a["id"] for a in builtin["items"]] == [other.id]
    assert builtin["items"][0]["rule_id"] == 0 and builtin["items"][0]["rule_name"] == "built-in"
    assert (await api.get("/api/alerts")).json()["total"] == 2
