"""The doctor's inbox as read: conversations newest first with unread counts, and their messages."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, ScalarSelect, Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.clinic.conversations import INBOUND, MessageBody, decrypt_body
from frontdesk.crypto import Keyring
from frontdesk.db.tables import conversations, messages, patients
from frontdesk.errors import FrontdeskError
from frontdesk.replies.responder import MESSAGING_WINDOW


class InvalidCursorError(FrontdeskError):
    """The page cursor was not made by us."""


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    patient_label: str
    patient_platform_id: str
    last_message_at: datetime | None
    last_inbound_at: datetime | None
    unread_count: int

    def reply_window_open(self, now: datetime) -> bool:
        return self.last_inbound_at is not None and now - self.last_inbound_at < MESSAGING_WINDOW


@dataclass(frozen=True)
class StoredMessage:
    id: str
    direction: str
    origin: str
    body: MessageBody | None
    occurred_at: datetime
    send_status: str | None
    send_error: str | None
    edited: bool
    deleted: bool


def _unread_count(doctor_id: str) -> ScalarSelect[int]:
    return (
        select(func.count())
        .where(
            messages.c.doctor_id == doctor_id,
            messages.c.conversation_id == conversations.c.id,
            messages.c.direction == INBOUND,
            or_(
                conversations.c.doctor_read_at.is_(None),
                messages.c.occurred_at > conversations.c.doctor_read_at,
            ),
        )
        .scalar_subquery()
    )


def _conversation_query(doctor_id: str) -> Select[Any]:
    return (
        select(
            conversations.c.id,
            conversations.c.last_message_at,
            conversations.c.last_inbound_at,
            conversations.c.created_at,
            patients.c.label,
            patients.c.platform_user_id,
            _unread_count(doctor_id).label("unread_count"),
        )
        .join(
            patients,
            and_(patients.c.id == conversations.c.patient_id, patients.c.doctor_id == doctor_id),
        )
        .where(conversations.c.doctor_id == doctor_id)
    )


def _summary(row: Row[Any]) -> ConversationSummary:
    return ConversationSummary(
        id=row.id,
        patient_label=row.label,
        patient_platform_id=row.platform_user_id,
        last_message_at=row.last_message_at,
        last_inbound_at=row.last_inbound_at,
        unread_count=int(row.unread_count),
    )


async def list_conversations(
    connection: AsyncConnection, *, doctor_id: str, limit: int, cursor: str | None = None
) -> tuple[list[ConversationSummary], str | None]:
    """Newest activity first; the returned cursor fetches the next page."""
    sort_time = func.coalesce(conversations.c.last_message_at, conversations.c.created_at)
    statement = _conversation_query(doctor_id).order_by(sort_time.desc(), conversations.c.id.desc())
    if cursor:
        moment, conversation_id = _decode_cursor(cursor)
        statement = statement.where(
            or_(
                sort_time < moment,
                and_(sort_time == moment, conversations.c.id < conversation_id),
            )
        )
    rows = (await connection.execute(statement.limit(limit + 1))).all()
    page = [_summary(row) for row in rows[:limit]]
    if len(rows) <= limit:
        return page, None
    last = rows[limit - 1]
    return page, _encode_cursor(last.last_message_at or last.created_at, last.id)


async def get_conversation(
    connection: AsyncConnection, *, doctor_id: str, conversation_id: str
) -> ConversationSummary | None:
    row = (
        await connection.execute(
            _conversation_query(doctor_id).where(conversations.c.id == conversation_id)
        )
    ).first()
    return _summary(row) if row else None


async def list_messages(
    connection: AsyncConnection,
    keyring: Keyring,
    *,
    doctor_id: str,
    conversation_id: str,
    limit: int,
) -> list[StoredMessage]:
    """The newest `limit` messages, oldest first."""
    rows = (
        await connection.execute(
            select(messages)
            .where(messages.c.doctor_id == doctor_id, messages.c.conversation_id == conversation_id)
            .order_by(messages.c.occurred_at.desc(), messages.c.created_at.desc())
            .limit(limit)
        )
    ).all()
    return [
        StoredMessage(
            id=row.id,
            direction=row.direction,
            origin=row.origin,
            body=decrypt_body(keyring, row.id, row.body_encrypted) if row.body_encrypted else None,
            occurred_at=row.occurred_at,
            send_status=row.send_status,
            send_error=row.send_error,
            edited=row.edited_at is not None,
            deleted=row.deleted_at is not None,
        )
        for row in reversed(rows)
    ]


async def mark_conversation_read(
    connection: AsyncConnection, *, doctor_id: str, conversation_id: str, now: datetime
) -> None:
    await connection.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id, conversations.c.doctor_id == doctor_id)
        .values(doctor_read_at=now)
    )


def _encode_cursor(moment: datetime, conversation_id: str) -> str:
    return base64.urlsafe_b64encode(f"{moment.isoformat()}|{conversation_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        text, _, conversation_id = base64.urlsafe_b64decode(cursor).decode().partition("|")
        moment = datetime.fromisoformat(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursorError("the cursor is not valid") from exc
    if moment.tzinfo is None or not conversation_id:
        raise InvalidCursorError("the cursor is not valid")
    return moment, conversation_id
