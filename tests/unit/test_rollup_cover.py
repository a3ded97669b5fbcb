"""A range read from the rollups as cells added and cells taken away (`rollups.cover`): every
minute of the range counted once and none outside it, no two runs of one grain overlapping
(a row is read by one run at most, so its sign is its run's), never more cells than the
plain cut, and far fewer where an edge fills most of a coarser cell."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sentiment_platform import timegrain
from sentiment_platform.models.database import GRAIN_UNITS
from sentiment_platform.store import rollups

BASE = datetime(2026, 3, 30, 22, 0, tzinfo=UTC)
GRAINS = st.sampled_from([("d", "h", "m"), ("h", "m"), ("m",)])
minutes = st.integers(-3 * 1440, 3 * 1440).map(lambda m: BASE + timedelta(minutes=m))


def cells(runs: Sequence[rollups.Span]) -> int:
    return sum(timegrain.count_in(GRAIN_UNITS[g], low, high) for g, low, high in runs)


@given(minutes, minutes, GRAINS)
def test_every_minute_of_the_range_once_and_none_else(a, b, grains) -> None:
    start, end = min(a, b), max(a, b)
    added, taken = rollups.cover(start, end, grains)
    for grain, low, high in (*added, *taken):
        assert grain in grains and low < high
        assert rollups.floor(grain, low) == low and rollups.floor(grain, high) == high
    for grain in grains:
        runs = sorted((low, high) for g, low, high in (*added, *taken) if g == grain)
        assert all(high <= next_low for (_, high), (next_low, _) in itertools.pairwise(runs))
    probe = start - timedelta(days=2)
    while probe < end + timedelta(days=2):  # each minute's count: added runs less taken ones
        held = sum(low <= probe < high for _, low, high in added)
        held -= sum(low <= probe < high for _, low, high in taken)
        assert held == (1 if start <= probe < end else 0), probe
        probe += timedelta(minutes=7)
    assert cells(added) + cells(taken) <= cells(rollups.pieces(start, end, grains))


def test_an_edge_that_fills_most_of_a_day_is_the_day_less_the_rest() -> None:
    start = datetime(2026, 11, 7, 1, 15, tzinfo=UTC)
    end = datetime(2026, 12, 7, 1, 15, tzinfo=UTC)
    added, taken = rollups.cover(start, end)
    day = timedelta(days=1)
    assert added == (
        ("d", start.replace(hour=0, minute=0), end.replace(hour=0, minute=0)),
        ("h", end.replace(hour=0, minute=0), end.replace(minute=0)),
        ("m", end.replace(minute=0), end),
    )
    assert taken == (
        ("h", start.replace(hour=0, minute=0), start.replace(minute=0)),
        ("m", start.replace(minute=0), start),
    )
    assert cells(added) + cells(taken) == 30 + 1 + 15 + 1 + 15  # the plain cut: 29 + 23 + 60
    assert cells(rollups.pieces(start, end)) == 29 + 23 + 60
    assert added[0][2] - added[0][1] == 30 * day


def test_the_calendars_last_day_is_never_overrun() -> None:
    start = datetime(9999, 12, 30, 23, 59, tzinfo=UTC)
    end = rollups.LATEST + timedelta(hours=5, minutes=7)  # no hour nor day after it to take
    assert rollups.cover(start, end) == (tuple(sorted(rollups.pieces(start, end))), ())


def test_the_rest_of_the_day_is_itself_cut_with_cells_taken_away() -> None:
    start = datetime(2026, 11, 7, 2, 50, tzinfo=UTC)  # the rest: three hours less 10 minutes
    added, taken = rollups.cover(start, datetime(2026, 12, 7, tzinfo=UTC))
    assert added == (
        ("d", datetime(2026, 11, 7, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)),
        ("m", start, start.replace(hour=3, minute=0)),
    )
    assert taken == (("h", datetime(2026, 11, 7, tzinfo=UTC), start.replace(hour=3, minute=0)),)
