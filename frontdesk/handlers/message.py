"""A patient's message: route it, record patient, conversation and message, then reply."""

from __future__ import annotations

from typing import Any

from frontdesk.clinic.connections import touch_connection
from frontdesk.clinic.conversations import (
    INBOUND,
    MessageBody,
    open_conversation,
    plan_replies,
    record_message,
    replies_for_event,
)
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.handlers.context import HandlerContext, event_item, member_id
from frontdesk.handlers.routing import fail_unknown_page, route_event
from frontdesk.inbox.queue import FAILED, PROCESSED, ClaimedEvent, EventOutcome
from frontdesk.replies.responder import decide_reply, split_text
from frontdesk.replies.rules import load_reply_rules
from frontdesk.replies.sender import ReplyThread
from frontdesk.webhooks.split import as_key_part


async def handle_message(
    context: HandlerContext, event: ClaimedEvent, *, may_reply: bool = True
) -> EventOutcome:
    """`may_reply` is False for messages seen on standby (another app holds the thread)."""
    item = event_item(event)
    patient_id = member_id(item, "sender")
    route = await route_event(context, event, is_echo=False)
    if route is None:
        return await fail_unknown_page(
            context, event, fallback_recipient=patient_id if may_reply else None
        )
    if patient_id is None:
        return EventOutcome(status=FAILED, reason="missing_sender", doctor_id=route.doctor_id)
    mid, body = _message_content(item)
    now = context.clock.now()
    async with doctor_transaction(context.engine, route.doctor_id) as connection:
        conversation = await open_conversation(
            connection,
            doctor_id=route.doctor_id,
            patient_platform_id=patient_id,
            now=now,
            make_id=context.make_id,
        )
        first_copy = await record_message(
            connection,
            context.keyring,
            conversation=conversation,
            direction=INBOUND,
            origin="patient",
            mid=mid,
            body=body,
            occurred_at=event.occurred_at,
            now=now,
            make_id=context.make_id,
        )
        await touch_connection(connection, doctor_id=route.doctor_id, last_webhook_at=now)
        replies = await replies_for_event(
            connection, context.keyring, doctor_id=route.doctor_id, event_id=event.id
        )
        reason = "reply_already_planned" if replies else "no_reply"
        if not replies and not first_copy:
            # Another event already brought this message (a second subscription to the account).
            reason = "duplicate_message"
        elif may_reply and not replies:
            decision = decide_reply(
                await load_reply_rules(connection, route.doctor_id),
                text=body.text,
                is_new_conversation=conversation.created_now,
                last_auto_reply_at=conversation.last_auto_reply_at,
                message_time=event.occurred_at,
                now=now,
            )
            reason = decision.reason
            if decision.text:
                await plan_replies(
                    connection,
                    context.keyring,
                    doctor_id=route.doctor_id,
                    conversation_id=conversation.id,
                    event_id=event.id,
                    parts=split_text(decision.text),
                    now=now,
                    make_id=context.make_id,
                )
                replies = await replies_for_event(
                    connection, context.keyring, doctor_id=route.doctor_id, event_id=event.id
                )
    thread = ReplyThread(
        doctor_id=route.doctor_id,
        conversation_id=conversation.id,
        recipient_id=patient_id,
        correlation_id=event.correlation_id,
        keep_lease=lambda: context.keep_lease(event),
    )
    summary = await context.sender.send_messages(thread, replies)
    if summary.held:
        reason = "reply_held:connection_not_active"
    return EventOutcome(status=PROCESSED, reason=reason, doctor_id=route.doctor_id)


def _message_content(item: dict[str, Any]) -> tuple[str | None, MessageBody]:
    message = item.get("message")
    if isinstance(message, dict):
        mid = as_key_part(message.get("mid"))
        text = message.get("text") if isinstance(message.get("text"), str) else None
        return mid, MessageBody(text=text, attachments=_attachments(message.get("attachments")))
    postback = item.get("postback")
    if isinstance(postback, dict):
        mid = as_key_part(postback.get("mid"))
        title = postback.get("title") if isinstance(postback.get("title"), str) else None
        return mid, MessageBody(text=title, attachments=[])
    return None, MessageBody(text=None, attachments=[])


def _attachments(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    kept: list[dict[str, Any]] = []
    for attachment in value:
        if isinstance(attachment, dict):
            payload = attachment.get("payload")
            url = payload.get("url") if isinstance(payload, dict) else None
            kept.append({"type": str(attachment.get("type", "unknown")), "url": url})
    return kept
