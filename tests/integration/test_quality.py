"""`GET /api/quality` (issue 30) on a store whose labels are chosen: exact confusion, recall,
accuracy and shares, the model the figures are for, and filters; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from tests.support.seed import T0

pytestmark = pytest.mark.asyncio

N, U, P = Sentiment.NEGATIVE, Sentiment.NEUTRAL, Sentiment.POSITIVE
# (label, prediction) of the newer model's posts: confusion rows (label) × columns (prediction)
#   negative: 3 1 0 · neutral: 1 2 1 · positive: 0 0 2
NEW = [(N, N), (N, N), (N, N), (N, U), (U, U), (U, U), (U, P), (U, N), (P, P), (P, P)]
OLD = [(N, P), (N, P), (U, U), (P, P)]  # an older model, analysed an hour before


async def _store(sessions) -> dict[str, str]:
    """The posts; returns post_id → the label to give it."""
    posts, analyses, labels = [], [], {}
    for model, pairs, analysed in (("m-new", NEW, T0 + timedelta(hours=1)), ("m-old", OLD, T0)):
        for i, (label, prediction) in enumerate(pairs):
            post_id = f"{model}-{i}"
            source = "news" if i % 2 else "forum"
            posts.append(Post(post_id=post_id, source=source, content=post_id, created_at=T0))
            analyses.append(
                Analysis(post_id, prediction, 0.7, Emotion.NEUTRAL, 0.5, model, analysed)
            )
            labels[post_id] = label.value
    posts.append(Post(post_id="chosen", source="news", content="picked by hand", created_at=T0))
    analyses.append(Analysis("chosen", N, 0.7, Emotion.NEUTRAL, 0.5, "m-new", analysed))
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    return labels


async def test_no_random_labels_no_figures(api, database) -> None:
    await _store(database[1])
    await api.put("/api/posts/chosen/label", json={"sentiment": "negative"})
    answer = await api.get("/api/quality")
    assert answer.status_code == 200
    assert answer.json() == {
        "labels": 1,
        "random_labels": 0,
        "skipped": 0,
        "macro_recall": None,
        "macro_recall_interval": None,
        "accuracy": None,
        "confusion": None,
        "share_true": None,
        "share_predicted": None,
        "model": None,
        "compared": 0,
        "models": {},
    }


async def test_quality_from_chosen_random_labels(api, database) -> None:
    labels = await _store(database[1])
    drawn = (await api.get("/api/review", params={"limit": 100})).json()["items"]
    assert len(drawn) == len(labels) + 1  # every analysed post: the store is small
    for post_id, label in labels.items():
        answer = await api.put(f"/api/posts/{post_id}/label", json={"sentiment": label})
        assert answer.status_code == 200
    answer = (await api.get("/api/quality")).json()
    assert answer["labels"] == answer["random_labels"] == 14
    assert answer["models"] == {"m-new": 10, "m-old": 4}
    assert answer["model"] == "m-new" and answer["compared"] == 10  # the newest analysed
    assert answer["confusion"] == {
        "negative": {"negative": 3, "neutral": 1, "positive": 0},
        "neutral": {"negative": 1, "neutral": 2, "positive": 1},
        "positive": {"negative": 0, "neutral": 0, "positive": 2},
    }
    assert answer["accuracy"] == 70.0
    assert answer["macro_recall"] == 75.0  # (3/4 + 2/4 + 2/2) / 3
    low, high = answer["macro_recall_interval"]
    assert 0 <= low < 75.0 < high <= 100
    assert answer["share_true"] == {"negative": 40.0, "neutral": 40.0, "positive": 20.0}
    assert answer["share_predicted"] == {"negative": 40.0, "neutral": 30.0, "positive": 30.0}
    assert answer["skipped"] == 0

    old = (await api.get("/api/quality", params={"model": "m-old"})).json()
    assert old["model"] == "m-old" and old["compared"] == 4
    assert old["accuracy"] == 50.0 and old["macro_recall"] == round(100 * 2 / 3, 2)

    news = (await api.get("/api/quality", params={"source": "news"})).json()
    assert news["random_labels"] == 7  # odd i: 5 of the newer model's, 2 of the older's
    later = await api.get("/api/quality", params={"since": (T0 + timedelta(minutes=1)).isoformat()})
    assert later.json()["labels"] == 0


async def test_quality_query_is_validated(api, database) -> None:
    bad = await api.get(
        "/api/quality", params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "until"]
    unknown = await api.get("/api/quality", params={"window": 5})
    assert unknown.status_code == 422
