"""`Bucket.fitting` skips counting when a span surely fits; it must pick what counting picks."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sentiment_platform.services.reporting.aggregator import MAX_BUCKETS, Bucket

WIDTH_MINUTES = {Bucket.MINUTE: 1, Bucket.HOUR: 60, Bucket.DAY: 1440, Bucket.WEEK: 10080}


def counted(bucket: Bucket, start: datetime, end: datetime) -> Bucket:
    """The definition: this bucket, or the finest coarser one touching at most MAX_BUCKETS."""
    order = list(Bucket)
    for candidate in order[order.index(bucket) :]:
        if candidate.count_in(start, end) <= MAX_BUCKETS:
            return candidate
    return Bucket.MONTH


# spans within a bucket or two of each bucket's limit, where counting and the shortcut could part
near_a_limit = st.builds(
    lambda width, buckets, fraction: timedelta(minutes=width * (buckets + fraction)),
    st.sampled_from([*WIDTH_MINUTES.values(), 28 * 1440, 31 * 1440]),
    st.integers(MAX_BUCKETS - 2, MAX_BUCKETS + 1),
    st.floats(0, 1),
)


@given(
    bucket=st.sampled_from(list(Bucket)),
    start=st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    span=st.one_of(near_a_limit, st.timedeltas(timedelta(0), timedelta(days=365 * 150))),
)
def test_fitting_picks_what_counting_picks(bucket, start, span) -> None:
    end = start + span
    assert bucket.fitting(start, end) is counted(bucket, start, end)
