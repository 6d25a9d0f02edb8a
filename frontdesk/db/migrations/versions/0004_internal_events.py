"""Events Frontdesk queues itself: no delivery, their own correlation id

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.alter_column("delivery_id", existing_type=sa.BigInteger(), nullable=True)
        batch_op.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE webhook_events SET correlation_id = (SELECT correlation_id FROM webhook_deliveries"
        " WHERE webhook_deliveries.id = webhook_events.delivery_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_column("correlation_id")
        batch_op.alter_column("delivery_id", existing_type=sa.BigInteger(), nullable=False)
