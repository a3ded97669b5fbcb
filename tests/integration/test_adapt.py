"""`sentiment-platform adapt` (issue 30) against a real store, SQLite and PostgreSQL, with the
real embedded encoder: posts analysed and labelled (random draws and hand-picked), the
candidate cross-validated, registered, activated only when it wins and asked to, served by
the registry under its own name; too few labels refused."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sentiment_platform import config, store
from sentiment_platform.cli import app
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Analysis, Emotion, Post, PostLabel, Sentiment, utcnow
from sentiment_platform.services.analysis.embedded_backend import load_embedded_backend
from sentiment_platform.services.analysis.model_catalogue import catalogue
from sentiment_platform.services.analysis.registry import embedded_identity, serving_routes
from sentiment_platform.services.analysis.registry_backend import load_registry_backend
from sentiment_platform.services.trust.review import draw_random
from sentiment_platform.store import LabelScope
from tests.support.databases import recreate_postgres_database, scratch_database_url
from tests.support.seed import T0

EMBEDDED = embedded_identity().name  # type: ignore[union-attr]
ADAPTED = EMBEDDED.rsplit("/", 1)[-1] + "-adapted-1"
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


def _complaint(r: random.Random) -> str:
    """A delivery complaint in flat words: the shipped model calls every one neutral."""
    template = r.choice(
        [
            "Order {n} still shows {s} after {d} days",
            "Tracking number {n} has not updated since {w}",
            "Ticket {n} was opened on {w} and is still waiting for a reply",
            "Refund for order {n} is still pending after {d} days",
            "Parcel {n} is still listed as {s} since {w}",
        ]
    )
    status = r.choice(["processing", "in transit", "awaiting dispatch"])
    return template.format(n=r.randint(1000, 99999), s=status, d=r.randint(3, 30), w=r.choice(DAYS))


def _notice(r: random.Random) -> str:
    template = r.choice(
        [
            "The team meetup is on {w} at {h} pm in room {n}",
            "Version {h}.{n} of the app is in the store from {w}",
            "Our office closes at {h} pm on {w}",
            "The newsletter for week {n} goes out on {w}",
        ]
    )
    return template.format(n=r.randint(1, 400), w=r.choice(DAYS), h=r.randint(1, 9))


def _praise(r: random.Random) -> str:
    template = r.choice(
        [
            "Loved the new {t}, great job team!",
            "The {t} is fantastic, thank you so much",
            "Really happy with my {t}, it works great",
        ]
    )
    return template.format(t=r.choice(["headphones", "update", "app", "checkout", "lamp"]))


Labelled = tuple[str, Sentiment, Emotion]


def feed(per_kind: int, seed: int = 0) -> list[Labelled]:
    """A shop's feed as its team labels it: complaints negative and angry (the shipped
    model: neutral, neutral), notices neutral, praise positive and joyful."""
    r = random.Random(seed)
    kinds = [
        (_complaint, Sentiment.NEGATIVE, Emotion.ANGER),
        (_notice, Sentiment.NEUTRAL, Emotion.NEUTRAL),
        (_praise, Sentiment.POSITIVE, Emotion.JOY),
    ]
    return [(make(r), label, feeling) for make, label, feeling in kinds for _ in range(per_kind)]


async def _seed(url: str, rows: list[Labelled], randomly: int, agree: bool) -> None:
    """Store the posts analysed by the embedded model; draw `randomly` of them through the
    review queue's random draw, then label every post: with `rows`' label, or with the
    model's own prediction when `agree`."""
    settings = Settings(database_url=url)
    engine = create_engine(settings)
    await upgrade_schema(engine)
    sessions = create_session_factory(engine)
    backend = load_embedded_backend(settings, threads=2)
    predictions = backend.predict([text for text, _, _ in rows])
    backend.close()
    posts = [
        Post(post_id=f"a{i:04d}", source="shop", content=text, created_at=T0)
        for i, (text, _, _) in enumerate(rows)
    ]
    analyses = [Analysis.of(p.post_id, pr, T0) for p, pr in zip(posts, predictions, strict=True)]
    try:
        async with sessions() as session, session.begin():
            await store.save_batch(session, posts, analyses)
        async with sessions() as session, session.begin():
            drawn = await draw_random(session, LabelScope(), randomly, rng=random.Random(1))
        assert len(drawn) == randomly
        async with engine.connect() as connection:
            for post, (_, label, feeling), prediction in zip(posts, rows, predictions, strict=True):
                given = PostLabel(sentiment=label, emotion=feeling)
                if agree:
                    given = PostLabel(sentiment=prediction.sentiment, emotion=prediction.emotion)
                await store.set_label(connection, post.post_id, given, utcnow())
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """DATABASE_URL and MODELS_DIR of the test's own, as a user's environment sets them."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        url = scratch_database_url("adapt")
        asyncio.run(recreate_postgres_database(url))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    config.get_settings.cache_clear()
    yield url
    config.get_settings.cache_clear()
    if request.param == "postgres":
        asyncio.run(recreate_postgres_database(url, create=False))


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def macro_recalls(output: str, task: str = "sentiment") -> tuple[float, float]:
    """(active, candidate) macro-recall for `task` as `adapt` printed them."""
    lines = output.split(f"{task}: 5-fold cross-validation", 1)[1].splitlines()[1:3]
    pattern = r"(active|candidate) +\S+: macro-recall ([\d.]+), accuracy"
    figures = {m.group(1): float(m.group(2)) for m in map(re.compile(pattern).search, lines) if m}
    return figures["active"], figures["candidate"]


def test_adapt_learns_the_feed_and_activates_when_it_wins(store_url: str) -> None:
    asyncio.run(_seed(store_url, feed(80), randomly=180, agree=False))
    result = run("adapt", "--min-labels", "200", "--activate", "--replay-rows", "400")
    assert result.exit_code == 0, result.output
    assert "labels: 240 (180 random)" in result.output
    assert "sentiment: 5-fold cross-validation on the 180 random labels (240 labels, " in (
        result.output
    )
    active, candidate = macro_recalls(result.output)
    assert active < 70 < 90 < candidate  # every complaint called neutral, then learnt
    e_active, e_candidate = macro_recalls(result.output, "emotion")
    assert e_active < 70 < 90 < e_candidate  # every complaint called neutral, not angry
    assert f"activated {ADAPTED!r} for sentiment and emotion" in result.output

    listed = run("model", "list")
    row = next(line for line in listed.output.splitlines() if ADAPTED in line)
    assert "sentiment (*), emotion (*)" in row and "adapt" in row

    async def served() -> list[tuple[str, str, str]]:
        settings = config.get_settings()
        engine = create_engine(settings)
        backend = load_registry_backend(settings)
        try:
            async with create_session_factory(engine)() as session:
                routes = await serving_routes(session)
                view = await catalogue(session)  # what GET /api/models answers
            item = next(item for item in view.items if item.name == ADAPTED)
            assert item.kind == "adapted" and item.tasks == ["sentiment", "emotion"]
            compared = item.details["cross_validation"]
            assert compared["sentiment"]["candidate"]["macro_recall"] == candidate
            assert compared["emotion"]["candidate"]["macro_recall"] == e_candidate
            assert view.active["sentiment"]["*"] == ADAPTED
            backend.swap(backend.load(routes))
            predictions = backend.predict(
                ["Order 4411 still shows processing after 12 days", "Loved the lamp, great job"]
            )
            return [(p.sentiment.value, p.emotion.value, p.model) for p in predictions]
        finally:
            backend.close()
            await engine.dispose()

    assert asyncio.run(served()) == [("negative", "anger", ADAPTED), ("positive", "joy", ADAPTED)]


def test_no_win_no_activation(store_url: str) -> None:
    """Labels that confirm every prediction leave nothing to learn: the candidate is kept,
    not served; the next run is the next version."""
    asyncio.run(_seed(store_url, feed(70), randomly=150, agree=True))
    result = run("adapt", "--min-labels", "200", "--activate", "--replay-rows", "0")
    assert result.exit_code == 0, result.output
    assert "no replay (--replay-rows 0)" in result.output
    active, candidate = macro_recalls(result.output)
    assert active == 100.0 and candidate <= active
    assert macro_recalls(result.output, "emotion")[0] == 100.0
    kept = "emotion: the candidate does not beat the active head; the head is kept"
    assert kept in result.output
    refused = f"not activated for sentiment: {ADAPTED!r} does not beat {EMBEDDED!r}"
    assert refused in result.output
    row = next(line for line in run("model", "list").output.splitlines() if ADAPTED in line)
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[2] == "sentiment" and cells[-2] == "-"  # registered, active nowhere
    again = run("adapt", "--min-labels", "200", "--replay-rows", "0")
    assert again.exit_code == 0, again.output
    assert f"registered {ADAPTED[:-1] + '2'!r} for sentiment in" in again.output


def test_too_few_labels_refused(store_url: str) -> None:
    asyncio.run(_seed(store_url, feed(20), randomly=10, agree=False))
    result = run("adapt")
    assert result.exit_code == 1, result.output
    assert "adapt needs at least 200 labels (--min-labels); the store holds 60 (10 random)" in (
        result.output
    )
    assert "Traceback" not in result.output
    result = run("adapt", "--min-labels", "50")
    assert result.exit_code == 1, result.output
    assert "adapt needs at least 30 random labels" in result.output
    assert ADAPTED not in run("model", "list").output
