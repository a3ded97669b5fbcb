"""One time grain: the metrics' buckets, the rollups' cells, the rule counts' minutes and the
SQL expression on SQLite and PostgreSQL all floor an instant where `timegrain.floor` does,
whatever zone the instant was written in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

import pytest
import pytest_asyncio
import sqlalchemy
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from sentiment_platform import store, timegrain
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine
from sentiment_platform.models.database import GRAIN_UNITS, UTCDateTime, bucket_floor_sql
from sentiment_platform.services.reporting.aggregator import Bucket
from sentiment_platform.store import rollups
from sentiment_platform.timegrain import Grain
from tests.support.databases import TEST_DATABASE_URL

ODD_OFFSETS = [
    timedelta(hours=5, minutes=45),  # Nepal
    timedelta(hours=13),
    timedelta(hours=14),
    timedelta(hours=-12),
    timedelta(hours=-9, minutes=-30),
    timedelta(hours=-3, minutes=-30),
    timedelta(minutes=-44, seconds=-30),  # Monrovia until 1972: not a whole minute
]
zones = st.one_of(
    st.none(),  # naive: taken as UTC
    st.sampled_from(sorted(available_timezones())).map(ZoneInfo),
    st.sampled_from(ODD_OFFSETS).map(timezone),
    st.integers(-86_399, 86_399).map(lambda seconds: timezone(timedelta(seconds=seconds))),
)
instants = st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=zones)


def in_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def test_the_grains_are_the_buckets_and_the_rollups_codes() -> None:
    assert list(Bucket) == list(Grain)
    assert all(isinstance(grain, Grain) for grain in GRAIN_UNITS.values())


@settings(max_examples=1000, deadline=None)
@given(instant=instants)
def test_every_floor_in_python_is_timegrain_floor(instant: datetime) -> None:
    utc = in_utc(instant)
    for grain in Grain:
        floored = timegrain.floor(grain, instant)
        assert floored.tzinfo is UTC
        assert floored <= utc < timegrain.next_start(grain, floored)
        assert timegrain.floor(grain, floored) == floored
        assert timegrain.count_in(grain, floored, utc + timedelta(microseconds=1)) == 1
        assert Bucket(grain).floor(instant) == floored
        assert Bucket(grain).next(floored) == timegrain.next_start(grain, floored)
        for coarse in Grain:  # what rollups.GRAINS_FOR relies on
            if timegrain.nests_in(grain, coarse):
                assert timegrain.floor(coarse, floored) == timegrain.floor(coarse, instant)
    for code, grain in GRAIN_UNITS.items():
        floored = timegrain.floor(grain, instant)
        assert rollups.floor(code, instant) == floored
        ceiled = rollups.ceil(code, instant)
        assert ceiled == (floored if floored == utc else timegrain.next_start(grain, floored))
    minute = store.floor_minute(instant)
    assert minute == timegrain.floor(Grain.MINUTE, instant) and minute.tzinfo is UTC
    offset = instant.utcoffset()
    if offset is None or offset % timedelta(minutes=1) == timedelta(0):
        # the rule counts used to floor in the instant's own zone: the same minute
        assert minute == in_utc(instant.replace(second=0, microsecond=0))


def _floors_sql(dialect: str, column: str) -> str:
    return "SELECT " + ", ".join(bucket_floor_sql(dialect, grain, column) for grain in Grain)


@pytest.fixture(scope="module")
def sqlite() -> Iterator[Connection]:
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.connect() as connection:
        yield connection
    engine.dispose()


SQLITE_FLOORS = text(_floors_sql("sqlite", "at") + " FROM (SELECT :at AS at)").bindparams(
    bindparam("at", type_=UTCDateTime)
)


@settings(max_examples=500, deadline=None)
@given(instant=instants)
def test_the_sql_floor_on_sqlite_is_timegrain_floor(sqlite: Connection, instant: datetime) -> None:
    written = sqlite.execute(SQLITE_FLOORS, {"at": instant}).one()
    # exactly the text UTCDateTime writes, or an upsert would miss the cell it adds to
    expected = [
        timegrain.floor(grain, instant).replace(tzinfo=None).isoformat(" ", "microseconds")
        for grain in Grain
    ]
    assert list(written) == expected


@pytest_asyncio.fixture(scope="module")
async def postgres() -> AsyncIterator[AsyncConnection]:
    """One connection, configured as the platform's engine configures every connection."""
    url = make_url(TEST_DATABASE_URL).set(database="postgres")
    engine = create_engine(Settings(database_url=url.render_as_string(hide_password=False)))
    async with engine.connect() as connection:
        yield connection
    await engine.dispose()


POSTGRES_FLOORS = text(_floors_sql("postgresql", "CAST(:at AS timestamptz)")).bindparams(
    bindparam("at", type_=UTCDateTime)
)


@pytest.mark.postgres
@pytest.mark.asyncio
@settings(max_examples=500, deadline=None)
@given(instant=instants)
async def test_the_sql_floor_on_postgres_is_timegrain_floor(
    postgres: AsyncConnection, instant: datetime
) -> None:
    floored = (await postgres.execute(POSTGRES_FLOORS, {"at": instant})).one()
    assert list(floored) == [timegrain.floor(grain, instant) for grain in Grain]
