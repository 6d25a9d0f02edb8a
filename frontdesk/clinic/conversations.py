"""Patients, conversations and messages: scoped to one doctor, text encrypted at rest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.crypto import Keyring
from frontdesk.db.statements import insert_or_skip
from frontdesk.db.tables import conversations, messages, patients
from frontdesk.ids import IdFactory, new_id

PLATFORM = "instagram"
INBOUND = "inbound"
OUTBOUND = "outbound"
AUTO = "auto"
MANUAL = "manual"


@dataclass(frozen=True)
class Conversation:
    id: str
    doctor_id: str
    patient_id: str
    patient_platform_id: str
    last_inbound_at: datetime | None
    last_auto_reply_at: datetime | None
    created_now: bool


@dataclass(frozen=True)
class MessageBody:
    text: str | None
    attachments: list[dict[str, Any]]


@dataclass(frozen=True)
class OutboundMessage:
    id: str
    reply_part: int
    text: str
    send_status: str


def message_associated_data(message_id: str) -> bytes:
    return f"messages:{message_id}".encode()


def encrypt_body(keyring: Keyring, message_id: str, body: MessageBody) -> bytes:
    document = {"text": body.text, "attachments": body.attachments}
    return keyring.encrypt(json.dumps(document).encode(), message_associated_data(message_id))


def decrypt_body(keyring: Keyring, message_id: str, ciphertext: bytes) -> MessageBody:
    document = json.loads(keyring.decrypt(ciphertext, message_associated_data(message_id)))
    return MessageBody(text=document.get("text"), attachments=document.get("attachments") or [])


async def open_conversation(
    connection: AsyncConnection,
    *,
    doctor_id: str,
    patient_platform_id: str,
    now: datetime,
    make_id: IdFactory = new_id,
) -> Conversation:
    """The doctor's conversation with this Instagram user, creating patient and thread if new."""
    patient_id = await _ensure_patient(connection, doctor_id, patient_platform_id, now, make_id)
    conversation_id = make_id()
    inserted = await connection.execute(
        insert_or_skip(connection, conversations, ["doctor_id", "platform", "patient_id"])
        .values(
            id=conversation_id,
            doctor_id=doctor_id,
            patient_id=patient_id,
            platform=PLATFORM,
            created_at=now,
        )
        .returning(conversations.c.id)
    )
    created = inserted.first() is not None
    row = (
        await connection.execute(
            select(conversations).where(
                conversations.c.doctor_id == doctor_id,
                conversations.c.platform == PLATFORM,
                conversations.c.patient_id == patient_id,
            )
        )
    ).one()
    return Conversation(
        id=row.id,
        doctor_id=doctor_id,
        patient_id=patient_id,
        patient_platform_id=patient_platform_id,
        last_inbound_at=row.last_inbound_at,
        last_auto_reply_at=row.last_auto_reply_at,
        created_now=created,
    )


async def _ensure_patient(
    connection: AsyncConnection,
    doctor_id: str,
    patient_platform_id: str,
    now: datetime,
    make_id: IdFactory,
) -> str:
    patient_id = make_id()
    await connection.execute(
        insert_or_skip(connection, patients, ["doctor_id", "platform", "platform_user_id"]).values(
            id=patient_id,
            doctor_id=doctor_id,
            platform=PLATFORM,
            platform_user_id=patient_platform_id,
            label=f"Patient {patient_id[:6].upper()}",
            created_at=now,
        )
    )
    row = (
        await connection.execute(
            select(patients.c.id).where(
                patients.c.doctor_id == doctor_id,
                patients.c.platform == PLATFORM,
                patients.c.platform_user_id == patient_platform_id,
            )
        )
    ).one()
    return str(row.id)


async def record_message(
    connection: AsyncConnection,
    keyring: Keyring,
    *,
    conversation: Conversation,
    direction: str,
    origin: str,
    mid: str | None,
    body: MessageBody,
    occurred_at: datetime,
    now: datetime,
    send_status: str | None = None,
    make_id: IdFactory = new_id,
) -> bool:
    """Store a message once per (conversation, mid); False when it was already stored."""
    message_id = make_id()
    inserted = await connection.execute(
        insert_or_skip(connection, messages, ["conversation_id", "mid"])
        .values(
            id=message_id,
            doctor_id=conversation.doctor_id,
            conversation_id=conversation.id,
            direction=direction,
            origin=origin,
            mid=mid,
            body_encrypted=encrypt_body(keyring, message_id, body),
            occurred_at=occurred_at,
            send_status=send_status,
            created_at=now,
        )
        .returning(messages.c.id)
    )
    if inserted.first() is None:
        return False
    values: dict[str, Any] = {"last_message_at": occurred_at}
    if direction == INBOUND:
        values["last_inbound_at"] = occurred_at
    await connection.execute(
        update(conversations)
        .where(
            conversations.c.id == conversation.id,
            conversations.c.doctor_id == conversation.doctor_id,
        )
        .values(**values)
    )
    return True


async def plan_replies(
    connection: AsyncConnection,
    keyring: Keyring,
    *,
    doctor_id: str,
    conversation_id: str,
    event_id: int,
    parts: list[str],
    now: datetime,
    origin: str = AUTO,
    make_id: IdFactory = new_id,
) -> None:
    """Record reply parts before sending them, keyed by the event that sends them (sent once):
    the inbound message for an automatic reply, the queued send for a doctor's manual one."""
    for index, text in enumerate(parts):
        message_id = make_id()
        await connection.execute(
            insert_or_skip(connection, messages, ["reply_to_event_id", "reply_part"]).values(
                id=message_id,
                doctor_id=doctor_id,
                conversation_id=conversation_id,
                direction=OUTBOUND,
                origin=origin,
                body_encrypted=encrypt_body(keyring, message_id, MessageBody(text, [])),
                occurred_at=now,
                reply_to_event_id=event_id,
                reply_part=index,
                send_status="pending",
                created_at=now,
            )
        )
    values: dict[str, Any] = {"last_message_at": now}
    if origin == AUTO:
        values["last_auto_reply_at"] = now
    await connection.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id, conversations.c.doctor_id == doctor_id)
        .values(**values)
    )


async def replies_for_event(
    connection: AsyncConnection, keyring: Keyring, *, doctor_id: str, event_id: int
) -> list[OutboundMessage]:
    rows = await connection.execute(
        select(
            messages.c.id, messages.c.reply_part, messages.c.body_encrypted, messages.c.send_status
        )
        .where(messages.c.doctor_id == doctor_id, messages.c.reply_to_event_id == event_id)
        .order_by(messages.c.reply_part)
    )
    return [
        OutboundMessage(
            id=row.id,
            reply_part=row.reply_part,
            text=decrypt_body(keyring, row.id, row.body_encrypted).text or "",
            send_status=row.send_status,
        )
        for row in rows
    ]


async def mark_reply_sent(
    connection: AsyncConnection,
    *,
    doctor_id: str,
    message_id: str,
    conversation_id: str,
    graph_message_id: str,
    now: datetime,
) -> None:
    # An echo of this very send may have been recorded first; the sent row is the record.
    await connection.execute(
        messages.delete().where(
            messages.c.doctor_id == doctor_id,
            messages.c.conversation_id == conversation_id,
            messages.c.mid == graph_message_id,
            messages.c.origin == "echo",
        )
    )
    await connection.execute(
        update(messages)
        .where(messages.c.id == message_id, messages.c.doctor_id == doctor_id)
        .values(send_status="sent", mid=graph_message_id, sent_at=now, send_error=None)
    )


async def mark_reply_unsent(
    connection: AsyncConnection, *, doctor_id: str, message_id: str, status: str, error: str
) -> None:
    """Keep why a reply did not go out: `failed` for good, `pending` to try again, `held`."""
    await connection.execute(
        update(messages)
        .where(messages.c.id == message_id, messages.c.doctor_id == doctor_id)
        .values(send_status=status, send_error=error[:200])
    )


@dataclass(frozen=True)
class HeldReply:
    conversation_id: str
    patient_platform_id: str
    last_inbound_at: datetime | None
    message: OutboundMessage


async def held_replies(
    connection: AsyncConnection, keyring: Keyring, *, doctor_id: str
) -> list[HeldReply]:
    """Replies waiting for the connection to work again, oldest first."""
    rows = await connection.execute(
        select(
            messages.c.id,
            messages.c.reply_part,
            messages.c.body_encrypted,
            messages.c.send_status,
            messages.c.conversation_id,
            conversations.c.last_inbound_at,
            patients.c.platform_user_id,
        )
        .join(conversations, conversations.c.id == messages.c.conversation_id)
        .join(patients, patients.c.id == conversations.c.patient_id)
        .where(
            messages.c.doctor_id == doctor_id,
            conversations.c.doctor_id == doctor_id,
            patients.c.doctor_id == doctor_id,
            messages.c.direction == OUTBOUND,
            messages.c.send_status == "held",
        )
        .order_by(messages.c.created_at, messages.c.reply_part)
    )
    return [
        HeldReply(
            conversation_id=row.conversation_id,
            patient_platform_id=row.platform_user_id,
            last_inbound_at=row.last_inbound_at,
            message=OutboundMessage(
                id=row.id,
                reply_part=row.reply_part,
                text=decrypt_body(keyring, row.id, row.body_encrypted).text or "",
                send_status=row.send_status,
            ),
        )
        for row in rows
    ]


async def find_message_by_mid(
    connection: AsyncConnection, *, doctor_id: str, mid: str
) -> tuple[str, str] | None:
    """(message id, conversation id) of the doctor's message with this Meta mid."""
    row = (
        await connection.execute(
            select(messages.c.id, messages.c.conversation_id).where(
                and_(messages.c.doctor_id == doctor_id, messages.c.mid == mid)
            )
        )
    ).first()
    return (row.id, row.conversation_id) if row else None


async def edit_message(
    connection: AsyncConnection,
    keyring: Keyring,
    *,
    doctor_id: str,
    message_id: str,
    text: str,
    now: datetime,
) -> None:
    await connection.execute(
        update(messages)
        .where(messages.c.id == message_id, messages.c.doctor_id == doctor_id)
        .values(
            body_encrypted=encrypt_body(keyring, message_id, MessageBody(text, [])),
            edited_at=now,
        )
    )


async def erase_message(
    connection: AsyncConnection, *, doctor_id: str, message_id: str, now: datetime
) -> None:
    """The patient unsent it: drop its content, keep that it existed."""
    await connection.execute(
        update(messages)
        .where(messages.c.id == message_id, messages.c.doctor_id == doctor_id)
        .values(body_encrypted=None, deleted_at=now)
    )
