"""Indexes the worker's claim and the health chart walk in order

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (status, available_at, id) gives the claim its exact order, so it stops at its limit;
    # it also serves every lookup the old (status, available_at) index did.
    op.create_index("ix_webhook_events_claim", "webhook_events", ["status", "available_at", "id"])
    op.drop_index("ix_webhook_events_due", table_name="webhook_events")
    op.create_index("ix_webhook_events_finished", "webhook_events", ["status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_finished", table_name="webhook_events")
    op.create_index("ix_webhook_events_due", "webhook_events", ["status", "available_at"])
    op.drop_index("ix_webhook_events_claim", table_name="webhook_events")
