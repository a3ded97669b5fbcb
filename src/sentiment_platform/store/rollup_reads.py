"""Reading the rollups: a metrics answer's one statement and a page's total, O(cells).

A range is cut into few cells, some added and some taken away (`rollups.cover`); a
statement is built once per shape (how many runs of cells of each sign, which filters) with
the values bound: building one per request cost more than running it. Written beside
`store/rollups.py`, which keeps the writes.

Every cell counts its posts twice over: all of them, and those that are not copies
(`duplicate` false), so one read answers `unique=true` and the copies it left out alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    union_all,
)

from sentiment_platform.models.database import (
    LabelRollup,
    ModelRollup,
    PostRollup,
    bucket_floor_sql,
)
from sentiment_platform.store import label_rollups, model_rollups
from sentiment_platform.store.prepared import Reader, dialect_name, fetch_rows, instant_of_text
from sentiment_platform.store.rollups import GRAINS_FOR, UNANALYSED, Cover, cover, minute_range

LABELS = ("source", "sentiment", "emotion", "language")  # the filters a total may have
_AT = PostRollup.bucket_start.type


Shape = tuple[int, int]  # runs of cells added, runs taken away


def _read(
    shape: Shape, labels: Sequence[str], table: Any = PostRollup.__table__
) -> tuple[list[ColumnElement[bool]], ColumnElement[Any]]:
    """The WHERE of a read of a cover's runs of cells, by the filters, and each row's count
    signed: negative in a run taken away (the runs never overlap: `rollups.cover`)."""
    rows = table.c
    runs = [
        and_(
            rows.grain == bindparam(f"grain{i}"),
            rows.bucket_start >= bindparam(f"low{i}", type_=_AT),
            rows.bucket_start < bindparam(f"high{i}", type_=_AT),
        )
        for i in range(sum(shape))
    ]
    taken = runs[shape[0] :]
    count = case((or_(*taken), -rows.count), else_=rows.count) if taken else rows.count
    return [or_(*runs), *(rows[label] == bindparam(label) for label in labels)], count


def _params(runs: Cover, **labels: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {name: value for name, value in labels.items() if value is not None}
    for i, (grain, low, high) in enumerate([*runs[0], *runs[1]]):
        params |= {f"grain{i}": grain, f"low{i}": low, f"high{i}": high}
    return params


@cache
def _total_statement(shape: Shape, labels: tuple[str, ...]) -> Any:
    where, count = _read(shape, labels)
    return select(func.coalesce(func.sum(count), 0)).where(*where)


async def total(
    reader: Reader,
    start: datetime | None,
    end: datetime | None,
    *,
    source: str | None = None,
    sentiment: str | None = None,
    emotion: str | None = None,
    language: str | None = None,
) -> int:
    """Posts in every minute [start, end) touches (unbounded sides: all), by the filters."""
    runs = cover(*minute_range(start, end))
    if not runs[0]:
        return 0
    params = _params(runs, source=source, sentiment=sentiment, emotion=emotion, language=language)
    labels = tuple(name for name in LABELS if name in params)
    statement = _total_statement((len(runs[0]), len(runs[1])), labels)
    [(counted,)] = await fetch_rows(reader, statement, params)
    return int(counted)


@cache
def _summary_statement(dialect: str, unit: str, shape: Shape, labels: tuple[str, ...]) -> Any:
    """Three sums of one read of the cells, so an answer returns its sums, not every cell
    it reads: per (bucket, sentiment), per (source, sentiment, language), per emotion; and,
    from `model_rollups` over the same cells, per model, and from `label_rollups` the random
    labels whose draws cover the range, per (model, prediction, label). Rows are (kind 't' /
    's' / 'e' / 'm' / 'l', moment, source, label, language, all posts, posts that are not
    copies); an 'l' row carries the prediction as its moment and the model as its source. Unanalysed
    cells (sentiment '') are read too: `unanalysed` and `by_language` count them. Language
    rides in the source set rather than a fourth set of its own: one hash table fewer per
    cell read (measured cheaper: benchmarks/README.md, "Languages and copies: the reads").
    PostgreSQL sums in one pass over the cells (GROUPING SETS); SQLite has no GROUPING SETS,
    so it groups a CTE three times. `model_rollups` keeps no language nor copies: its sums
    are the window's (and source's) whatever the other filters; `label_rollups` keeps both."""
    moment: Any = literal_column(bucket_floor_sql(dialect, unit, "post_rollups.bucket_start"))
    rows = PostRollup.__table__.c
    where, count = _read(shape, labels)
    by_source = [n for n in labels if n == "source"]
    models = (  # and the random labels whose draws cover the range, per model
        model_rollups.by_model(*_read(shape, by_source, ModelRollup.__table__)),
        label_rollups.by_cell(*_read(shape, labels, LabelRollup.__table__), bool(by_source)),
    )
    if dialect == "postgresql":
        kind = case({3: "t", 1: "s"}, value=func.grouping(rows.source, rows.emotion), else_="e")
        labelled = (
            select(
                kind,
                cast(moment, Text),  # text decodes faster than a timestamptz (store/post_pages)
                rows.source,
                func.coalesce(rows.emotion, rows.sentiment),  # the set's label (the other: NULL)
                rows.language,
                # bigint, not sum()'s numeric: the driver decodes an integer far faster
                cast(func.sum(count), BigInteger),
                cast(func.sum(count).filter(~rows.duplicate), BigInteger),  # NULL: copies
            )
            .where(*where)
            .group_by(
                func.grouping_sets(
                    tuple_(moment, rows.sentiment),
                    tuple_(rows.source, rows.sentiment, rows.language),
                    rows.emotion,
                )
            )
        )
        return union_all(labelled, *models)
    read = (
        select(
            moment.label("moment"),
            rows.source,
            rows.sentiment,
            rows.emotion,
            rows.language,
            count.label("count"),
            case((rows.duplicate, 0), else_=count).label("kept"),
        )
        .where(*where)
        .cte("cells")
    )
    c = read.c
    sums = (func.sum(c.count), func.sum(c.kept))
    return union_all(
        select(literal_column("'t'"), c.moment, null(), c.sentiment, null(), *sums).group_by(
            c.moment, c.sentiment
        ),
        select(literal_column("'s'"), null(), c.source, c.sentiment, c.language, *sums).group_by(
            c.source, c.sentiment, c.language
        ),
        select(literal_column("'e'"), null(), null(), c.emotion, null(), *sums).group_by(c.emotion),
        *models,
    )


@dataclass(slots=True)
class Summary:
    """Analysed posts over a range: per (bucket start, sentiment), per (source, sentiment),
    per emotion, per model; and every post per language, the unanalysed, the copies; and
    the random labels (model, label, prediction → count) of draws covering the range."""

    timeline: dict[tuple[datetime, str], int] = field(default_factory=dict)
    by_source: dict[tuple[str, str], int] = field(default_factory=dict)
    emotions: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)  # posts from before detection: out
    unanalysed: int = 0  # no sentiment: not analysed yet, or no model reads their language
    duplicates: int = 0  # copies of an earlier post, whether `unique` left them out or not
    labels: label_rollups.Cells = field(default_factory=dict)  # the covered random labels


async def summary(
    reader: Reader,
    start: datetime,
    end: datetime,
    unit: str,
    source: str | None = None,
    *,
    language: str | None = None,
    unique: bool = False,
) -> Summary:
    """The counts of the minutes [start, end) touches (of one source, one language), summed
    three ways; `unit` (minute, hour, day, week or month) is the timeline's bucket; `unique`
    counts each group of copies once (its first post), except in `models`."""
    answer = Summary()
    minutes = minute_range(start, end)
    runs = cover(*minutes, GRAINS_FOR[unit])
    if not runs[0]:
        return answer
    params = _params(runs, source=source, language=language)
    params |= label_rollups.reach_params(*minutes)
    labels = tuple(name for name in LABELS if name in params)
    shape = (len(runs[0]), len(runs[1]))
    statement = _summary_statement(dialect_name(reader), unit, shape, labels)
    by_source: dict[tuple[str, str], int] = defaultdict(int)
    languages: dict[str, int] = defaultdict(int)
    rows = await fetch_rows(reader, statement, params)
    for kind, moment, name, label, language, every, kept in rows:
        count = int((kept or 0) if unique and kind != "m" else every)
        if kind == "l":  # name: the model, moment: its prediction
            if count:
                answer.labels[(name, label, moment)] = count
        elif kind == "s":
            if not every:  # its posts all in cells taken away
                continue
            answer.duplicates += int(every) - int(kept or 0)
            if language:  # '': stored before detection
                languages[language] += count
            if label == UNANALYSED:
                answer.unanalysed += count
            else:
                by_source[(name, label)] += count
        elif kind == "m":
            if count:  # a rescore may leave a model none of the window's posts keep
                answer.models[label] = count
        elif label == UNANALYSED or not count:
            continue  # in no share
        elif kind == "t":
            answer.timeline[(_moment(moment), label)] = count
        else:
            answer.emotions[label] = count
    answer.by_source = dict(by_source)
    answer.languages = {code: count for code, count in languages.items() if count}
    return answer


async def earliest(reader: Reader) -> datetime | None:
    """The first day holding any post (None: the store is empty)."""
    found = await reader.scalar(
        select(func.min(PostRollup.bucket_start)).where(PostRollup.grain == "d")
    )
    return found


def _moment(value: datetime | str) -> datetime:
    """A bucket start as each store reads it: PostgreSQL's text (an infinity included,
    `instant_of_text`), SQLite's naive UTC datetime."""
    if isinstance(value, str):
        return instant_of_text(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
