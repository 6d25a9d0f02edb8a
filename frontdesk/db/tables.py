"""The tables, as SQLAlchemy Core metadata; migrations are generated against this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

RowId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python; timestamptz on PostgreSQL, sortable naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id() -> Column[Any]:
    return Column("id", String(36), primary_key=True)


def _created_at() -> Column[Any]:
    return Column("created_at", UTCDateTime(), nullable=False)


def _doctor_id(*, nullable: bool = False) -> Column[Any]:
    return Column("doctor_id", String(36), ForeignKey("doctors.id"), nullable=nullable, index=True)


doctors = Table(
    "doctors",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False, unique=True),
    _created_at(),
)

doctor_instagram = Table(
    "doctor_instagram",
    metadata,
    _id(),
    _doctor_id(),
    Column("instagram_page_id", String(64), nullable=False, unique=True),
    Column("facebook_page_id", String(64), nullable=True, unique=True),
    Column("username", String(100), nullable=True),
    Column("login_kind", String(16), nullable=False),
    Column("access_token_encrypted", LargeBinary, nullable=True),
    Column("token_expires_at", UTCDateTime(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("connected_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("last_webhook_at", UTCDateTime(), nullable=True),
    Column("last_send_at", UTCDateTime(), nullable=True),
    Column("token_issued_at", UTCDateTime(), nullable=True),
    Column("disconnected_at", UTCDateTime(), nullable=True),
    UniqueConstraint("doctor_id"),
    CheckConstraint("login_kind in ('instagram', 'facebook')", name="login_kind"),
    CheckConstraint("status in ('active', 'needs_reauth', 'disconnected')", name="status"),
)

reply_rules = Table(
    "reply_rules",
    metadata,
    Column("doctor_id", String(36), ForeignKey("doctors.id"), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("greeting_text", Text, nullable=False),
    Column("cooldown_seconds", Integer, nullable=False),
    Column("emergency_words", JSON, nullable=False),
    Column("emergency_text", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

patients = Table(
    "patients",
    metadata,
    _id(),
    _doctor_id(),
    Column("platform", String(16), nullable=False),
    Column("platform_user_id", String(64), nullable=False),
    Column("label", String(64), nullable=False),
    _created_at(),
    UniqueConstraint("doctor_id", "platform", "platform_user_id"),
)

conversations = Table(
    "conversations",
    metadata,
    _id(),
    _doctor_id(),
    Column("patient_id", String(36), ForeignKey("patients.id"), nullable=False),
    Column("platform", String(16), nullable=False),
    Column("last_inbound_at", UTCDateTime(), nullable=True),
    Column("last_message_at", UTCDateTime(), nullable=True),
    Column("last_auto_reply_at", UTCDateTime(), nullable=True),
    Column("doctor_read_at", UTCDateTime(), nullable=True),
    _created_at(),
    UniqueConstraint("doctor_id", "platform", "patient_id"),
)

messages = Table(
    "messages",
    metadata,
    _id(),
    _doctor_id(),
    Column("conversation_id", String(36), ForeignKey("conversations.id"), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("mid", String(255), nullable=True),
    Column("body_encrypted", LargeBinary, nullable=True),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("reply_to_event_id", RowId, ForeignKey("webhook_events.id"), nullable=True),
    Column("reply_part", Integer, nullable=True),
    Column("send_status", String(16), nullable=True),
    Column("send_error", String(200), nullable=True),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("edited_at", UTCDateTime(), nullable=True),
    Column("deleted_at", UTCDateTime(), nullable=True),
    _created_at(),
    UniqueConstraint("conversation_id", "mid"),
    UniqueConstraint("reply_to_event_id", "reply_part"),
    Index("ix_messages_conversation_occurred", "conversation_id", "occurred_at"),
    CheckConstraint("direction in ('inbound', 'outbound')", name="direction"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("provider", String(16), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Column("body_sha256", String(64), nullable=False, index=True),
    Column("body_size", Integer, nullable=False),
    Column("body_encrypted", LargeBinary, nullable=True),
    Column("status", String(16), nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("duplicate_count", Integer, nullable=False),
    CheckConstraint("status in ('accepted', 'unrecognized')", name="status"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("provider", String(16), nullable=False),
    Column("event_key", String(300), nullable=False),
    # None for work Frontdesk queues itself (a doctor's manual reply, resuming held replies).
    Column("delivery_id", RowId, ForeignKey("webhook_deliveries.id"), nullable=True),
    Column("correlation_id", String(64), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("page_id", String(64), nullable=True),
    Column("ordering_key", String(64), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("available_at", UTCDateTime(), nullable=False),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("leased_by", String(64), nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("doctor_id", String(36), ForeignKey("doctors.id"), nullable=True, index=True),
    Column("payload_encrypted", LargeBinary, nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("provider", "event_key"),
    Index("ix_webhook_events_claim", "status", "available_at", "id"),
    Index("ix_webhook_events_finished", "status", "finished_at"),
    Index("ix_webhook_events_ordering", "ordering_key", "status", "occurred_at"),
    Index("ix_webhook_events_page_reason", "page_id", "reason"),
    CheckConstraint(
        "status in ('queued', 'processing', 'processed', 'ignored', 'failed', 'dead')",
        name="status",
    ),
)

webhook_event_attempts = Table(
    "webhook_event_attempts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("event_id", RowId, ForeignKey("webhook_events.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error_class", String(64), nullable=True),
    Column("error_code", String(64), nullable=True),
)

audit_logs = Table(
    "audit_logs",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    _created_at(),
    Column("correlation_id", String(64), nullable=True),
    Column("resource_type", String(32), nullable=False),
    Column("resource_id", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error_message", String(300), nullable=True),
    Column("metadata", JSON, nullable=False),
    Column("doctor_id", String(36), ForeignKey("doctors.id"), nullable=True, index=True),
    Index("ix_audit_logs_created_at", "created_at"),
    # Append-only; returning the new row would need read access to it under row-level security.
    implicit_returning=False,
)

accounts = Table(
    "accounts",
    metadata,
    _id(),
    Column("email", String(320), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("doctor_id", String(36), ForeignKey("doctors.id"), nullable=True, unique=True),
    Column("password_hash", String(200), nullable=True),
    Column("failed_sign_ins", Integer, nullable=False, default=0),
    Column("locked_until", UTCDateTime(), nullable=True),
    Column("last_sign_in_at", UTCDateTime(), nullable=True),
    _created_at(),
    CheckConstraint("role in ('doctor', 'operator')", name="role"),
    CheckConstraint("(role = 'doctor') = (doctor_id is not null)", name="doctor_role"),
)

invites = Table(
    "invites",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False, index=True),
    _created_at(),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    _created_at(),
    Column("expires_at", UTCDateTime(), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    _id(),
    _doctor_id(),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    _created_at(),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    _doctor_id(),
    Column("login_kind", String(16), nullable=False),
    _created_at(),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
)

facebook_page_choices = Table(
    "facebook_page_choices",
    metadata,
    _id(),
    _doctor_id(),
    Column("pages_encrypted", LargeBinary, nullable=False),
    _created_at(),
    Column("expires_at", UTCDateTime(), nullable=False),
)
