"""Indexes the worker's claim and the health chart walk in order

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (status, available_at, id) gives the claim its exact order, so it stops at its limit;
    # it also serves every lookup the old (status, available_at) index did.
    with _without_blocking_writes():
        _create("ix_webhook_events_claim", ["status", "available_at", "id"])
        _drop("ix_webhook_events_due")
        _create("ix_webhook_events_finished", ["status", "finished_at"])


def downgrade() -> None:
    with _without_blocking_writes():
        _drop("ix_webhook_events_finished")
        _create("ix_webhook_events_due", ["status", "available_at"])
        _drop("ix_webhook_events_claim")


def _on_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


@contextmanager
def _without_blocking_writes() -> Iterator[None]:
    """On PostgreSQL, CREATE/DROP INDEX CONCURRENTLY, which cannot run in a transaction: a plain
    CREATE INDEX would block intake's writes to webhook_events for as long as it builds."""
    if not _on_postgresql():
        yield
        return
    with op.get_context().autocommit_block():
        yield


def _create(name: str, columns: list[str]) -> None:
    if _on_postgresql() and _left_invalid(name):
        # A concurrent build that failed (cancelled, timed out) leaves an invalid index behind,
        # which IF NOT EXISTS would keep for good: drop it and build it again.
        _drop(name)
    op.create_index(
        name,
        "webhook_events",
        columns,
        postgresql_concurrently=_on_postgresql(),
        if_not_exists=True,
    )


def _left_invalid(name: str) -> bool:
    valid = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = :name"
            ),
            {"name": name},
        )
        .scalar()
    )
    return valid is False


def _drop(name: str) -> None:
    op.drop_index(
        name, table_name="webhook_events", postgresql_concurrently=_on_postgresql(), if_exists=True
    )
