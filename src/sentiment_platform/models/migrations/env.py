"""Alembic environment: runs on the connection handed over by `db.upgrade_schema`."""

from alembic import context

from sentiment_platform.models import alerting  # noqa: F401 - its tables join Base.metadata
from sentiment_platform.models.database import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
