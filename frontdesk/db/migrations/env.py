"""Alembic environment: runs migrations over the synchronous connection handed in by migrate.py."""

from __future__ import annotations

from alembic import context

from frontdesk.db.tables import metadata

connection = context.config.attributes["connection"]
# One transaction per migration, so that a migration may step out of it (autocommit_block)
# for what PostgreSQL cannot do inside one, such as CREATE INDEX CONCURRENTLY.
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
