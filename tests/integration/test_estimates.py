"""`/api/metrics` estimates with intervals (issue 30): the stratified estimate from the
window's random labels on the counting model's predictions, or, with too few, today's
shipped-matrix figure with no interval and a note saying why; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import numpy as np
import pytest
import pytest_asyncio

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from sentiment_platform.services.analysis.estimation import stratified_estimate
from sentiment_platform.services.analysis.quantification import adjusted_shares
from sentiment_platform.services.reporting.aggregator import shipped_confusion
from tests.support.app_client import app_client
from tests.support.seed import T0

pytestmark = pytest.mark.asyncio

N, U, P = Sentiment.NEGATIVE, Sentiment.NEUTRAL, Sentiment.POSITIVE
# (label, prediction) of the counting model's labelled posts
NEW = [(N, N), (N, N), (N, N), (N, U), (U, U), (U, U), (U, P), (U, N), (P, P), (P, P)]
NEW += [(P, U), (N, N)]
UNLABELLED = [N, N, N, P, P, U, P, N]  # more of its predictions, never labelled
OLD = [(N, P), (N, P), (U, U), (P, P)]  # another model's labelled posts (fewer counts)
WINDOW = {"start": T0.isoformat(), "end": (T0 + timedelta(minutes=5)).isoformat()}


@pytest_asyncio.fixture(params=[10, 13], ids=["enough", "too-few"])
async def client(request, database) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    settings, sessions = database
    settings = settings.model_copy(update={"min_estimate_labels": request.param})
    async with app_client(settings, sessions) as (_, http):
        yield http, request.param


async def _seed_and_label(http: httpx.AsyncClient, sessions) -> dict[str, int]:
    """The posts, all drawn at random, the labelled ones labelled; returns the counts."""
    posts, analyses, labels = [], [], {}
    rows = [("m-new", i, label, pred) for i, (label, pred) in enumerate(NEW)]
    rows += [("m-new", 100 + i, None, pred) for i, pred in enumerate(UNLABELLED)]
    rows += [("m-old", i, label, pred) for i, (label, pred) in enumerate(OLD)]
    for model, i, label, prediction in rows:
        post_id = f"{model}-{i}"
        at = T0 + timedelta(minutes=i % 3)
        posts.append(Post(post_id=post_id, source="news", content=post_id, created_at=at))
        analyses.append(Analysis(post_id, prediction, 0.7, Emotion.NEUTRAL, 0.5, model, at))
        if label is not None:
            labels[post_id] = label.value
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    drawn = (await http.get("/api/review", params={"limit": 100})).json()["items"]
    assert len(drawn) == len(rows)
    for post_id, label in labels.items():
        answer = await http.put(f"/api/posts/{post_id}/label", json={"sentiment": label})
        assert answer.status_code == 200
    counts = {s: 0 for s in Sentiment}
    for _, _, _, prediction in rows:
        counts[prediction] += 1
    return counts


async def test_metrics_estimate(client, database) -> None:
    http, needed = client
    counts = await _seed_and_label(http, database[1])
    answer = (await http.get("/api/metrics", params=WINDOW)).json()
    assert answer["models"] == {"m-new": 20, "m-old": 4}
    index = {s: i for i, s in enumerate(Sentiment)}
    confusion = np.zeros((3, 3), dtype=int)
    for label, prediction in NEW:  # only the counting model's labels
        confusion[index[label], index[prediction]] += 1
    estimate = answer["estimate"]
    assert estimate["labels"] == len(NEW) and estimate["model"] == "m-new"
    if needed <= len(NEW):
        expected = stratified_estimate([counts[s] for s in Sentiment], confusion, n_min=needed)
        assert expected.shares is not None and expected.intervals is not None
        assert estimate["method"] == "stratified"
        assert "12 random labels" in estimate["note"]
        for s in Sentiment:
            shown = answer["sentiment"][s.value]
            assert shown["estimated_share"] == round(100 * expected.shares[index[s]], 2)
            low, high = shown["estimated_interval"]
            assert low == round(100 * expected.intervals[index[s]][0], 2)
            assert high == round(100 * expected.intervals[index[s]][1], 2)
            assert low <= shown["estimated_share"] <= high and low < high
        return
    # 12 random labels of m-new, 4 of m-old: m-old's do not make up the 13 needed
    shipped = shipped_confusion()
    today = adjusted_shares(counts, shipped) if shipped is not None else None
    assert estimate["method"] == ("shipped confusion matrix" if shipped else "counted")
    assert estimate["note"] == "12 random labels for m-new, at least 13 needed for an interval"
    for s in Sentiment:
        shown = answer["sentiment"][s.value]
        assert shown["estimated_interval"] is None
        expected_share = round(100 * today[s], 2) if today is not None else None
        assert shown["estimated_share"] == expected_share


async def test_other_source_and_window_have_no_labels(client, database) -> None:
    http, _ = client
    await _seed_and_label(http, database[1])
    later = {
        "start": (T0 + timedelta(minutes=2)).isoformat(),
        "end": (T0 + timedelta(minutes=5)).isoformat(),
    }
    for params in ({**WINDOW, "source": "forum"}, later):
        answer = (await http.get("/api/metrics", params=params)).json()
        if params.get("source") == "forum":
            assert answer["total"] == 0
            assert answer["estimate"]["labels"] == 0 and answer["estimate"]["model"] is None
            assert answer["estimate"]["note"] == (
                "no analysed posts in the window: nothing to estimate"
            )
        else:  # the posts at T0+2min only: 4 of m-new's labelled posts
            assert answer["estimate"]["labels"] == 4
            assert answer["sentiment"]["negative"]["estimated_interval"] is None
