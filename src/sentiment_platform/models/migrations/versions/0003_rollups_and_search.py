"""Reads that cost what their answer costs (issue 12).

- `sentiment_analysis` is rebuilt to reference its post by the post's integer key
  (`post_ref`, unique: the analyses' idempotency key) instead of the 128-character
  `post_id`; its single-column label indexes go (filters now run on the post row).
- The labels are copied onto the post row (`sentiment`, `emotion`, `analyzed_at`), and the
  posts get one composite index per page order `(created_at DESC, id DESC)`, alone and after
  each filter (source, sentiment, emotion).
- Text search: a `pg_trgm` GIN index on `content` (PostgreSQL); an FTS5 table with the
  trigram tokenizer kept by triggers (SQLite).
- `post_rollups`: counts per minute / hour / day × source × sentiment × emotion, backfilled
  from the rows already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import GRAIN_UNITS, BigIntId, UTCDateTime, bucket_floor_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

POSTS = "social_media_posts"
PAGE_ORDER = [sa.text("created_at DESC"), sa.text("id DESC")]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table(POSTS) as batch:
        batch.add_column(sa.Column("sentiment", sa.String(16), nullable=True))
        batch.add_column(sa.Column("emotion", sa.String(16), nullable=True))
        batch.add_column(sa.Column("analyzed_at", UTCDateTime(), nullable=True))

    # The analyses, rebuilt on the integer key (one copy; the old table is dropped).
    op.create_table(
        "sentiment_analysis_new",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column(
            "post_ref",
            BigIntId,
            sa.ForeignKey(f"{POSTS}.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("sentiment", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("emotion", sa.String(16), nullable=False),
        sa.Column("emotion_confidence", sa.Float(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("analyzed_at", UTCDateTime(), nullable=False),
    )
    op.execute(
        "INSERT INTO sentiment_analysis_new "
        "(post_ref, sentiment, confidence, emotion, emotion_confidence, model, analyzed_at) "
        "SELECT p.id, a.sentiment, a.confidence, a.emotion, a.emotion_confidence, a.model, "
        f"a.analyzed_at FROM sentiment_analysis a JOIN {POSTS} p ON p.post_id = a.post_id"
    )
    op.drop_table("sentiment_analysis")
    op.rename_table("sentiment_analysis_new", "sentiment_analysis")
    op.create_index("ix_analysis_analyzed_at", "sentiment_analysis", ["analyzed_at"])
    op.execute(
        f"UPDATE {POSTS} SET sentiment = a.sentiment, emotion = a.emotion, "
        "analyzed_at = a.analyzed_at FROM sentiment_analysis a WHERE a.post_ref = "
        f"{POSTS}.id"
    )

    op.drop_index("ix_posts_created_at", table_name=POSTS)
    op.drop_index("ix_posts_source_created_at", table_name=POSTS)
    op.create_index("ix_posts_created_at_id", POSTS, PAGE_ORDER)
    for name in ("source", "sentiment", "emotion"):
        op.create_index(f"ix_posts_{name}_created_at_id", POSTS, [sa.text(name), *PAGE_ORDER])

    if dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            f"CREATE INDEX ix_posts_content_trgm ON {POSTS} USING gin (content gin_trgm_ops)"
        )
    else:
        _sqlite_fts()

    op.create_table(
        "post_rollups",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket_start", UTCDateTime(), primary_key=True),
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("sentiment", sa.String(16), primary_key=True),
        sa.Column("emotion", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    for grain, unit in GRAIN_UNITS.items():
        bucket = bucket_floor_sql(dialect, unit, "created_at")
        op.execute(
            "INSERT INTO post_rollups (grain, bucket_start, source, sentiment, emotion, count) "
            f"SELECT '{grain}', {bucket}, source, coalesce(sentiment, ''), "
            f"coalesce(emotion, ''), count(*) FROM {POSTS} GROUP BY 2, 3, 4, 5"
        )


def _sqlite_fts() -> None:
    """An external-content FTS5 index over `content` (trigram tokenizer: substring search,
    case-insensitive), kept in step by triggers and filled from the rows already there."""
    op.execute(
        "CREATE VIRTUAL TABLE posts_fts USING fts5(content, "
        f"content='{POSTS}', content_rowid='id', tokenize='trigram')"
    )
    op.execute(
        f"CREATE TRIGGER posts_fts_insert AFTER INSERT ON {POSTS} BEGIN "
        "INSERT INTO posts_fts(rowid, content) VALUES (new.id, new.content); END"
    )
    op.execute(
        f"CREATE TRIGGER posts_fts_delete AFTER DELETE ON {POSTS} BEGIN "
        "INSERT INTO posts_fts(posts_fts, rowid, content) VALUES ('delete', old.id, old.content);"
        " END"
    )
    op.execute(
        f"CREATE TRIGGER posts_fts_update AFTER UPDATE OF content ON {POSTS} BEGIN "
        "INSERT INTO posts_fts(posts_fts, rowid, content) VALUES ('delete', old.id, old.content);"
        " INSERT INTO posts_fts(rowid, content) VALUES (new.id, new.content); END"
    )
    op.execute("INSERT INTO posts_fts(posts_fts) VALUES ('rebuild')")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_table("post_rollups")
    if dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_posts_content_trgm")
    else:
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS posts_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS posts_fts")
    for name in ("source", "sentiment", "emotion"):
        op.drop_index(f"ix_posts_{name}_created_at_id", table_name=POSTS)
    op.drop_index("ix_posts_created_at_id", table_name=POSTS)
    op.create_index("ix_posts_created_at", POSTS, ["created_at"])
    op.create_index("ix_posts_source_created_at", POSTS, ["source", "created_at"])
    op.create_table(
        "sentiment_analysis_old",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column(
            "post_id",
            sa.String(128),
            sa.ForeignKey(f"{POSTS}.post_id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("sentiment", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("emotion", sa.String(16), nullable=False),
        sa.Column("emotion_confidence", sa.Float(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("analyzed_at", UTCDateTime(), nullable=False),
    )
    op.execute(
        "INSERT INTO sentiment_analysis_old "
        "(post_id, sentiment, confidence, emotion, emotion_confidence, model, analyzed_at) "
        "SELECT p.post_id, a.sentiment, a.confidence, a.emotion, a.emotion_confidence, a.model, "
        f"a.analyzed_at FROM sentiment_analysis a JOIN {POSTS} p ON p.id = a.post_ref"
    )
    op.drop_table("sentiment_analysis")
    op.rename_table("sentiment_analysis_old", "sentiment_analysis")
    for name in ("sentiment", "emotion", "analyzed_at"):
        op.create_index(f"ix_analysis_{name}", "sentiment_analysis", [name])
    with op.batch_alter_table(POSTS) as batch:
        batch.drop_column("analyzed_at")
        batch.drop_column("emotion")
        batch.drop_column("sentiment")
