"""SQLAlchemy models: one post, at most one analysis per post, the rollup counts, and the
alerts raised.

An analysis references its post by the post's integer key (`post_ref`), unique: the
idempotency key of analyses. The post row carries a copy of its analysis (the labels,
their confidences, the model and `analyzed_at`, set in the transaction that inserts the
analysis): a filtered page walks one composite index `(filter, created_at DESC, id DESC)`
and stops at the page (0003), and reads no other table (0006). `PostRollup` holds counts
per minute, hour and day × source × sentiment × emotion (store/rollups.py).

At most one alert row per `alert_type` is `firing` (a partial unique index), so two alert
monitors can never both open an incident.

Timestamps are stored in UTC on both PostgreSQL and SQLite and always read back aware.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sentiment_platform.domain import as_utc, utcnow
from sentiment_platform.timegrain import Grain

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in as UTC and comes out aware, whatever the dialect keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    pass


class SocialMediaPost(Base):
    __tablename__ = "social_media_posts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    post_id: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The analysis, copied here (null until analysed): pages read this row alone.
    sentiment: Mapped[str | None] = mapped_column(String(16))
    emotion: Mapped[str | None] = mapped_column(String(16))
    analyzed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confidence: Mapped[float | None] = mapped_column(Float)
    emotion_confidence: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str | None] = mapped_column(String(128))
    # A person's label (0009), null until labelled: on this row so pages read nothing else.
    label_sentiment: Mapped[str | None] = mapped_column(String(16))
    label_emotion: Mapped[str | None] = mapped_column(String(16))
    labelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Language and copies (0010): ISO 639-1 or "und" (null: stored before detection); the
    # post_id of the first post of its group of copies; why it has no sentiment
    # ("unsupported_language": no model reads its language), null when analysed.
    language: Mapped[str | None] = mapped_column(String(8))
    duplicate_of: Mapped[str | None] = mapped_column(String(128))
    analysis_status: Mapped[str | None] = mapped_column("analysis", String(32))

    analysis: Mapped[SentimentAnalysis | None] = relationship(back_populates="post", uselist=False)

    __table_args__ = (
        # Newest first, alone and under each filter: a page stops after `limit` rows (0003).
        Index("ix_posts_created_at_id", text("created_at DESC"), text("id DESC")),
        *(
            Index(f"ix_posts_{name}_created_at_id", name, text("created_at DESC"), text("id DESC"))
            for name in ("source", "sentiment", "emotion", "language")
        ),
        # The labelled posts alone (0009): quality reads a range's labels, not its posts.
        Index(
            "ix_posts_labelled_created_at",
            "created_at",
            postgresql_where=text("label_sentiment IS NOT NULL"),
            sqlite_where=text("label_sentiment IS NOT NULL"),
        ),
    )


class SentimentAnalysis(Base):
    __tablename__ = "sentiment_analysis"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    post_ref: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("social_media_posts.id", ondelete="CASCADE"), unique=True
    )
    sentiment: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    emotion: Mapped[str] = mapped_column(String(16))
    emotion_confidence: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(128))
    analyzed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    post: Mapped[SocialMediaPost] = relationship(back_populates="analysis")

    __table_args__ = (Index("ix_analysis_analyzed_at", "analyzed_at"),)


class ReviewDraw(Base):
    """A post the review queue handed out (0009): by `strategy` (random | uncertain), under
    the filter it was drawn with (null: none), and when it was skipped. A `random` draw makes
    its post's label a random label for every range its filter covers."""

    __tablename__ = "review_draws"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    post_ref: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("social_media_posts.id", ondelete="CASCADE"), index=True
    )
    strategy: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(64))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    drawn_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    skipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "ix_review_draws_skipped",
            "post_ref",
            postgresql_where=text("skipped_at IS NOT NULL"),
            sqlite_where=text("skipped_at IS NOT NULL"),
        ),
    )


class PostRollup(Base):
    """How many posts a bucket holds: `grain` m / h / d, its UTC start, source, labels,
    language and whether they are copies.

    Unanalysed posts are counted with sentiment and emotion '' (so page totals include them);
    metrics read only the labelled rows. `language` is '' for posts stored before detection
    (0010); `duplicate` counts the copies apart, so `unique=true` is the rows without it.
    """

    __tablename__ = "post_rollups"

    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    sentiment: Mapped[str] = mapped_column(String(16), primary_key=True)
    emotion: Mapped[str] = mapped_column(String(16), primary_key=True)
    language: Mapped[str] = mapped_column(String(8), primary_key=True, default="")
    duplicate: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)
    count: Mapped[int] = mapped_column(BigInteger)


class AnalysisModel(Base):
    """A model in the registry (0008), one row per task it serves: the embedded model serves
    both (two rows), an imported classifier one. Its files are `MODELS_DIR/<name>/` (an
    imported one) or inside the package (the embedded one); `details` is its `model.json`."""

    __tablename__ = "analysis_models"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    task: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "embedded" | "onnx"
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    agreement: Mapped[float | None] = mapped_column(Float)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ModelActivation(Base):
    """Which model serves a task for a language (0008); language "*" is every language no row
    names. No row for a task: the embedded model. Workers poll these rows and switch."""

    __tablename__ = "model_activations"

    task: Mapped[str] = mapped_column(String(16), primary_key=True)
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelRollup(Base):
    """Analysed posts per bucket (grain m / h / d, UTC start of the post's `created_at`),
    source and model (0008): which models a metrics window's counts come from, O(buckets).
    Kept beside `PostRollup` by the same writes (and by `rescore`)."""

    __tablename__ = "model_rollups"

    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class LabelRollup(Base):
    """Random labels per bucket (grain m / h / d, UTC start of the post's `created_at`) ×
    source × language × copy or not × model × stored prediction × label × the reach of the
    post's widest random draw (0011, models/label_rollup_sql.py): a metrics answer's
    estimate reads them with the post rollups, O(buckets). `duplicate`: the post is a copy
    (`duplicate_of` set), left out by `unique=true`; `all_sources`: that draw had no source
    filter; `drawn_since` / `drawn_until`: its time filter, the calendar's ends for none."""

    __tablename__ = "label_rollups"

    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    duplicate: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    prediction: Mapped[str] = mapped_column(String(16), primary_key=True)
    label: Mapped[str] = mapped_column(String(16), primary_key=True)
    all_sources: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    drawn_since: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    drawn_until: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


# --- bucket arithmetic in SQL, shared by the rollup writes, reads and the 0003 backfill -----

# SQLite keeps UTCDateTime as 'YYYY-MM-DD HH:MM:SS.ffffff': a bucket start must be written in
# exactly that form, or an upsert would not meet the row it should add to.
_SQLITE_FLOORS = {
    Grain.MINUTE: ("%Y-%m-%d %H:%M:00.000000",),
    Grain.HOUR: ("%Y-%m-%d %H:00:00.000000",),
    Grain.DAY: ("%Y-%m-%d 00:00:00.000000",),
    Grain.WEEK: ("%Y-%m-%d 00:00:00.000000", "-6 days", "weekday 1"),  # the Monday on or before
    Grain.MONTH: ("%Y-%m-01 00:00:00.000000",),
}
# The grains `PostRollup` keeps, by the code its `grain` column stores, finest first.
GRAIN_UNITS = {"m": Grain.MINUTE, "h": Grain.HOUR, "d": Grain.DAY}


def bucket_floor_sql(dialect: str, unit: str, column: str) -> str:
    """SQL for the UTC start of the `unit` bucket (a timegrain.Grain or its name) `column`
    is in: what timegrain.floor gives for the stored instant.

    PostgreSQL runs with the session time zone UTC (db.create_engine), so `date_trunc` on a
    timestamptz floors in UTC; its weeks start on Monday, as timegrain's do.
    """
    grain = Grain(unit)
    if dialect == "sqlite":
        fmt, *modifiers = _SQLITE_FLOORS[grain]
        extra = "".join(f", '{modifier}'" for modifier in modifiers)
        return f"strftime('{fmt}', {column}{extra})"
    return f"date_trunc('{grain.value}', {column})"
