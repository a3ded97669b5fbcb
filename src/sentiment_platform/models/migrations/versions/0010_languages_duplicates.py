"""Languages and copies (issue 31).

- Posts gain `language` (ISO 639-1 or "und"; null for posts stored before detection),
  `duplicate_of` (the post_id of the first post of its group of copies) and `analysis`
  ("unsupported_language" when no model reads the post's language and it has no sentiment;
  null otherwise), and an index `(language, created_at DESC, id DESC)` as the other filters
  have (0003), so a `language=` page stops after its rows.
- `post_rollups` gains `language` ('' for the rows counted before detection) and `duplicate`
  in its key: metrics answer `by_language`, `duplicates` and `unique=true` from rollups.
- Alert rules gain `unique` (false for the rules that exist: they keep counting every copy;
  the API defaults new rules to true) and `language`.

Adding nullable or defaulted columns rewrites no post; the rollups' key is rebuilt in place
(PostgreSQL) or by a table copy (SQLite's batch mode).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

POSTS = "social_media_posts"
ROLLUPS = "post_rollups"
OLD_KEY = ["grain", "bucket_start", "source", "sentiment", "emotion"]
NEW_KEY = [*OLD_KEY, "language", "duplicate"]


def upgrade() -> None:
    with op.batch_alter_table(POSTS) as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))
        batch.add_column(sa.Column("duplicate_of", sa.String(128), nullable=True))
        batch.add_column(sa.Column("analysis", sa.String(32), nullable=True))
    op.create_index(
        "ix_posts_language_created_at_id",
        POSTS,
        ["language", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    _rekey_rollups(
        [
            sa.Column("language", sa.String(8), nullable=False, server_default=""),
            sa.Column("duplicate", sa.Boolean(), nullable=False, server_default=sa.false()),
        ],
        NEW_KEY,
    )
    with op.batch_alter_table("alert_rules") as batch:
        batch.add_column(
            sa.Column("unique", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_column("language")
        batch.drop_column("unique")
    # Fold the language and copy cells back into one cell per old key before the key shrinks.
    op.execute(
        f"CREATE TABLE rollups_0009 AS SELECT {', '.join(OLD_KEY)}, sum(count) AS count "
        f"FROM {ROLLUPS} GROUP BY {', '.join(OLD_KEY)}"
    )
    op.execute(f"DELETE FROM {ROLLUPS}")
    _rekey_rollups([], OLD_KEY, drop=("language", "duplicate"))
    op.execute(
        f"INSERT INTO {ROLLUPS} ({', '.join(OLD_KEY)}, count) "
        f"SELECT {', '.join(OLD_KEY)}, count FROM rollups_0009"
    )
    op.drop_table("rollups_0009")
    op.drop_index("ix_posts_language_created_at_id", table_name=POSTS)
    with op.batch_alter_table(POSTS) as batch:
        for name in ("analysis", "duplicate_of", "language"):
            batch.drop_column(name)


def _rekey_rollups(
    add: list[sa.Column[object]], key: list[str], drop: tuple[str, ...] = ()
) -> None:
    """Give post_rollups the primary key `key`, adding or dropping the columns it needs."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_rollups(key)
        return
    for column in add:
        op.add_column(ROLLUPS, column)
    op.drop_constraint(f"{ROLLUPS}_pkey", ROLLUPS, type_="primary")
    for name in drop:
        op.drop_column(ROLLUPS, name)
    op.create_primary_key(f"{ROLLUPS}_pkey", ROLLUPS, key)


def _rebuild_sqlite_rollups(key: list[str]) -> None:
    """SQLite cannot change a primary key: copy the rows into a table with the new one."""
    columns = [
        sa.Column("grain", sa.String(1)),
        sa.Column("bucket_start", UTCDateTime()),
        sa.Column("source", sa.String(64)),
        sa.Column("sentiment", sa.String(16)),
        sa.Column("emotion", sa.String(16)),
        sa.Column("language", sa.String(8), server_default=""),
        sa.Column("duplicate", sa.Boolean(), server_default=sa.false()),
    ]
    kept = [column for column in columns if column.name in key]
    op.create_table(
        "post_rollups_new",
        *kept,
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*key),
    )
    names = ", ".join([*OLD_KEY, "count"])
    op.execute(f"INSERT INTO post_rollups_new ({names}) SELECT {names} FROM {ROLLUPS}")
    op.drop_table(ROLLUPS)
    op.rename_table("post_rollups_new", ROLLUPS)
