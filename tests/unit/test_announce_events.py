"""The worker's `post.analyzed` event data is built as a dict without a PostView: it must be
exactly what `PostView.of(...).model_dump(mode="json")` gives, for any post, analysis and
marks (the `/ws` feed and the dashboard read it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from sentiment_platform.domain import (
    UNSUPPORTED_LANGUAGE,
    Analysis,
    Emotion,
    Post,
    PostMarks,
    PostView,
    Sentiment,
)
from sentiment_platform.pipeline.announce import event_data

moments = st.datetimes(  # a post may not come from the future (Post refuses it)
    min_value=datetime(1970, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
)
texts = st.text(min_size=1, max_size=40).filter(lambda text: text.strip() and "\0" not in text)
posts = st.builds(
    Post,
    post_id=st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
    source=st.sampled_from(["twitter", "reddit", "news"]),
    content=texts,
    author=st.none() | st.from_regex(r"[a-z]{1,10}", fullmatch=True),
    created_at=moments,
    label=st.none() | st.just({"sentiment": "negative", "emotion": "anger"}),
)
marks = st.builds(
    PostMarks,
    language=st.sampled_from(["en", "fr", "und"]),
    duplicate_of=st.none() | st.just("first-post"),
    analysis=st.none() | st.just(UNSUPPORTED_LANGUAGE),
)


def analysis_of(post: Post, at: datetime, confidence: float) -> Analysis:
    return Analysis(
        post.post_id, Sentiment.NEGATIVE, confidence, Emotion.SADNESS, 0.25, "embedded/x", at
    )


@given(posts, marks, st.booleans(), moments, st.floats(0.0, 1.0))
def test_event_data_is_the_post_views_json(
    post: Post, mark: PostMarks, analysed: bool, at: datetime, confidence: float
) -> None:
    analysis = analysis_of(post, at, confidence) if analysed else None
    expected = PostView.of(post, analysis, marks=mark).model_dump(mode="json")
    assert event_data(post, analysis, mark) == expected
    assert list(event_data(post, analysis, mark)) == list(expected)  # the same key order


def test_times_other_than_utc_keep_their_offset() -> None:
    moment = datetime(2026, 12, 6, 21, 0, 0, 500, tzinfo=timezone(timedelta(hours=5)))
    post = Post(post_id="p", source="s", content="bonjour", created_at=moment)
    analysis = analysis_of(post, moment, 0.5)
    mark = PostMarks("fr")
    expected = PostView.of(post, analysis, marks=mark).model_dump(mode="json")
    assert event_data(post, analysis, mark) == expected
