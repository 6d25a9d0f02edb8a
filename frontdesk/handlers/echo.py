"""Echoes of what the account sent: recorded as outbound, matched to our sends, never answered."""

from __future__ import annotations

from frontdesk.clinic.conversations import (
    OUTBOUND,
    MessageBody,
    find_message_by_mid,
    open_conversation,
    record_message,
)
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.handlers.context import HandlerContext, event_item, member_id
from frontdesk.handlers.routing import fail_unknown_page, route_event
from frontdesk.inbox.queue import FAILED, PROCESSED, ClaimedEvent, EventOutcome
from frontdesk.webhooks.split import as_key_part


async def handle_echo(context: HandlerContext, event: ClaimedEvent) -> EventOutcome:
    item = event_item(event)
    route = await route_event(context, event, is_echo=True)
    if route is None:
        return await fail_unknown_page(context, event, fallback_recipient=None)
    patient_id = member_id(item, "recipient")
    message = item.get("message")
    message = message if isinstance(message, dict) else {}
    mid = as_key_part(message.get("mid"))
    if patient_id is None or mid is None:
        return EventOutcome(status=FAILED, reason="malformed_echo", doctor_id=route.doctor_id)
    now = context.clock.now()
    async with doctor_transaction(context.engine, route.doctor_id) as connection:
        if await find_message_by_mid(connection, doctor_id=route.doctor_id, mid=mid):
            return EventOutcome(
                status=PROCESSED, reason="echo_of_our_send", doctor_id=route.doctor_id
            )
        conversation = await open_conversation(
            connection,
            doctor_id=route.doctor_id,
            patient_platform_id=patient_id,
            now=now,
            make_id=context.make_id,
        )
        text = message.get("text") if isinstance(message.get("text"), str) else None
        await record_message(
            connection,
            context.keyring,
            conversation=conversation,
            direction=OUTBOUND,
            origin="echo",
            mid=mid,
            body=MessageBody(text=text, attachments=[]),
            occurred_at=event.occurred_at,
            now=now,
            send_status="sent",
            make_id=context.make_id,
        )
    return EventOutcome(status=PROCESSED, reason="echo_recorded", doctor_id=route.doctor_id)
