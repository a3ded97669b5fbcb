"""Posts, one analysis per post, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import BigIntId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "social_media_posts",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("post_id", sa.String(128), nullable=False, unique=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("author", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_posts_created_at", "social_media_posts", ["created_at"])
    op.create_index("ix_posts_source_created_at", "social_media_posts", ["source", "created_at"])

    op.create_table(
        "sentiment_analysis",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column(
            "post_id",
            sa.String(128),
            sa.ForeignKey("social_media_posts.post_id", ondelete="CASCADE"),
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
    op.create_index("ix_analysis_sentiment", "sentiment_analysis", ["sentiment"])
    op.create_index("ix_analysis_emotion", "sentiment_analysis", ["emotion"])
    op.create_index("ix_analysis_analyzed_at", "sentiment_analysis", ["analyzed_at"])

    op.create_table(
        "alerts",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("alert_type", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_alerts_created_at", "alerts", ["created_at"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("sentiment_analysis")
    op.drop_table("social_media_posts")
