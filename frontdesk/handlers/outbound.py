"""Work Frontdesk queues itself: manual replies, and replies held while a token was dead."""

from __future__ import annotations

from itertools import groupby

from frontdesk.clinic.conversations import held_replies, replies_for_event
from frontdesk.clinic.inbox import get_conversation
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.handlers.context import HandlerContext
from frontdesk.inbox.queue import FAILED, PROCESSED, ClaimedEvent, EventOutcome
from frontdesk.replies.responder import MESSAGING_WINDOW
from frontdesk.replies.sender import ReplyThread

MANUAL_REPLY = "manual_reply"
RESUME_REPLIES = "resume_replies"


async def handle_manual_reply(context: HandlerContext, event: ClaimedEvent) -> EventOutcome:
    doctor_id = event.doctor_id
    conversation_id = (event.payload or {}).get("conversation_id")
    if doctor_id is None or not isinstance(conversation_id, str):
        return EventOutcome(status=FAILED, reason="malformed_internal_event")
    async with doctor_transaction(context.engine, doctor_id) as connection:
        conversation = await get_conversation(
            connection, doctor_id=doctor_id, conversation_id=conversation_id
        )
    if conversation is None:
        return EventOutcome(status=FAILED, reason="conversation_gone", doctor_id=doctor_id)
    thread = ReplyThread(
        doctor_id=doctor_id,
        conversation_id=conversation.id,
        recipient_id=conversation.patient_platform_id,
        correlation_id=event.correlation_id,
        keep_lease=lambda: context.keep_lease(event),
    )
    if not conversation.reply_window_open(context.clock.now()):
        async with doctor_transaction(context.engine, doctor_id) as connection:
            waiting = await replies_for_event(
                connection, context.keyring, doctor_id=doctor_id, event_id=event.id
            )
        await context.sender.give_up(thread, waiting, "outside_messaging_window")
        return EventOutcome(status=FAILED, reason="outside_messaging_window", doctor_id=doctor_id)
    summary = await context.sender.send_replies(thread, event.id)
    reason = "reply_held:connection_not_active" if summary.held else "manual_reply_sent"
    return EventOutcome(status=PROCESSED, reason=reason, doctor_id=doctor_id)


async def handle_resume_replies(context: HandlerContext, event: ClaimedEvent) -> EventOutcome:
    """Send what waited for a re-authorised connection, conversation by conversation."""
    doctor_id = event.doctor_id
    if doctor_id is None:
        return EventOutcome(status=FAILED, reason="malformed_internal_event")
    async with doctor_transaction(context.engine, doctor_id) as connection:
        waiting = await held_replies(connection, context.keyring, doctor_id=doctor_id)
    now = context.clock.now()
    sent = expired = 0
    for conversation_id, group in groupby(waiting, key=lambda held: held.conversation_id):
        replies = list(group)
        first = replies[0]
        thread = ReplyThread(
            doctor_id=doctor_id,
            conversation_id=conversation_id,
            recipient_id=first.patient_platform_id,
            correlation_id=event.correlation_id,
            keep_lease=lambda: context.keep_lease(event),
        )
        messages = [held.message for held in replies]
        if first.last_inbound_at is None or now - first.last_inbound_at >= MESSAGING_WINDOW:
            await context.sender.give_up(thread, messages, "outside_messaging_window")
            expired += len(messages)
            continue
        summary = await context.sender.send_messages(thread, messages)
        sent += summary.sent
    reason = f"resumed:{sent}_sent:{expired}_expired"
    return EventOutcome(status=PROCESSED, reason=reason, doctor_id=doctor_id)
