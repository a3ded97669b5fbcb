"""Timestamps and text at the edges: every parser answers ValueError (a 4xx, a bad row, a dead
letter), never OverflowError; NUL is refused in every text field; the clock-skew rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from sentiment_platform.domain import (
    EARLIEST_CREATED_AT,
    MAX_CLOCK_SKEW,
    Post,
    as_utc,
    parse_iso_8601,
    utcnow,
)
from sentiment_platform.store.post_items import _api_stamp, _api_stamp_of
from sentiment_platform.store.prepared import instant_of_text

EDGES = [
    "9999-12-31T23:59:59-05:00",  # past 9999-12-31 in UTC
    "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
    "0001-01-01T04:59:59.999999+05:00",
]


@pytest.mark.parametrize("text", EDGES)
def test_out_of_range_once_in_utc_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="between 0001-01-01 and 9999-12-31"):
        parse_iso_8601(text)
    with pytest.raises(ValueError, match="between 0001-01-01 and 9999-12-31"):
        as_utc(datetime.fromisoformat(text))


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("9999-12-31T18:59:59-05:00", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("0001-01-01T05:00:00+05:00", datetime(1, 1, 1, tzinfo=UTC)),
        ("2026-01-15T10:00:00", datetime(2026, 1, 15, 10, tzinfo=UTC)),  # naive: taken as UTC
    ],
)
def test_the_calendar_edges_themselves_parse_to_utc(text: str, utc: datetime) -> None:
    parsed = parse_iso_8601(text)
    assert parsed == utc and parsed.tzinfo is UTC


@pytest.mark.parametrize("value", [1_700_000_000, 1.5, None, ["2026-01-01"], "yesterday", ""])
def test_anything_but_iso_text_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_iso_8601(value)


@pytest.mark.parametrize("created_at", EDGES)
def test_a_post_at_the_edge_names_created_at(created_at: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Post.model_validate({"source": "x", "content": "y", "created_at": created_at})
    assert [error["loc"] for error in caught.value.errors()] == [("created_at",)]


def test_created_at_may_run_a_day_ahead_but_no_more() -> None:
    assert timedelta(days=1) == MAX_CLOCK_SKEW
    almost = utcnow() + MAX_CLOCK_SKEW - timedelta(minutes=1)
    assert Post(source="x", content="y", created_at=almost).created_at == almost
    new_york = timezone(timedelta(hours=-5))
    far = (utcnow() + MAX_CLOCK_SKEW + timedelta(minutes=1)).astimezone(new_york)
    with pytest.raises(ValidationError, match="1 day ahead") as caught:
        Post(source="x", content="y", created_at=far)
    assert [error["loc"] for error in caught.value.errors()] == [("created_at",)]


@pytest.mark.parametrize("field", ["post_id", "source", "content", "author"])
def test_nul_is_refused_in_every_text_field(field: str) -> None:
    row = {"source": "x", "content": "y"} | {field: "a\x00b"}
    with pytest.raises(ValidationError, match="NUL") as caught:
        Post.model_validate(row)
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_created_at_may_be_the_epoch_but_not_a_microsecond_before() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert epoch == EARLIEST_CREATED_AT
    assert Post(source="x", content="y", created_at=epoch).created_at == epoch
    for early in (epoch - timedelta(microseconds=1), datetime(1, 1, 1, tzinfo=UTC)):
        with pytest.raises(ValidationError, match="before 1970-01-01") as caught:
            Post(source="x", content="y", created_at=early)
        assert [error["loc"] for error in caught.value.errors()] == [("created_at",)]


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-12-03 18:08:36.5+00", datetime(2026, 12, 3, 18, 8, 36, 500000, tzinfo=UTC)),
        ("0001-01-01 00:00:00+00", datetime(1, 1, 1, tzinfo=UTC)),
        ("2026-12-03 18:08:00.000000", datetime(2026, 12, 3, 18, 8, tzinfo=UTC)),  # SQLite's
        ("-infinity", datetime.min.replace(tzinfo=UTC)),
        ("infinity", datetime.max.replace(tzinfo=UTC)),
        ("0044-03-15 12:00:00+00 BC", datetime.min.replace(tzinfo=UTC)),
        ("10000-01-01 00:00:00+00", datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_a_stored_timestamps_text_reads_as_an_instant(text: str, instant: datetime) -> None:
    assert instant_of_text(text) == instant
    if not text[-1].isdigit() or "+00" in text:  # PostgreSQL's text: the API writes it so
        assert _api_stamp(text) == _api_stamp_of(instant)
