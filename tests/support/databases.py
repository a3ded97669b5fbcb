"""The throw-away PostgreSQL databases the suite creates, migrates and drops."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/sentiment_test"
)


def scratch_database_url(suffix: str) -> str:
    """A database of its own for a group of tests, beside the suite's throw-away one."""
    url = make_url(TEST_DATABASE_URL)
    return url.set(database=f"{url.database}_{suffix}").render_as_string(hide_password=False)


async def recreate_postgres_database(url: str, create: bool = True) -> None:
    """Drop (and by default create anew) the throw-away test database named in `url`."""
    target = make_url(url)
    admin = await asyncpg.connect(
        host=target.host, port=target.port or 5432, user=target.username, database="postgres"
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        if create:
            await admin.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        await admin.close()


@asynccontextmanager
async def scratch_store(kind: str, directory: Path, name: str) -> AsyncIterator[str]:
    """The URL of a store of one test's own: an SQLite file `name`.db in `directory`, or a
    PostgreSQL database `<suite's>_<name>`, created anew and dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / f'{name}.db'}"
        return
    url = scratch_database_url(name)
    await recreate_postgres_database(url)
    try:
        yield url
    finally:
        await recreate_postgres_database(url, create=False)


class LazyPostgres:
    """The migrated PostgreSQL test database, created on first use (SQLite-only runs skip it)."""

    def __init__(self) -> None:
        self.engine: AsyncEngine | None = None

    async def get(self) -> AsyncEngine:
        if self.engine is None:
            await recreate_postgres_database(TEST_DATABASE_URL)
            self.engine = create_engine(Settings(database_url=TEST_DATABASE_URL))
            await upgrade_schema(self.engine)
        return self.engine
