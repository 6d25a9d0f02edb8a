"""A patient edited or unsent a message: update or erase what we stored for it."""

from __future__ import annotations

from frontdesk.clinic.conversations import edit_message, erase_message, find_message_by_mid
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.handlers.context import HandlerContext, event_item
from frontdesk.handlers.routing import fail_unknown_page, route_event
from frontdesk.inbox.queue import IGNORED, PROCESSED, ClaimedEvent, EventOutcome
from frontdesk.webhooks.split import as_key_part


async def handle_edit(context: HandlerContext, event: ClaimedEvent) -> EventOutcome:
    edit = event_item(event).get("message_edit")
    edit = edit if isinstance(edit, dict) else {}
    return await _change_stored_message(
        context, event, mid=edit.get("mid"), new_text=edit.get("text"), erase=False
    )


async def handle_deleted(context: HandlerContext, event: ClaimedEvent) -> EventOutcome:
    message = event_item(event).get("message")
    message = message if isinstance(message, dict) else {}
    return await _change_stored_message(
        context, event, mid=message.get("mid"), new_text=None, erase=True
    )


async def _change_stored_message(
    context: HandlerContext,
    event: ClaimedEvent,
    *,
    mid: object,
    new_text: object,
    erase: bool,
) -> EventOutcome:
    route = await route_event(context, event, is_echo=False)
    if route is None:
        return await fail_unknown_page(context, event, fallback_recipient=None)
    mid = as_key_part(mid)
    if mid is None:
        return EventOutcome(status=IGNORED, reason="missing_mid", doctor_id=route.doctor_id)
    now = context.clock.now()
    async with doctor_transaction(context.engine, route.doctor_id) as connection:
        found = await find_message_by_mid(connection, doctor_id=route.doctor_id, mid=mid)
        if found is None:
            return EventOutcome(
                status=IGNORED, reason="message_not_stored", doctor_id=route.doctor_id
            )
        if erase:
            await erase_message(connection, doctor_id=route.doctor_id, message_id=found[0], now=now)
            return EventOutcome(
                status=PROCESSED, reason="message_erased", doctor_id=route.doctor_id
            )
        text = new_text if isinstance(new_text, str) else ""
        await edit_message(
            connection,
            context.keyring,
            doctor_id=route.doctor_id,
            message_id=found[0],
            text=text,
            now=now,
        )
    return EventOutcome(status=PROCESSED, reason="message_edited", doctor_id=route.doctor_id)
