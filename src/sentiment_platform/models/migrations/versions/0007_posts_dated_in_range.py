"""Posts dated outside the sane range are moved to when they arrived (issue 29).

Before a post's `created_at` was held to 1970-01-01 … a day ahead of now (`domain.Post`), a
post could be dated 0001-01-01T00:00:00Z, which asyncpg writes on PostgreSQL as
`-infinity`: no datetime reads that back, so every page, export and metrics answer that met
the post failed. Raw SQL can also have left `infinity`, a date BC or one after 9999.

What such a post becomes: its `ingested_at`, the instant the platform received it, set by
the server's clock, never the producer's. It is the best bound known of when the post was
written (not before it), and it keeps the post among the posts that arrived with it. The
alternatives are worse: the epoch itself would pile them up where no chart looks and
retention deletes first, and deleting them would lose posts the API accepted (202), maybe
analysed and counted. A post whose `ingested_at` is out of range too (raw SQL alone) takes
the upgrade's time.

The rollups count a post in its `created_at`'s minute, hour and day, so they move with it:

- the cells before 1970 (on PostgreSQL also those from year 10000, the infinities among
  them) are deleted: 1970-01-01T00:00Z starts a minute, an hour and a day, so only the
  out-of-range posts were ever counted in them;
- the moved posts are added to the cells of their new minute, hour and day, on top of what
  those hold. Not a rebuild from the posts (`rollups rebuild`): that would drop the counts
  the rollups keep for posts retention has deleted (RETENTION_DAYS shorter than
  ROLLUP_RETENTION_DAYS), in every day the moved posts land in.

The posts are found on the `(created_at DESC, id DESC)` index, so the upgrade reads only
them, however large the table. The downgrade leaves the posts where they now are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import GRAIN_UNITS, UTCDateTime, bucket_floor_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

POSTS = "social_media_posts"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# PostgreSQL holds instants up to year 294276 and the infinities; no datetime reads those.
PAST_9999 = "'10000-01-01 00:00:00+00'::timestamptz"


def _out_of_range(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"({column} < :epoch OR {column} >= {PAST_9999})"
    return f"{column} < :epoch"  # SQLite's text: what Python wrote, years 1-9999


def _run(sql: str, values: dict[str, datetime]) -> None:
    names = [name for name in values if f":{name}" in sql]
    statement = sa.text(sql).bindparams(*(sa.bindparam(n, type_=UTCDateTime()) for n in names))
    op.get_bind().execute(statement, {name: values[name] for name in names})


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    now = datetime.now(UTC)
    values = {"epoch": EPOCH, "now": now, "ahead": now + timedelta(days=1)}
    moved = _out_of_range(dialect, "created_at")
    # When the post arrived, if that is itself in range (the server's clock set it).
    arrival = (
        "CASE WHEN ingested_at >= :epoch AND ingested_at <= :ahead THEN ingested_at ELSE :now END"
    )
    _run(f"DELETE FROM post_rollups WHERE {_out_of_range(dialect, 'bucket_start')}", values)
    for grain, unit in GRAIN_UNITS.items():
        bucket = bucket_floor_sql(dialect, unit, f"({arrival})")
        _run(
            "INSERT INTO post_rollups (grain, bucket_start, source, sentiment, emotion, count)"
            f" SELECT '{grain}', {bucket}, source, coalesce(sentiment, ''),"
            f" coalesce(emotion, ''), count(*) FROM {POSTS} WHERE {moved}"
            " GROUP BY 2, 3, 4, 5"
            " ON CONFLICT (grain, bucket_start, source, sentiment, emotion)"
            " DO UPDATE SET count = post_rollups.count + excluded.count",
            values,
        )
    _run(f"UPDATE {POSTS} SET created_at = {arrival} WHERE {moved}", values)


def downgrade() -> None:
    """Nothing to undo: the old dates are what broke the reads."""
