"""A post item as the API serves it, read straight from the post row: the page's columns
and how its rows become items (`store/post_pages.py`, `store/review.py` read with them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from sentiment_platform.domain import PostView
from sentiment_platform.models.database import SocialMediaPost, UTCDateTime
from sentiment_platform.store.prepared import instant_of_text

# A post item as the API serves it: the fields of `PostView`, its timestamps written as the
# API writes them (ISO 8601 in UTC, with `Z`), so the page and the export encode it as it is.
PostItem = dict[str, Any]


# An item's fields that are columns of the post row; `label` is built from LABEL_COLUMNS.
ITEM_FIELDS = tuple(name for name in PostView.model_fields if name != "label")
LABEL_COLUMNS = ("label_sentiment", "label_emotion", "labelled_at")
# Every key of an item in `PostView`'s order (the schema's, which a page is byte for byte),
# and the row's column under each: `label_sentiment` where `label` goes, so one `zip` puts
# the keys in order; the label's other two columns last.
ITEM_KEYS = tuple(PostView.model_fields)
_COLUMNS = (*(LABEL_COLUMNS[0] if key == "label" else key for key in ITEM_KEYS), *LABEL_COLUMNS[1:])
_STAMP_FIELDS = tuple(
    name for name in ITEM_FIELDS if isinstance(SocialMediaPost.__table__.c[name].type, UTCDateTime)
)
_TEXT_STAMPS = (*_STAMP_FIELDS, "labelled_at")


# The item's columns, not ORM entities: building two mapped objects a row costs more than the
# rest of a page. All from the post row, which copies its analysis and holds its label, so a
# page joins nothing. The integer key first: the cursor's, not an item's.
_ITEM_QUERY = select(SocialMediaPost.id, *(SocialMediaPost.__table__.c[n] for n in _COLUMNS))


def _items(rows: Sequence[Sequence[Any]], stamp: Callable[[Any], str]) -> list[PostItem]:
    """Page rows as items, their timestamps written by `stamp` (the store's own form in).
    One loop with the two stamps named: this runs for every row of every page. `zip` is
    given no `strict=` (each row is `_ITEM_QUERY`'s: its columns ITEM_KEYS' and two more),
    as the keyword alone costs a measurable share of the loop."""
    items = []
    for row in rows:
        item = dict(zip(ITEM_KEYS, row[1:]))  # noqa: B905  (see above)
        item["created_at"] = stamp(item["created_at"])
        if (analyzed := item["analyzed_at"]) is not None:
            item["analyzed_at"] = stamp(analyzed)
        if (labelled := item["label"]) is not None:  # the label's sentiment, in its place
            at = stamp(row[-1])
            item["label"] = {"sentiment": labelled, "emotion": row[-2], "labelled_at": at}
        items.append(item)
    return items


assert _STAMP_FIELDS == ("created_at", "analyzed_at"), "_items writes these two by name"


def _api_stamp_of(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _api_stamp(text: str) -> str:
    """PostgreSQL's text of a UTC timestamp ('2026-12-03 18:08:36.5+00') as the API writes
    it, which is how orjson writes the datetime ('2026-12-03T18:08:36.500000Z'). What is
    not a calendar instant (`-infinity`, written for 0001-01-01 before posts were held to
    1970 on) is written as the instant asyncpg reads it as (`instant_of_text`)."""
    if text[-1] != "0" or text[4] != "-":  # -infinity, infinity, … BC, a year past 9999
        return _api_stamp_of(instant_of_text(text))
    stamp = text.removesuffix("+00")
    if len(stamp) > 19:  # a fraction, which PostgreSQL writes without trailing zeros
        stamp = stamp.ljust(26, "0")
    return f"{stamp[:10]}T{stamp[11:]}Z"
