"""Patients, conversations and messages: scoped to one doctor, text encrypted at rest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, select, update
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


# The statements a worker runs for every message, built once: building a statement and its
# cache key costs as much as running it (see docs/benchmarks.md). Bound names differ from the
# column names, which SQLAlchemy keeps for the values of inserts and updates.
_PATIENT_ID = select(patients.c.id).where(
    patients.c.doctor_id == bindparam("match_doctor"),
    patients.c.platform == bindparam("match_platform"),
    patients.c.platform_user_id == bindparam("match_user"),
)
_CONVERSATION = select(conversations).where(
    conversations.c.doctor_id == bindparam("match_doctor"),
    conversations.c.platform == bindparam("match_platform"),
    conversations.c.patient_id == bindparam("match_patient"),
)
_THIS_CONVERSATION = (
    conversations.c.id == bindparam("match_conversation"),
    conversations.c.doctor_id == bindparam("match_doctor"),
)
_NOTE_INBOUND = (
    update(conversations)
    .where(*_THIS_CONVERSATION)
    .values(last_message_at=bindparam("at"), last_inbound_at=bindparam("at"))
)
_NOTE_OUTBOUND = (
    update(conversations).where(*_THIS_CONVERSATION).values(last_message_at=bindparam("at"))
)
_NOTE_AUTO_REPLY = (
    update(conversations)
    .where(*_THIS_CONVERSATION)
    .values(last_message_at=bindparam("at"), last_auto_reply_at=bindparam("at"))
)
_REPLIES_FOR_EVENT = (
    select(messages.c.id, messages.c.reply_part, messages.c.body_encrypted, messages.c.send_status)
    .where(
        messages.c.doctor_id == bindparam("match_doctor"),
        messages.c.reply_to_event_id == bindparam("match_event"),
    )
    .order_by(messages.c.reply_part)
)
_DROP_ECHO_OF_SEND = messages.delete().where(
    messages.c.doctor_id == bindparam("match_doctor"),
    messages.c.conversation_id == bindparam("match_conversation"),
    messages.c.mid == bindparam("match_mid"),
    messages.c.origin == "echo",
)
_MARK_SENT = (
    update(messages)
    .where(
        messages.c.id == bindparam("match_id"), messages.c.doctor_id == bindparam("match_doctor")
    )
    .values(send_status="sent", send_error=None, mid=bindparam("sent_mid"), sent_at=bindparam("at"))
)


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
    inserted = await connection.execute(
        insert_or_skip(
            connection, conversations, ["doctor_id", "platform", "patient_id"], returning=["id"]
        ),
        {
            "id": make_id(),
            "doctor_id": doctor_id,
            "patient_id": patient_id,
            "platform": PLATFORM,
            "created_at": now,
        },
    )
    created = inserted.first() is not None
    match = {"match_doctor": doctor_id, "match_platform": PLATFORM, "match_patient": patient_id}
    row = (await connection.execute(_CONVERSATION, match)).one()
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
        insert_or_skip(connection, patients, ["doctor_id", "platform", "platform_user_id"]),
        {
            "id": patient_id,
            "doctor_id": doctor_id,
            "platform": PLATFORM,
            "platform_user_id": patient_platform_id,
            "label": f"Patient {patient_id[:6].upper()}",
            "created_at": now,
        },
    )
    match = {
        "match_doctor": doctor_id,
        "match_platform": PLATFORM,
        "match_user": patient_platform_id,
    }
    return str((await connection.execute(_PATIENT_ID, match)).scalar_one())


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
        insert_or_skip(connection, messages, ["conversation_id", "mid"], returning=["id"]),
        {
            "id": message_id,
            "doctor_id": conversation.doctor_id,
            "conversation_id": conversation.id,
            "direction": direction,
            "origin": origin,
            "mid": mid,
            "body_encrypted": encrypt_body(keyring, message_id, body),
            "occurred_at": occurred_at,
            "send_status": send_status,
            "created_at": now,
        },
    )
    if inserted.first() is None:
        return False
    await connection.execute(
        _NOTE_INBOUND if direction == INBOUND else _NOTE_OUTBOUND,
        {
            "match_conversation": conversation.id,
            "match_doctor": conversation.doctor_id,
            "at": occurred_at,
        },
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
            insert_or_skip(connection, messages, ["reply_to_event_id", "reply_part"]),
            {
                "id": message_id,
                "doctor_id": doctor_id,
                "conversation_id": conversation_id,
                "direction": OUTBOUND,
                "origin": origin,
                "body_encrypted": encrypt_body(keyring, message_id, MessageBody(text, [])),
                "occurred_at": now,
                "reply_to_event_id": event_id,
                "reply_part": index,
                "send_status": "pending",
                "created_at": now,
            },
        )
    await connection.execute(
        _NOTE_AUTO_REPLY if origin == AUTO else _NOTE_OUTBOUND,
        {"match_conversation": conversation_id, "match_doctor": doctor_id, "at": now},
    )


async def replies_for_event(
    connection: AsyncConnection, keyring: Keyring, *, doctor_id: str, event_id: int
) -> list[OutboundMessage]:
    rows = await connection.execute(
        _REPLIES_FOR_EVENT, {"match_doctor": doctor_id, "match_event": event_id}
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
        _DROP_ECHO_OF_SEND,
        {
            "match_doctor": doctor_id,
            "match_conversation": conversation_id,
            "match_mid": graph_message_id,
        },
    )
    await connection.execute(
        _MARK_SENT,
        {
            "match_id": message_id,
            "match_doctor": doctor_id,
            "sent_mid": graph_message_id,
            "at": now,
        },
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
