"""Reads on the hot path, run as statements the driver prepares once per connection."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from sentiment_platform.domain import as_utc

# What a read runs on: a session, or for a request that only reads, a bare connection (the
# API's `ApiParts.reading`), which spares a read the ORM session's own cost.
Reader = AsyncSession | AsyncConnection


# What asyncpg reads PostgreSQL's infinities as, and what the store's text reads give for them.
FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def instant_of_text(text: str) -> datetime:
    """A stored timestamp's text as an aware UTC datetime: PostgreSQL's ('2026-12-03
    18:08:36.5+00', the session's zone is UTC) or SQLite's (naive, UTC).

    `-infinity` and `infinity` read as the calendar's first and last instants, as asyncpg
    reads them (and writes them back, so a cursor keeps its place); so do the instants before
    year 1 ('… BC') and after 9999 that raw SQL alone can store, rather than failing a whole
    page over one row."""
    if text[4:5] == "-" and text[-1:].isdigit():
        return as_utc(datetime.fromisoformat(text))
    if text.startswith("-") or text.endswith("BC"):
        return FIRST_INSTANT
    return LAST_INSTANT


def dialect_name(reader: Reader) -> str:
    """'postgresql' or 'sqlite': the store a session or connection works on."""
    if isinstance(reader, AsyncConnection):
        return reader.dialect.name
    return reader.get_bind().dialect.name


async def ping(reader: Reader) -> None:
    """One round trip: raises when the database cannot answer (the health check)."""
    await reader.execute(text("SELECT 1"))


async def fetch_rows(
    reader: Reader, statement: Any, params: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """The rows of a read-only select, on the reader's connection.

    On PostgreSQL it runs straight on the asyncpg connection, opening no transaction (inside
    the connection's, when one is open): SQLAlchemy's execution path and the BEGIN/ROLLBACK
    it wraps a read in cost a page more CPU than the query itself.

    Errors stay SQLAlchemy's: one the server answers is a `DBAPIError` with its SQLSTATE (a
    statement timeout is an outage: 503); a connection that fails is handed to SQLAlchemy's
    own path, which runs the read again or, seeing a disconnect, invalidates the pool and
    raises its error. The parameters must be what asyncpg takes (aware datetimes, str,
    int): no bind processor runs on this path.
    """
    connection = reader if isinstance(reader, AsyncConnection) else await reader.connection()
    if connection.dialect.driver != "asyncpg":
        return (await connection.execute(statement, params)).all()
    sql, names, fixed = _driver_sql(statement, connection.dialect)
    values = [params[name] if name in params else fixed[name] for name in names]
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None  # a checked-out connection
    try:
        rows: Sequence[Sequence[Any]] = await driver.fetch(sql, *values)
    except TimeoutError:
        raise  # asyncpg's own timeout: the connection is sound; an outage (503)
    except Exception as error:
        if isinstance(error, asyncpg.PostgresError) and not driver.is_closed():
            raise DBAPIError(sql, values, error) from error
        # The connection failed (InterfaceError, OSError, a broken protocol state) or the
        # server ended it (a restart, a terminated backend): SQLAlchemy's path decides.
        return (await connection.execute(statement, params)).all()
    return rows


@cache
def _driver_sql(statement: Any, dialect: Dialect) -> tuple[str, tuple[str, ...], Mapping[str, Any]]:
    """The statement's SQL for asyncpg (`$1`, `$2`, …), its parameters' names in order, and
    the values the statement carries itself (a `literal`)."""
    compiled = statement.compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup or ()), compiled.params


async def write_rows(
    connection: AsyncConnection, statement: Any, params: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """One statement that writes (an UPDATE … RETURNING), on a bare connection, committed
    by itself: a unit of work of one statement needs no session.

    On PostgreSQL it runs as `fetch_rows` does, outside any transaction: the server commits
    the statement alone, one round trip where BEGIN, the statement and COMMIT took three.
    Inside a transaction the caller opened (the tests' rolled-back one), it is the caller's
    to commit. The parameters must be what asyncpg takes (see `fetch_rows`)."""
    if connection.in_transaction():
        return (await connection.execute(statement, params)).all()
    if connection.dialect.driver == "asyncpg":
        rows = await fetch_rows(connection, statement, params)
        if connection.in_transaction():  # fetch_rows fell back to SQLAlchemy's path
            await connection.commit()
        return rows
    async with _writer(connection.engine):
        return await _sqlite_write(connection, statement, params)


async def _sqlite_write(
    connection: AsyncConnection, statement: Any, params: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """The statement and its commit straight on aiosqlite: two trips to its thread, where
    SQLAlchemy's path took five (cursor, execute, fetch, close, commit), each waiting for
    the event loop's turn while holding the one writer's place (`_writer`). The bind
    processors run as SQLAlchemy's would (a timestamp stored as SQLAlchemy stores it)."""
    sql, names, processors, fixed = _sqlite_sql(statement, connection.dialect)
    given = [params[name] if name in params else fixed[name] for name in names]
    values = [
        value if processor is None else processor(value)
        for value, processor in zip(given, processors, strict=True)
    ]
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None  # a checked-out connection
    try:
        rows: Sequence[Sequence[Any]] = await driver.execute_fetchall(sql, values)
        await driver.commit()
    except sqlite3.Error as error:
        await driver.rollback()
        raise DBAPIError.instance(sql, values, error, sqlite3.Error) from error
    return rows


@cache
def _sqlite_sql(
    statement: Any, dialect: Dialect
) -> tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...], Mapping[str, Any]]:
    """The statement's SQL for sqlite3 (`?`), its parameters' names in order, their bind
    processors and the values the statement carries itself."""
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    processors = tuple(compiled.binds[name].type.bind_processor(dialect) for name in names)
    return compiled.string, names, processors, compiled.params


_WRITERS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def _writer(engine: Any) -> asyncio.Lock:
    """SQLite takes one writer at a time, and a connection that finds the file locked sleeps
    and tries again (its busy handler): this process's writes queue here instead."""
    lock = _WRITERS.get(engine.sync_engine)
    if lock is None:
        lock = _WRITERS[engine.sync_engine] = asyncio.Lock()
    return lock
