"""Pages read the post row alone (issue 12).

The post row already copied its analysis's labels (0003); it now copies the rest of what a
page shows: `confidence`, `emotion_confidence` and `model`, backfilled from the analyses.
A 50-row page joined to the analyses cost PostgreSQL ~260 µs, ~90 µs without the join.

The backfill rewrites every analysed post (minutes at 10M posts on PostgreSQL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

POSTS = "social_media_posts"
COPIED = ("confidence", "emotion_confidence", "model")


def upgrade() -> None:
    with op.batch_alter_table(POSTS) as batch:
        batch.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("emotion_confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("model", sa.String(128), nullable=True))
    assignments = ", ".join(f"{name} = a.{name}" for name in COPIED)
    op.execute(
        f"UPDATE {POSTS} SET {assignments} FROM sentiment_analysis a WHERE a.post_ref = {POSTS}.id"
    )


def downgrade() -> None:
    with op.batch_alter_table(POSTS) as batch:
        for name in COPIED:
            batch.drop_column(name)
