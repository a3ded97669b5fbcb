"""Alert rules' `unique` and `language` (issue 31) through `/api/alert-rules`, and the posts
an alert of such a rule is explained with; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import insert

from sentiment_platform.models.alerting import AlertRule
from sentiment_platform.rule_spec import RuleView
from sentiment_platform.services.alerting.details import explain_alert
from tests.support.languages import T0, seed_languages

pytestmark = pytest.mark.asyncio

RULE = {"name": "complaints", "keywords": ["complaint"], "threshold": 0.5}


async def created(api: httpx.AsyncClient, **fields: object) -> dict:
    response = await api.post("/api/alert-rules", json={**RULE, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_new_rule_counts_each_copy_once_by_default(api: httpx.AsyncClient) -> None:
    rule = await created(api)
    assert rule["unique"] is True and rule["language"] is None
    fetched = (await api.get(f"/api/alert-rules/{rule['id']}")).json()
    assert fetched["unique"] is True and fetched["language"] is None
    every_copy = await created(api, name="volume", unique=False, language="FR")
    assert every_copy["unique"] is False and every_copy["language"] == "fr"
    listed = {item["id"]: item for item in (await api.get("/api/alert-rules")).json()["items"]}
    assert listed[0]["unique"] is False and listed[0]["language"] is None  # the built-in rule
    assert (listed[rule["id"]]["unique"], listed[every_copy["id"]]["language"]) == (True, "fr")


async def test_put_sets_both_and_keeps_unique_when_absent(api: httpx.AsyncClient) -> None:
    rule = await created(api)
    path = f"/api/alert-rules/{rule['id']}"
    changed = (await api.put(path, json={**RULE, "unique": False, "language": "und"})).json()
    assert (changed["unique"], changed["language"]) == (False, "und")
    kept = (await api.put(path, json=RULE)).json()  # no `unique`: kept; no `language`: all
    assert (kept["unique"], kept["language"]) == (False, None)
    assert (await api.get(path)).json()["unique"] is False


async def test_rules_from_before_keep_counting_every_copy(api: httpx.AsyncClient, database) -> None:
    async with database[1]() as session, session.begin():
        values = {**RULE, "metric": "negative_share", "window_minutes": 5, "min_posts": 20}
        await session.execute(insert(AlertRule).values(created_at=T0, updated_at=T0, **values))
    [old] = [item for item in (await api.get("/api/alert-rules")).json()["items"] if item["id"]]
    assert old["unique"] is False and old["language"] is None
    path = f"/api/alert-rules/{old['id']}"
    assert (await api.put(path, json={**RULE, "threshold": 0.6})).json()["unique"] is False


@pytest.mark.parametrize("bad", ["english", "f", "e1", "", 7, "fr "])
@pytest.mark.parametrize("method", ["post", "put"])
async def test_a_bad_language_is_422_naming_it(
    api: httpx.AsyncClient, method: str, bad: object
) -> None:
    rule = await created(api)
    body = {**RULE, "language": bad}
    if method == "post":
        response = await api.post("/api/alert-rules", json=body)
    else:
        response = await api.put(f"/api/alert-rules/{rule['id']}", json=body)
    if bad == "fr ":  # surrounding spaces are stripped, as every field of a rule
        assert response.status_code in (200, 201) and response.json()["language"] == "fr"
        return
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "language"]]


async def test_unique_must_be_a_boolean(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/alert-rules", json={**RULE, "unique": "often"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "unique"]


async def test_an_alert_is_explained_with_the_posts_the_rule_counts(database) -> None:
    """A unique English rule is explained with the originals alone, a French rule with
    French posts."""
    await seed_languages(database[1])
    end = T0 + timedelta(hours=1)
    base = {"id": 1, "name": "r", "keywords": [], "source": None, "metric": "volume"}
    base |= {"emotion": None, "threshold": 2.0, "window_minutes": 60, "min_posts": 1}
    base |= {"webhook_url": None, "has_secret": False}
    async with database[1]() as session:
        unique = RuleView(**base, unique=True, language="en")
        details = await explain_alert(session, unique, end, negative_only=True, max_posts=500)
        assert details["explained_posts"] == 100  # the negative originals
        assert details["examples"] and all(p.startswith("o") for p in details["examples"])
        every = RuleView(**base, unique=False, language="en")
        details = await explain_alert(session, every, end, negative_only=True, max_posts=500)
        assert details["explained_posts"] == 500  # and their 400 copies
        french = RuleView(**(base | {"keywords": ["other"]}), unique=True, language="fr")
        details = await explain_alert(session, french, end, negative_only=False)
        assert details["examples"]
        assert all(int(p[1:]) % 10 in (6, 7) for p in details["examples"])
