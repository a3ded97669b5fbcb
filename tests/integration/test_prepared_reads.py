"""store.prepared.fetch_rows: the hot reads' direct driver path answers as SQLAlchemy would,
and fails as SQLAlchemy would (its error, its SQLSTATE, its pool invalidation)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Integer, bindparam, literal, select, text
from sqlalchemy.exc import DBAPIError, SAWarning

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory
from sentiment_platform.models.database import SocialMediaPost
from sentiment_platform.store.prepared import fetch_rows
from tests.support.app_client import app_client
from tests.support.databases import TEST_DATABASE_URL

pytestmark = pytest.mark.asyncio


async def test_rows_and_parameters_are_the_same_as_sqlalchemys(database) -> None:
    _, session_factory = database
    statement = select(
        literal(7).label("seven"),
        bindparam("word", type_=SocialMediaPost.source.type),
        bindparam("n", type_=Integer) + 1,
    )
    async with session_factory() as session:
        direct = await fetch_rows(session, statement, {"word": "tweet", "n": 41})
        through = (await session.execute(statement, {"word": "tweet", "n": 41})).all()
    assert [tuple(row) for row in direct] == [tuple(row) for row in through] == [(7, "tweet", 42)]


async def test_a_server_error_is_a_dbapi_error_with_its_sqlstate(database) -> None:
    settings, session_factory = database
    if settings.is_sqlite:
        pytest.skip("SQLite divides by zero into NULL")
    statement = select(literal(1) / bindparam("zero", type_=Integer))
    async with session_factory() as session:
        with pytest.raises(DBAPIError) as raised:
            await fetch_rows(session, statement, {"zero": 0})
    assert raised.value.orig.sqlstate == "22012"  # division_by_zero: a bug, not an outage


@pytest.mark.postgres
@pytest.mark.parametrize("reader", ["session", "connection"])
@pytest.mark.parametrize("when", ["between-reads", "mid-read"])
async def test_a_killed_connection_is_invalidated_and_the_next_read_works(
    postgres, when: str, reader: str
) -> None:
    """Killed between two reads, asyncpg meets the end at its next write; killed in the middle
    of one, the error is a PostgresError on a closed connection. Either way the read fails
    as SQLAlchemy's disconnect, the pool renews the connection, the next read works — on a
    session and on a bare connection (`ApiParts.reading`) alike."""
    await postgres.get()  # the migrated test database
    engine = create_engine(Settings(database_url=TEST_DATABASE_URL, db_pool_size=1))
    session_factory = create_session_factory(engine)
    opened = session_factory if reader == "session" else engine.connect
    killer = create_engine(Settings(database_url=TEST_DATABASE_URL))
    pid = select(text("pg_backend_pid()"))

    async def kill(backend: int, after_s: float = 0) -> None:
        await asyncio.sleep(after_s)
        async with killer.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})

    try:
        async with opened() as first:
            [(backend,)] = await fetch_rows(first, pid, {})
        # Between reads: killed before the next one starts; mid-read: 0.3 s into a 1 s read.
        killing = asyncio.create_task(kill(backend, after_s=0.3 if when == "mid-read" else 0))
        if when == "between-reads":
            await killing
        with pytest.raises(DBAPIError) as raised:
            async with opened() as again:  # the pool hands back that connection
                await fetch_rows(again, select(text("pg_sleep(1)")), {})
        await killing
        assert raised.value.connection_invalidated, raised.value
        async with opened() as renewed:
            [(fresh,)] = await fetch_rows(renewed, pid, {})
        assert fresh != backend
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
        await killer.dispose()


@pytest.mark.postgres
async def test_the_apis_reads_give_every_bare_connection_back_to_the_pool(
    postgres, recwarn: pytest.WarningsRecorder
) -> None:
    """Pages, their totals and metrics read on connections from the app's own pool
    (`ApiParts.reading`, not the tests' shared connection): many at once, more than the pool
    holds, and every connection and gate permit is back afterwards, closed, not left to
    the garbage collector (which SQLAlchemy warns of, terminating the connection)."""
    await postgres.get()
    settings = Settings(database_url=TEST_DATABASE_URL, embedded_worker=False, db_pool_size=2)
    paths = [
        "/api/posts?limit=5",
        "/api/posts?sentiment_filter=negative&since=2026-01-01T00:00:30Z",
        "/api/posts?q=delay",
        "/api/metrics?window_minutes=1440",
        "/api/metrics?start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z",
    ]
    async with app_client(settings) as (app, client):
        answers = await asyncio.gather(*(client.get(path) for path in paths * 4))
        assert [answer.status_code for answer in answers] == [200] * len(answers)
        api = app.state.api
        assert api.runtime.engine.pool.checkedout() == 0
        assert api.generic_reads.pool.checkedout() == 0
        assert api.session_gate._value == 2
    assert not [w.message for w in recwarn if issubclass(w.category, SAWarning)]


@pytest.mark.postgres
async def test_the_metrics_read_on_connections_that_plan_once(postgres) -> None:
    """The metrics read runs on its own pool, whose connections plan a prepared statement
    once (generic plans): planned per request, planning was most of a short window's read.
    Every other read keeps PostgreSQL's choice (a text search's plan depends on its pattern)."""
    await postgres.get()
    settings = Settings(database_url=TEST_DATABASE_URL, embedded_worker=False)
    async with app_client(settings) as (app, client):
        api = app.state.api
        for _ in range(3):
            assert (await client.get("/api/metrics?window_minutes=60")).status_code == 200
        assert api.generic_reads.pool.checkedin() == 1  # the metrics were read there
        async with api.generic_reads.connect() as connection:
            assert await connection.scalar(text("SHOW plan_cache_mode")) == "force_generic_plan"
        async with api.runtime.engine.connect() as connection:
            assert await connection.scalar(text("SHOW plan_cache_mode")) == "auto"
