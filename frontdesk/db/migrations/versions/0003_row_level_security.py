"""Row-level security on PostgreSQL: the application role, tenant policies, grants

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

Patient data (patients, conversations, messages) is visible only to a transaction scoped to
its doctor (`frontdesk.doctor_id`), with no bypass. Connections are also visible to the
system scope (`frontdesk.system`), which routing, token refresh and operator views use: they
hold ids and encrypted tokens, no patient data. Audit rows without a doctor are visible to all.
SQLite has no row-level security; there the repositories' doctor filters are the wall.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_ROLE = "frontdesk_app"
TENANT = "doctor_id = current_setting('frontdesk.doctor_id', true)"
SYSTEM = "current_setting('frontdesk.system', true) = 'on'"
POLICIES = {
    "patients": (TENANT, TENANT),
    "conversations": (TENANT, TENANT),
    "messages": (TENANT, TENANT),
    "doctor_instagram": (f"{TENANT} OR {SYSTEM}", f"{TENANT} OR {SYSTEM}"),
    "audit_logs": (f"doctor_id IS NULL OR {TENANT} OR {SYSTEM}", "true"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}"
    )
    for table, (using, check) in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_by_doctor ON {table} USING ({using}) WITH CHECK ({check})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS {table}_by_doctor ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
