"""The async engine and the one session factory, for PostgreSQL or the embedded SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sentiment_platform.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "models" / "migrations"
POOL_RECYCLE_S = 300
POOL_TIMEOUT_S = 5  # the longest a request waits for a connection before it is told 503


def create_engine(settings: Settings, *, generic_plans: bool = False) -> AsyncEngine:
    """The store's engine. `generic_plans` (PostgreSQL): its connections plan each prepared
    statement once, for a pool whose statements read the same few cells whatever their
    values (the metrics read: `ApiParts.reading`); elsewhere a plan chosen per value matters
    (a text search's pattern)."""
    url = settings.async_database_url
    if settings.is_sqlite:
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=POOL_TIMEOUT_S,
        # No pre-ping: it cost a `SELECT 1` round trip on every checkout (every request). A
        # connection that died (a PostgreSQL restart) fails its request with a 503, and
        # SQLAlchemy, seeing a disconnect, invalidates every connection the pool held before
        # it, so the next checkouts connect afresh; `pool_recycle` retires connections that
        # sat in the pool long enough for a proxy or firewall to have dropped them.
        pool_recycle=POOL_RECYCLE_S,
        connect_args={
            "timeout": 5,
            "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
            "server_settings": {
                "timezone": "UTC",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "sentiment-platform",
                # No parallel plans for requests: on a metrics read over many cells the
                # planner chose two workers, whose start-up cost several times the serial
                # read (8-10 ms against 1.5-3.5 ms; benchmarks/README.md). Operators' bulk
                # commands get them back (`rollups.no_statement_timeout`).
                "max_parallel_workers_per_gather": "0",
            }
            # PostgreSQL plans a prepared statement anew each time while its cost estimated
            # for unknown values is above the plans made for known ones: the metrics read
            # was planned on every request, and planning was most of a short window's read
            # (benchmarks/README.md, "signed cells and plans made once").
            | ({"plan_cache_mode": "force_generic_plan"} if generic_plans else {}),
        },
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the API read while the worker writes; foreign keys are off by default in SQLite."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def upgrade_schema(engine: AsyncEngine) -> None:
    """Apply the Alembic migrations up to head (what `init-db` runs)."""
    async with engine.begin() as connection:
        await connection.run_sync(_alembic_upgrade)


def _alembic_upgrade(connection: Any) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
