"""A doctor's manual reply: checked against the 24-hour window, recorded, and queued to send."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from frontdesk.clinic.connections import DISCONNECTED, find_connection
from frontdesk.clinic.conversations import MANUAL, plan_replies, replies_for_event
from frontdesk.clinic.inbox import ConversationSummary
from frontdesk.crypto import Keyring
from frontdesk.errors import FrontdeskError
from frontdesk.handlers.outbound import MANUAL_REPLY
from frontdesk.ids import IdFactory, new_id
from frontdesk.inbox.queue import INTERNAL_PROVIDER, enqueue_internal_event, find_event_id
from frontdesk.replies.responder import split_text
from frontdesk.webhooks.split import conversation_ordering_key


class MessagingWindowClosedError(FrontdeskError):
    """Meta allows replies only within 24 hours of the patient's last message."""


class NotConnectedError(FrontdeskError):
    """The doctor has no Instagram connection to send with."""


class IdempotencyKeyReusedError(FrontdeskError):
    """The Idempotency-Key already queued a reply with another text."""


@dataclass(frozen=True)
class QueuedReply:
    event_id: int
    message_ids: list[str]
    created: bool


async def queue_manual_reply(
    connection: AsyncConnection,
    keyring: Keyring,
    *,
    doctor_id: str,
    conversation: ConversationSummary,
    text: str,
    now: datetime,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    make_id: IdFactory = new_id,
) -> QueuedReply:
    """The same idempotency key queues the reply once; a repeat returns what was queued, and
    the key sent again with another text is refused rather than taken for the first reply."""
    if not conversation.reply_window_open(now):
        raise MessagingWindowClosedError(
            "the 24-hour window to reply has closed; the patient must write first"
        )
    link = await find_connection(connection, doctor_id)
    if link is None or link.status == DISCONNECTED:
        raise NotConnectedError("connect Instagram before replying")
    key_material = idempotency_key or make_id()
    event_key = f"manual:{uuid.uuid5(uuid.NAMESPACE_URL, f'{doctor_id}/{key_material}')}"
    event_id = await enqueue_internal_event(
        connection,
        keyring,
        kind=MANUAL_REPLY,
        event_key=event_key,
        doctor_id=doctor_id,
        ordering_key=conversation_ordering_key(
            link.instagram_page_id, conversation.patient_platform_id
        ),
        payload={"conversation_id": conversation.id},
        now=now,
        correlation_id=correlation_id,
    )
    created = event_id is not None
    if event_id is None:
        existing = await find_event_id(connection, provider=INTERNAL_PROVIDER, event_key=event_key)
        assert existing is not None
        event_id = existing
    else:
        await plan_replies(
            connection,
            keyring,
            doctor_id=doctor_id,
            conversation_id=conversation.id,
            event_id=event_id,
            parts=split_text(text),
            now=now,
            origin=MANUAL,
            make_id=make_id,
        )
    planned = await replies_for_event(connection, keyring, doctor_id=doctor_id, event_id=event_id)
    if not created and [reply.text for reply in planned] != split_text(text):
        raise IdempotencyKeyReusedError("this Idempotency-Key already queued a different reply")
    return QueuedReply(
        event_id=event_id, message_ids=[reply.id for reply in planned], created=created
    )
