"""The read endpoints over a seeded store, with exact counts, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from sentiment_platform.domain import Sentiment
from sentiment_platform.models.alerting import Alert
from sentiment_platform.services.analysis.quantification import adjusted_shares, load_confusion
from tests.support.seed import T0, seed

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def seeded(api: httpx.AsyncClient, database) -> httpx.AsyncClient:
    await seed(database[1])
    return api


def iso(delta: timedelta = timedelta()) -> str:
    return (T0 + delta).isoformat()


async def get(client: httpx.AsyncClient, path: str, **params) -> dict:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_posts_newest_first_with_nulls_until_analysed(seeded: httpx.AsyncClient) -> None:
    page = await get(seeded, "/api/posts", limit=3)
    assert page["total"] == 370 and page["limit"] == 3 and page["offset"] == 0
    assert [item["post_id"] for item in page["items"]] == ["p0369", "p0368", "p0367"]
    newest = page["items"][0]
    assert newest["sentiment"] is None and newest["model"] is None and newest["analyzed_at"] is None

    analysed = (await get(seeded, "/api/posts", limit=1, offset=10))["items"][0]
    assert analysed["post_id"] == "p0359"
    assert analysed["sentiment"] == "positive"  # (7 * 359) % 10 == 3
    assert analysed["emotion"] == "neutral" and analysed["model"] == "seed"
    assert analysed["created_at"] == "2026-01-15T11:59:40Z"


async def test_posts_paging_reaches_the_oldest(seeded: httpx.AsyncClient) -> None:
    page = await get(seeded, "/api/posts", limit=10, offset=360)
    assert [item["post_id"] for item in page["items"]] == [f"p{i:04d}" for i in range(9, -1, -1)]


@pytest.mark.parametrize(
    ("params", "total"),
    [
        ({"sentiment_filter": "negative"}, 108),
        ({"sentiment_filter": "positive", "source": "reddit"}, 48),
        ({"source": "twitter"}, 124),
        ({"emotion": "joy"}, 72),
        ({"emotion": "fear"}, 0),
        ({"since": iso(timedelta(hours=1)), "until": iso(timedelta(hours=2))}, 180),
        ({"q": "launch"}, 8),
        ({"q": "LAUNCH", "source": "twitter"}, 3),
        ({"q": "100%"}, 0),
    ],
)
async def test_posts_filters(seeded: httpx.AsyncClient, params: dict, total: int) -> None:
    page = await get(seeded, "/api/posts", limit=100, **params)
    assert page["total"] == total
    assert len(page["items"]) == min(total, 100)
    for key in ("source",):
        if key in params:
            assert {item[key] for item in page["items"]} == {params[key]}
    if "sentiment_filter" in params:
        assert {item["sentiment"] for item in page["items"]} == {params["sentiment_filter"]}


async def test_metrics_counts_percentages_and_every_emotion(seeded: httpx.AsyncClient) -> None:
    body = await get(
        seeded, "/api/metrics", start=iso(), end=iso(timedelta(hours=2)), bucket="minute"
    )
    assert body["total"] == 360
    estimated = adjusted_shares(
        {Sentiment.POSITIVE: 144, Sentiment.NEGATIVE: 108, Sentiment.NEUTRAL: 108},
        load_confusion(),
    )
    assert body["sentiment"] == {
        label: {
            "count": count,
            "percentage": share,
            "estimated_share": round(100 * estimated[label], 2),
            "estimated_interval": None,  # no random labels
        }
        for label, count, share in (
            (Sentiment.POSITIVE, 144, 40.0),
            (Sentiment.NEGATIVE, 108, 30.0),
            (Sentiment.NEUTRAL, 108, 30.0),
        )
    }
    # The confusion undone moves the shares (label shift assumed: README, API).
    assert estimated[Sentiment.NEGATIVE] != 0.3
    assert body["emotion"] == {
        "joy": {"count": 72, "percentage": 20.0},
        "sadness": {"count": 72, "percentage": 20.0},
        "anger": {"count": 72, "percentage": 20.0},
        "fear": {"count": 0, "percentage": 0.0},
        "surprise": {"count": 72, "percentage": 20.0},
        "neutral": {"count": 72, "percentage": 20.0},
    }
    assert body["by_source"] == {
        source: {"total": 120, "positive": 48, "negative": 36, "neutral": 36}
        for source in ("news", "reddit", "twitter")
    }
    timeline = body["timeline"]
    assert len(timeline) == 120
    assert timeline[0] == {
        "bucket_start": "2026-01-15T10:00:00Z",
        "positive": 1,
        "negative": 1,
        "neutral": 1,
        "total": 3,
    }
    assert timeline[-1]["bucket_start"] == "2026-01-15T11:59:00Z"
    assert all(point["total"] == 3 for point in timeline)


async def test_metrics_hour_and_day_buckets(seeded: httpx.AsyncClient) -> None:
    hourly = await get(
        seeded, "/api/metrics", start=iso(), end=iso(timedelta(hours=2)), bucket="hour"
    )
    assert hourly["timeline"] == [
        {
            "bucket_start": "2026-01-15T10:00:00Z",
            "positive": 72,
            "negative": 54,
            "neutral": 54,
            "total": 180,
        },
        {
            "bucket_start": "2026-01-15T11:00:00Z",
            "positive": 72,
            "negative": 54,
            "neutral": 54,
            "total": 180,
        },
    ]
    daily = await get(
        seeded, "/api/metrics", start=iso(), end=iso(timedelta(hours=2)), bucket="day"
    )
    assert [(p["bucket_start"], p["total"]) for p in daily["timeline"]] == [
        ("2026-01-15T00:00:00Z", 360)
    ]


async def test_metrics_sub_range_and_source(seeded: httpx.AsyncClient) -> None:
    body = await get(
        seeded,
        "/api/metrics",
        start=iso(timedelta(minutes=30)),
        end=iso(timedelta(minutes=40)),
        source="news",
    )
    assert body["bucket"] == "minute"
    assert body["total"] == 10  # posts 90..119 with i % 3 == 2
    assert len(body["timeline"]) == 10
    assert sum(point["total"] for point in body["timeline"]) == 10
    assert list(body["by_source"]) == ["news"]


async def test_metrics_window_over_an_empty_recent_past(seeded: httpx.AsyncClient) -> None:
    body = await get(seeded, "/api/metrics", window_minutes=5)
    assert body["total"] == 0
    assert body["sentiment"]["negative"] == {
        "count": 0,
        "percentage": 0.0,
        "estimated_share": 0.0,
        "estimated_interval": None,
    }
    assert set(body["emotion"]) == {"joy", "sadness", "anger", "fear", "surprise", "neutral"}
    assert 5 <= len(body["timeline"]) <= 6
    assert all(point["total"] == 0 for point in body["timeline"])


async def test_alerts_newest_first_with_since(api: httpx.AsyncClient, database) -> None:
    async with database[1]() as session, session.begin():
        session.add_all(
            Alert(
                alert_type="negative_spike",
                message=f"alert {n}",
                severity="warning" if n % 2 else "critical",
                state="firing" if n == 4 else "resolved",  # one open incident per type (0002)
                details={"negative_share": 0.5 + n / 100},
                created_at=T0 + timedelta(minutes=n),
            )
            for n in range(5)
        )
    page = await get(api, "/api/alerts")
    assert page["total"] == 5
    assert [item["message"] for item in page["items"]] == [f"alert {n}" for n in range(4, -1, -1)]
    assert page["items"][0]["details"] == {"negative_share": 0.54}
    recent = await get(api, "/api/alerts", since=iso(timedelta(minutes=3)), limit=1)
    assert recent["total"] == 2 and [i["message"] for i in recent["items"]] == ["alert 4"]
