"""A fuzz pass over the stream decoder: whatever an entry holds, `decode_post` returns a Post
or raises ValueError (what the worker dead-letters), never anything else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sentiment_platform.bus import POST_FIELD, decode_post
from sentiment_platform.domain import Post

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
TIMESTAMPS = st.one_of(
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-05:00",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59+23:59",
            "2026-01-15T10:00:00Z",
            "",
            "now",
        ]
    ),
    JSON_SCALARS,
)
# Post-shaped objects, so the fuzz also reaches the validators behind the JSON parser.
POST_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "post_id": st.one_of(st.text(), JSON_SCALARS),
        "source": st.one_of(st.text(max_size=70), JSON_SCALARS),
        "content": st.one_of(st.text(), JSON_SCALARS),
        "author": st.one_of(st.text(max_size=130), JSON_SCALARS),
        "created_at": TIMESTAMPS,
    },
)
DEEP: Any = []
for _ in range(300):  # deeper than pydantic's JSON parser goes
    DEEP = [DEEP]

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decodes_or_refuses(fields: dict[str, str]) -> None:
    try:
        post = decode_post(fields)
    except ValueError as error:
        assert str(error)  # a dead letter says why
        return
    assert isinstance(post, Post)


@FUZZ
@given(st.dictionaries(st.text(), st.text()))
@example({})
@example({POST_FIELD: ""})
@example({"other": "field"})
def test_any_fields_decode_or_raise_value_error(fields: dict[str, str]) -> None:
    _decodes_or_refuses(fields)


@FUZZ
@given(st.one_of(ANY_JSON, POST_LIKE), st.dictionaries(st.text(), st.text(), max_size=3))
@example({"source": "x", "content": "y", "created_at": "9999-12-31T23:59:59-05:00"}, {})
@example({"source": "x", "content": "y", "created_at": "3000-01-01T00:00:00Z"}, {})
@example({"source": "x\x00", "content": "y"}, {})
@example({"source": "x", "content": "y", "created_at": 1e308}, {})
@example(DEEP, {})
def test_any_json_in_the_data_field_decodes_or_raises_value_error(
    data: Any, extra: dict[str, str]
) -> None:
    _decodes_or_refuses(extra | {POST_FIELD: json.dumps(data)})


@FUZZ
@given(st.text(st.characters(exclude_categories=())))  # lone surrogates too
@example("[" * 10_000)
@example('{"source": "x", "content": "\ud800"}')
@example('{"source": "x", "content": "y", "created_at": "9999-12-31T23:59:59-05:00"}')
@example('{"source": "x", "content": "' + "\\ud800" + '"}')
def test_any_text_in_the_data_field_decodes_or_raises_value_error(text: str) -> None:
    _decodes_or_refuses({POST_FIELD: text})


def test_a_valid_entry_round_trips() -> None:
    post = Post(source="twitter", content="fine")
    assert decode_post({POST_FIELD: post.model_dump_json()}) == post
