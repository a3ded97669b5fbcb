"""The read side of languages and copies (issue 31): metrics' `by_language`, `unanalysed`,
`duplicates`, `unique=true` and `language=`; posts and export filtered by language and
carrying `language`, `duplicate_of`, `analysis`; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import httpx
import pytest

from sentiment_platform import store
from sentiment_platform.store import LabelScope
from tests.support.languages import T0, seed_languages

pytestmark = pytest.mark.asyncio

WINDOW = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat(), "bucket": "hour"}


@pytest.fixture
async def seeded(api: httpx.AsyncClient, database) -> httpx.AsyncClient:
    await seed_languages(database[1])
    return api


async def metrics(client: httpx.AsyncClient, **params: object) -> dict:
    response = await client.get("/api/metrics", params={**WINDOW, **params})
    assert response.status_code == 200, response.text
    return response.json()


def counts(body: dict) -> dict[str, int]:
    return {label: share["count"] for label, share in body["sentiment"].items()}


async def test_metrics_count_every_copy_by_default(seeded: httpx.AsyncClient) -> None:
    body = await metrics(seeded)
    # 200 originals + 400 copies + 900 analysed others + 10 from before detection
    assert body["total"] == 1_510
    assert counts(body) == {"positive": 100, "negative": 500, "neutral": 910}
    assert body["sentiment"]["negative"]["percentage"] == round(100 * 500 / 1_510, 2)
    assert body["unanalysed"] == 100  # the German posts: no model reads them
    assert body["duplicates"] == 400
    assert body["by_language"] == {"de": 100, "en": 1_200, "fr": 200, "und": 100}
    # every post that has a language, analysed or not; those from before detection left out
    assert sum(body["by_language"].values()) == body["total"] + body["unanalysed"] - 10
    assert body["unique"] is False and body["language"] is None
    assert body["emotion"]["anger"]["count"] == 500
    assert body["by_source"]["twitter"]["total"] == 600


async def test_unique_counts_each_group_once(seeded: httpx.AsyncClient) -> None:
    body = await metrics(seeded, unique="true")
    assert body["total"] == 1_110
    assert counts(body) == {"positive": 100, "negative": 100, "neutral": 910}
    assert body["duplicates"] == 400  # what `unique` left out, still said
    assert body["by_language"] == {"de": 100, "en": 800, "fr": 200, "und": 100}
    assert body["emotion"]["anger"]["count"] == 100
    assert [point["total"] for point in body["timeline"]] == [1_110]
    assert body["unique"] is True

    flooded = await metrics(seeded, unique="true", source="twitter")
    assert flooded["total"] == 200  # the originals alone
    assert counts(flooded) == {"positive": 100, "negative": 100, "neutral": 0}
    assert flooded["sentiment"]["negative"]["percentage"] == 50.0
    assert flooded["by_source"] == {
        "twitter": {"total": 200, "positive": 100, "negative": 100, "neutral": 0}
    }
    every_copy = await metrics(seeded, source="twitter")
    assert every_copy["sentiment"]["negative"]["percentage"] == round(100 * 500 / 600, 2)


@pytest.mark.parametrize(
    ("language", "total", "unanalysed", "by_language"),
    [
        ("fr", 200, 0, {"fr": 200}),
        ("de", 0, 100, {"de": 100}),
        ("und", 100, 0, {"und": 100}),
        ("EN", 1_200, 0, {"en": 1_200}),  # read as lower case
        ("it", 0, 0, {}),
    ],
)
async def test_metrics_language_filter(
    seeded: httpx.AsyncClient, language: str, total: int, unanalysed: int, by_language: dict
) -> None:
    body = await metrics(seeded, language=language)
    assert body["total"] == total
    assert body["unanalysed"] == unanalysed
    assert body["by_language"] == by_language
    assert body["language"] == language.lower()
    assert sum(point["total"] for point in body["timeline"]) == total
    assert "language=" + language.lower() in body["estimate"]["note"]


async def test_language_and_unique_together(seeded: httpx.AsyncClient) -> None:
    body = await metrics(seeded, language="en", unique="1")
    assert body["total"] == 800 and body["duplicates"] == 400
    assert counts(body) == {"positive": 100, "negative": 100, "neutral": 600}
    note = body["estimate"]["note"]
    assert "each group of copies counted once" in note and "language=en" in note


@pytest.mark.parametrize("bad", ["english", "e", "12", "e1", "xyz", ""])
@pytest.mark.parametrize("path", ["/api/metrics", "/api/posts", "/api/posts/export"])
async def test_bad_language_is_422_naming_it(
    seeded: httpx.AsyncClient, path: str, bad: str
) -> None:
    response = await seeded.get(path, params={"language": bad})
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["query", "language"]]


async def test_bad_unique_is_422_naming_it(seeded: httpx.AsyncClient) -> None:
    response = await seeded.get("/api/metrics", params={"unique": "sometimes"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "unique"]


async def test_posts_carry_language_copy_and_analysis(seeded: httpx.AsyncClient) -> None:
    page = (await seeded.get("/api/posts", params={"limit": 100})).json()
    assert page["total"] == 1_610
    by_id = {item["post_id"]: item for item in page["items"]}
    legacy = by_id["l09"]
    assert legacy["language"] is None and legacy["duplicate_of"] is None
    assert legacy["analysis"] is None and legacy["sentiment"] == "neutral"
    german = next(item for item in page["items"] if item["language"] == "de")
    assert german["analysis"] == "unsupported_language" and german["sentiment"] is None

    copies = (await seeded.get("/api/posts", params={"limit": 3, "source": "twitter"})).json()
    assert [item["post_id"] for item in copies["items"]] == ["c399", "c398", "c397"]
    assert [item["duplicate_of"] for item in copies["items"]] == ["o199", "o199", "o198"]


@pytest.mark.parametrize(
    ("params", "total"),
    [
        ({"language": "fr"}, 200),
        ({"language": "de"}, 100),
        ({"language": "en"}, 1_200),
        ({"language": "en", "source": "twitter"}, 600),
        ({"language": "en", "sentiment_filter": "negative"}, 500),
        ({"language": "fr", "since": (T0 + timedelta(seconds=1201)).isoformat()}, 200),
        ({"language": "und", "q": "other post"}, 100),
        ({"language": "pt"}, 0),
    ],
)
async def test_posts_language_filter(seeded: httpx.AsyncClient, params: dict, total: int) -> None:
    page = (await seeded.get("/api/posts", params={"limit": 100, **params})).json()
    assert page["total"] == total
    assert len(page["items"]) == min(100, total)
    assert {item["language"] for item in page["items"]} <= {params["language"]}
    walked, cursor = 0, None
    while True:  # the cursor pages keep the filter
        query = {"limit": 100, **params, **({"cursor": cursor} if cursor else {})}
        body = (await seeded.get("/api/posts", params=query)).json()
        walked += len(body["items"])
        assert all(item["language"] == params["language"] for item in body["items"])
        if not (cursor := body["next_cursor"]):
            break
    assert walked == total


async def test_export_language_filter_and_columns(seeded: httpx.AsyncClient) -> None:
    response = await seeded.get("/api/posts/export", params={"language": "fr", "format": "jsonl"})
    assert response.status_code == 200, response.text
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert len(rows) == 200
    assert {row["language"] for row in rows} == {"fr"}
    assert {row["duplicate_of"] for row in rows} == {None}

    response = await seeded.get("/api/posts/export", params={"source": "twitter", "format": "csv"})
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert len(table) == 600
    assert {"language", "duplicate_of", "analysis"} <= set(table[0])
    assert sum(1 for row in table if row["duplicate_of"]) == 400
    german = await seeded.get("/api/posts/export", params={"language": "de", "format": "csv"})
    cells = list(csv.DictReader(io.StringIO(german.text)))
    assert len(cells) == 100 and {row["analysis"] for row in cells} == {"unsupported_language"}


async def test_the_estimate_reads_the_labels_of_the_posts_it_counts(
    seeded: httpx.AsyncClient, database
) -> None:
    """Random labels are filtered as the counts are: one language's, or the originals'."""
    drawn = (await seeded.get("/api/review", params={"limit": 100})).json()["items"]
    assert len(drawn) == 100
    for item in drawn:
        response = await seeded.put(
            f"/api/posts/{item['post_id']}/label", json={"sentiment": "neutral"}
        )
        assert response.status_code == 200, response.text
    scopes = {
        LabelScope(language="fr"): [i for i in drawn if i["language"] == "fr"],
        LabelScope(unique=True): [i for i in drawn if i["duplicate_of"] is None],
        LabelScope(language="en", unique=True): [
            i for i in drawn if i["language"] == "en" and i["duplicate_of"] is None
        ],
        LabelScope(): drawn,
    }
    window = (T0, T0 + timedelta(hours=1))
    async with database[1]() as session:
        for scope, expected in scopes.items():
            cells = await store.label_cells(session, scope)
            assert sum(cell.count for cell in cells if cell.random) == len(expected), scope
            # the metrics' estimate reads the label rollups: the same labels, on its model
            params = {"unique": str(scope.unique).lower()}
            params |= {"language": scope.language} if scope.language else {}
            estimate = (await metrics(seeded, **params))["estimate"]
            scope = LabelScope(None, *window, language=scope.language, unique=scope.unique)
            model = [c for c in await store.label_cells(session, scope) if c.random]
            used = sum(c.count for c in model if c.model == estimate["model"])
            assert estimate["labels"] == used > 0, scope
