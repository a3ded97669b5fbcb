"""Shared fixtures: the real PostgreSQL and Redis when reachable, SQLite always.

Where a service is unreachable its tests are skipped with a loud warning; with CI=true its
absence fails the run instead, so CI can never pass by skipping the integration tests.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from tests.support.app_client import app_client
from tests.support.databases import (
    TEST_DATABASE_URL,
    LazyPostgres,
    recreate_postgres_database,
)

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


SERVICES = {
    "postgres": _reachable(TEST_DATABASE_URL, 5432),
    "redis": _reachable(TEST_REDIS_URL, 6379),
}


def pytest_configure(config: pytest.Config) -> None:
    missing = [name for name, up in SERVICES.items() if not up]
    if missing and IN_CI:
        raise pytest.UsageError(f"CI=true but {', '.join(missing)} unreachable: start them first")
    for name in missing:
        warnings.warn(
            f"\n\n*** {name.upper()} IS NOT REACHABLE: its integration tests are SKIPPED ***\n",
            stacklevel=1,
        )


def pytest_report_header() -> str:
    return "services: " + ", ".join(
        f"{name}={'up' if up else 'DOWN (tests skipped)'}" for name, up in SERVICES.items()
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name, up in SERVICES.items():
            if not up and item.get_closest_marker(name):
                item.add_marker(pytest.mark.skip(reason=f"{name} is not reachable"))


@pytest_asyncio.fixture(scope="session")
async def postgres() -> AsyncIterator[LazyPostgres]:
    lazy = LazyPostgres()
    yield lazy
    if lazy.engine is not None:
        await lazy.engine.dispose()
        await recreate_postgres_database(TEST_DATABASE_URL, create=False)


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: LazyPostgres
) -> AsyncIterator[tuple[Settings, async_sessionmaker[AsyncSession]]]:
    """Settings and a session factory over a clean store, on SQLite and on PostgreSQL.

    SQLite: a fresh file per test. PostgreSQL: one migrated database, each test inside a
    transaction that is rolled back (the app's commits become savepoints).
    """
    if request.param == "sqlite":
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'test.db'}", embedded_worker=False
        )
        engine = create_engine(settings)
        await upgrade_schema(engine)
        yield settings, async_sessionmaker(engine, expire_on_commit=False)
        await engine.dispose()
        return
    engine = await postgres.get()
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield (
            Settings(database_url=TEST_DATABASE_URL, embedded_worker=False),
            async_sessionmaker(
                bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
            ),
        )
        await transaction.rollback()


@pytest_asyncio.fixture
async def api(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, its lifespan running, its sessions on the test's store."""
    settings, session_factory = database
    async with app_client(settings, session_factory) as (_, client):
        yield client
